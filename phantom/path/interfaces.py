"""The vocabulary of paths that the rooms above use: kinds, sides, and what a path's frames reach."""

from enum import StrEnum

from zope.interface import Interface


class PathKind(StrEnum):
    """What a path is for."""

    EXIT = "exit"
    """Its owner opens tunnels out over it."""
    ENTRY = "entry"
    """Tunnels to its owner's AP-address come in over it; its T is the entry node."""


class Side(StrEnum):
    """
    A side of a path at one of its X-nodes, named as the setup arrays travelled the circle: on
    a normal circle PREVIOUS is towards the owner and NEXT towards T; on a reversed circle it is
    the other way round (there T's only side is NEXT, and x0 opened its link to the owner).
    """

    PREVIOUS = "previous"
    """The neighbour that opens the PATH link to this node (towards the owner, not reversed)."""
    NEXT = "next"
    """The neighbour this node opens the PATH link to (towards T, not reversed)."""


class IPathFrameReceiver(Interface):
    """Takes the frames that arrive on PATH links (the tunnel service does: they are setup blocks)."""

    def pathFrameReceived(path, side, payload):
        """
        A frame arrived on a PATH link.

        @param path: the owned L{phantom.path.service.Path} or the relayed path it belongs to.
        @param side: for a relayed path, the L{Side} it came from; C{None} for an owned path.
        @param payload: the frame's bytes.
        """
