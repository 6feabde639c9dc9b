"""The local control socket of a node and the C{phantomctl} command that talks to it."""

CONTROL_SOCKET = "control.sock"
"""The control socket's file name inside the node's data directory."""
