"""What a link offers to the modules that use it, and what they offer back."""

from twisted.internet.interfaces import IPushProducer
from zope.interface import Attribute, Interface


class ILink(IPushProducer):
    """
    One authenticated TLS connection to a peer node, opened for one purpose. As a push producer
    it stops and restarts reading frames, so another link's (or a tunnel's) consumer can slow it.
    """

    nodeId = Attribute("The peer's node id: SHA-256 of its certificate key's SubjectPublicKeyInfo.")
    peer = Attribute("The peer's end of the TCP connection (an IPv4Address or IPv6Address).")
    purpose = Attribute("The L{phantom.wire.link.Purpose} named by the link's OPEN frame.")
    linkId = Attribute("The 16-byte link id named by the OPEN frame.")
    inbound = Attribute("True when the peer opened the link.")
    ending = Attribute("The link's L{phantom.link.ending.Ending}: it ends once the link is gone.")

    def attach(handler):
        """
        Deliver this link's frames to C{handler} (an L{ILinkHandler}) from now on; frames that
        arrived before are delivered first.
        """

    def sendFrame(payload):
        """
        Send C{payload} (1 to L{phantom.wire.link.MAX_PAYLOAD} bytes) as one DATA frame.
        """

    def sendFrames(payloads):
        """
        Send each of C{payloads} as one DATA frame, in order, with one write: what a sender
        gathered during a turn of the reactor costs the TLS layer one call, not one per frame.
        """

    def afterRead(call):
        """
        Call C{call}, without arguments, once the socket read this link is handling now has
        been handled: every frame in it delivered. What a handler gathers from one read (the
        cells a splice passes on) then leaves in one write at its end, with no timer.

        @return: C{False}, keeping nothing, when the link is not handling a read now (then the
            caller waits for the reactor's next turn instead).
        """

    def close():
        """Close the link cleanly."""

    def abort(reason):
        """Close the link at once because the peer broke the protocol; C{reason} is logged."""

    def registerProducer(producer, streaming):
        """Register a producer that is paused while the link's outbound buffer is full."""

    def unregisterProducer():
        """Unregister the producer."""


class ILinkHandler(Interface):
    """Receives the frames of one link."""

    def frameReceived(payload):
        """One DATA frame's payload arrived."""

    def linkClosed(reason):
        """The link is gone; C{reason} is a L{twisted.python.failure.Failure}."""


class ILinkService(Interface):
    """What the rooms above the link layer use of a node's links (real, or in memory for tests)."""

    nodeId = Attribute("This node's 32-byte node id.")
    address = Attribute("C{(host, port)} other nodes reach this node at, or C{None} when not known.")
    clock = Attribute("The C{IReactorTime} the links run on.")

    def registerPurpose(purpose, handlerFactory):
        """Accept inbound links of C{purpose}: C{handlerFactory(link)} returns each one's L{ILinkHandler}."""

    def parkEarlyLinks(purpose, timeout):
        """Hold links of C{purpose} that arrive before anyone awaits them, for up to C{timeout} seconds."""

    def expectLink(linkId, fromHost, purpose, timeout, nodeId=None):
        """
        @param nodeId: the awaited node's id: a link from another node is refused (C{None}: any).
        @return: a Deferred of the awaited L{ILink}; it fails with L{phantom.errors.LinkTimeout}.
        """

    def connect(host, port, purpose, linkId, nodeId):
        """@return: a Deferred of a new L{ILink} to C{host:port}, pinned to C{nodeId} unless it is C{None}."""
