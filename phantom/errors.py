"""
The errors that cross rooms: raised in the daemon, caught by its other parts, and named by the
control client, which imports them from here without importing the daemon's services.
"""


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which and why."""


class LinkFailed(Exception):
    """A link could not be opened, or closed while it was needed; the message says why."""


class ConnectedToSelf(LinkFailed):
    """The address reached belongs to this node itself."""


class LinkTimeout(Exception):
    """An awaited link did not arrive in time."""


class PinMismatch(Exception):
    """The peer's certificate does not carry the key of the pin (node id or AP-address) we meant to reach."""

    def __init__(self, expected, presented, what="node id"):
        super().__init__(
            f"peer presented {what} {presented.hex() if presented else 'none'}, expected {expected.hex()}"
        )
        self.expected = expected
        self.presented = presented


class PathFailed(Exception):
    """A path could not be built; the message says why."""


class TunnelFailed(Exception):
    """A tunnel could not be opened; the message says why."""
