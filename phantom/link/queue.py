"""A link's frames queued for a protocol step that awaits them one at a time."""

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from phantom.errors import LinkFailed
from phantom.link.interfaces import ILinkHandler


@implementer(ILinkHandler)
class FrameQueue:
    """Hands a link's frames to whoever waits for them, in order; fails the waiters if it closes."""

    def __init__(self, link, onClosed=None):
        self.link = link
        self._frames = []
        self._waiting = []
        self.closed = False
        self.onClosed = onClosed
        """Called, without arguments, when the link closes (while this queue has it)."""

    def frameReceived(self, payload):
        if self._waiting:
            self._waiting.pop(0).callback(payload)
        else:
            self._frames.append(payload)

    def linkClosed(self, reason):
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(LinkFailed("the link closed"))
        if self.onClosed is not None:
            self.onClosed()

    def handOver(self, handler):
        """
        Give the link to C{handler} from now on, with the frames this queue holds (and the
        news, if the link has closed already).
        """
        frames, self._frames = self._frames, []
        if not self.closed:
            self.link.attach(handler)
        for payload in frames:
            handler.frameReceived(payload)
        if self.closed:
            handler.linkClosed(None)

    def next(self):
        """@return: a Deferred of the next frame."""
        if self._frames:
            return succeed(self._frames.pop(0))
        if self.closed:
            raise LinkFailed("the link closed")
        d = Deferred()
        self._waiting.append(d)
        return d
