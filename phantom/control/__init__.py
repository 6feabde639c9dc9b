"""
The local control socket of a node and the C{phantomctl} command that talks to it.

L{phantom.control.client.ControlClient} asks a node; it imports only the commands and
L{phantom.errors}, so that C{phantomctl} and the testnet start without the daemon's services.
The node side is L{phantom.control.server} (the socket and its responders) and
L{phantom.control.responses} (what each answer holds), asking the node through
L{phantom.control.interfaces.IControlledNode}.
"""

CONTROL_SOCKET = "control.sock"
"""The control socket's file name inside the node's data directory."""

MAX_UNIX_PATH = 107
"""The longest path, in bytes, a unix socket can have."""
