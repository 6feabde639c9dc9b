"""Links that never leave the process: both ends are objects here, frames pass on a clock."""

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from phantom.address import tcpAddress
from phantom.link.ending import Ending
from phantom.link.interfaces import ILink


@implementer(ILink)
class LocalLink:
    """
    One end of an in-process link: between two roles of this node (an exit node that is also
    the entry node it must ask), or between two nodes of an in-memory network
    (L{phantom.link.testing}). Frames and the closing reach the other end in a later turn of
    C{clock}, in order (so neither end's protocol is re-entered); there is no buffer for
    producers to mind.

    @ivar nodeId: the far end's node id.
    @ivar peer: the far end's address.
    @ivar delay: seconds a frame or the closing takes to reach the other end (0: the next turn).
    """

    def __init__(self, nodeId, peer, inbound, clock, purpose=None, linkId=None, delay=0):
        self._clock = clock
        self.delay = delay
        self.nodeId = nodeId
        self.peer = peer
        self.inbound = inbound
        self.purpose = purpose
        self.linkId = linkId
        self.other = None
        self._handler = None
        self._queued = []
        self.closed = False
        self.ending = Ending()
        """Ends once the closing has reached this end's handler."""

    @classmethod
    def pair(cls, nodeId, host, port, clock):
        """@return: two joined ends within one node (C{nodeId} at C{host:port}), the opener's and the receiver's."""
        return cls.between((nodeId, host, port), (nodeId, host, port), clock)

    @classmethod
    def between(cls, opener, receiver, clock, purpose=None, linkId=None, delay=0):
        """
        @param opener: C{(nodeId, host, port)} of the node that opens the link.
        @param receiver: C{(nodeId, host, port)} of the node it reaches.
        @param delay: the one-way latency between them, in seconds.
        @return: two joined ends, the opener's and the receiver's, each naming the other node.
        """
        (openerId, *openerAt), (receiverId, *receiverAt) = opener, receiver
        openerEnd = cls(receiverId, tcpAddress(*receiverAt), False, clock, purpose, linkId, delay)
        receiverEnd = cls(openerId, tcpAddress(*openerAt), True, clock, purpose, linkId, delay)
        openerEnd.other, receiverEnd.other = receiverEnd, openerEnd
        return openerEnd, receiverEnd

    def attach(self, handler):
        self._handler = handler
        queued, self._queued = self._queued, []
        for payload in queued:
            handler.frameReceived(payload)

    def sendFrame(self, payload):
        self.sendFrames((payload,))

    def afterRead(self, call):
        # Frames arrive on a clock, not from socket reads.
        return False

    def sendFrames(self, payloads):
        if self.closed:
            return
        self._clock.callLater(self.delay, self.other._deliver, [bytes(payload) for payload in payloads])

    def _deliver(self, payloads):
        for payload in payloads:
            if self.closed:
                return
            if self._handler is None:
                self._queued.append(payload)
            else:
                self._handler.frameReceived(payload)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._clock.callLater(0, self._closed)

    def _closed(self):
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.linkClosed(Failure(ConnectionDone("the local link closed")))
        self.ending.end()
        if self.delay:
            self._clock.callLater(self.delay, self.other.close)
        else:
            self.other.close()

    def abort(self, reason):
        self.close()

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.close()
