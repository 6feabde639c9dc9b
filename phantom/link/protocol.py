"""
One link: a TLS connection carrying frames, from the handshake to the close.

L{LinkProtocol} is the protocol inside Twisted's C{TLSMemoryBIOProtocol}. It checks the peer's
certificate when the handshake completes, sends or expects the OPEN frame, enforces the
handshake, open and idle timeouts and the frame-rate limit, sends keepalives, and hands DATA
payloads to the handler of the link's purpose. A peer that breaks the rules gets its
connection aborted and one log line naming it and the reason.

Where a link is in its life is its L{LinkState}; L{NEXT_STATES} lists every move.
"""

from enum import Enum

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import describePeer
from phantom.crypto import nodeIdOfCertificate
from phantom.errors import ConnectedToSelf, LinkFailed
from phantom.link.framing import FrameDecoder
from phantom.link.ending import Ending
from phantom.link.interfaces import ILink
from phantom.link.tls import rejectionOf
from phantom.wire import ProtocolError
from phantom.wire.link import (
    HEADER,
    KEEPALIVE_FRAME,
    MAX_PAYLOAD,
    FrameKind,
    Purpose,
    encodeOpen,
)

_DATA = int(FrameKind.DATA)


class LinkState(Enum):
    """Where a link is in its life."""

    HANDSHAKING = "in its TLS handshake"
    AWAITING_OPEN = "awaiting the OPEN frame"
    """Inbound, the handshake done: the peer must say what the link is for."""
    OPEN = "open"
    """Carrying DATA frames and keepalives."""
    CLOSING = "closing"
    """This side closed or aborted it; the connection is not gone yet."""
    CLOSED = "closed"


NEXT_STATES = {
    LinkState.HANDSHAKING: {LinkState.AWAITING_OPEN, LinkState.OPEN, LinkState.CLOSING, LinkState.CLOSED},
    LinkState.AWAITING_OPEN: {LinkState.OPEN, LinkState.CLOSING, LinkState.CLOSED},
    LinkState.OPEN: {LinkState.CLOSING, LinkState.CLOSED},
    LinkState.CLOSING: {LinkState.CLOSED},
    LinkState.CLOSED: set(),
}
"""The states a link may move to from each state: the handshake leads an outbound link to
OPEN and an inbound one to AWAITING_OPEN, its OPEN frame then to OPEN; this side's C{close} or
C{abort} leads to CLOSING; the connection's loss, from anywhere, to CLOSED."""

_ENDED = (LinkState.CLOSING, LinkState.CLOSED)


@implementer(IHandshakeListener, ILink)
class LinkProtocol(Protocol):
    """
    The node's side of one link.

    @param service: the L{phantom.link.service.LinkService} that owns the link.
    @param outbound: for a link this node opens, the L{OutboundRequest}; C{None} for inbound.

    @ivar state: the L{LinkState}.
    @ivar ending: the L{Ending} of the link: it ends once the connection is gone.
    """

    log = Logger()

    def __init__(self, service, outbound=None):
        self._service = service
        self._clock = service.clock
        self._limits = service.limits
        self._outbound = outbound
        self._decoder = FrameDecoder()
        self._handler = None
        self._queued = []
        self._timer = None
        self.state = LinkState.HANDSHAKING
        self._closedFrom = None
        self._closeReason = None
        self.ending = Ending()
        self.nodeId = None
        self.peer = None
        self.purpose = outbound.purpose if outbound else None
        self.linkId = outbound.linkId if outbound else None
        self.inbound = outbound is None
        self._lastReceived = self._lastSent = 0.0
        self._windowStart = 0.0
        self._windowFrames = 0

    @property
    def opened(self):
        """Whether the link is open: its OPEN frame sent or received, and not closing."""
        return self.state is LinkState.OPEN

    def _moveTo(self, state):
        if state not in NEXT_STATES[self.state]:
            raise RuntimeError(f"a link {self.state.value} cannot become {state.value}")
        if state is LinkState.CLOSING:
            self._closedFrom = self.state
        self.state = state

    # Connection lifecycle

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        self._service.connectionStarted(self)
        self._schedule(self._limits.handshakeTimeout, self.abort, "TLS handshake not completed in time")

    def handshakeCompleted(self):
        if self.state is not LinkState.HANDSHAKING:
            return
        certificate = self.transport.getPeerCertificate()
        if certificate is None:
            return self.abort("no peer certificate after the handshake")
        self.nodeId = nodeIdOfCertificate(certificate.to_cryptography())
        if self.nodeId == self._service.nodeId:
            return self.abort(ConnectedToSelf("the peer is this node itself"))
        now = self._clock.seconds()
        self._lastReceived = self._lastSent = self._windowStart = now
        if self._outbound is None:
            self._moveTo(LinkState.AWAITING_OPEN)
            self._schedule(self._limits.openTimeout, self.abort, "no OPEN frame in time")
            return
        self.transport.write(encodeOpen(self.purpose, self.linkId))
        self._becomeOpen()
        self._outbound.succeeded(self)

    def _becomeOpen(self):
        self._moveTo(LinkState.OPEN)
        self._tickInterval = min(self._limits.keepaliveInterval, self._limits.idleTimeout / 3)
        self._schedule(self._tickInterval, self._tick)
        self._service.linkOpened(self)

    def dataReceived(self, data):
        if self.state in _ENDED:
            return
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as e:
            return self.abort(str(e))
        if not frames:
            return
        now = self._clock.seconds()
        self._lastReceived = now
        if now - self._windowStart >= 1.0:
            self._windowStart = now
            self._windowFrames = 0
        self._windowFrames += len(frames)
        if self._windowFrames > self._limits.maxFramesPerSecond:
            return self.abort(f"more than {self._limits.maxFramesPerSecond} frames in one second")
        for kind, content in frames:
            if self.state in _ENDED:
                return
            if kind == _DATA:
                if self.state is not LinkState.OPEN:
                    return self.abort("DATA frame before OPEN")
                self._deliver(content)
            elif kind == FrameKind.OPEN:
                self._openReceived(content)
            # A KEEPALIVE only refreshes _lastReceived.

    def _openReceived(self, content):
        if self.state is not LinkState.AWAITING_OPEN:
            return self.abort("unexpected OPEN frame")
        self.purpose = Purpose(int(content.purpose))
        self.linkId = content.link_id
        self._cancelTimer()
        self._becomeOpen()
        self._service.dispatch(self)

    def _deliver(self, payload):
        if self._handler is None:
            self._queued.append(payload)
            if len(self._queued) == 1:
                self.transport.pauseProducing()
            return
        try:
            self._handler.frameReceived(payload)
        except Exception:
            self.log.failure("handler of {purpose} link from {peer} failed", purpose=self.purpose, peer=describePeer(self.peer))
            self.abort("its handler failed")

    def _tick(self):
        now = self._clock.seconds()
        if now - self._lastReceived >= self._limits.idleTimeout:
            return self.abort(f"idle for {self._limits.idleTimeout:g} s")
        if now - self._lastSent >= self._limits.keepaliveInterval:
            self.transport.write(KEEPALIVE_FRAME)
            self._lastSent = now
        self._schedule(self._tickInterval, self._tick)

    def connectionLost(self, reason):
        self._cancelTimer()
        closedByUs = self.state is LinkState.CLOSING
        reached = self._closedFrom if closedByUs else self.state
        self._moveTo(LinkState.CLOSED)
        self._queued = []
        why = self._closeReason or self._describeLoss(reason, reached)
        direction = "from" if self.inbound else "to"
        if closedByUs and self._closeReason is None:
            self.log.debug("link {direction} {peer} closed", direction=direction, peer=describePeer(self.peer))
        elif reached is LinkState.OPEN and reason.check(ConnectionDone) and not self._decoder.pending:
            self.log.info("link {direction} {peer} closed by the peer", direction=direction, peer=describePeer(self.peer))
        else:
            self.log.warn("link {direction} {peer} closed: {why}", direction=direction, peer=describePeer(self.peer), why=why)
        if self._outbound is not None and reached is not LinkState.OPEN:
            self._outbound.failed(LinkFailed(why) if not isinstance(why, Exception) else why)
        handler, self._handler = self._handler, None
        if handler is not None:
            try:
                handler.linkClosed(reason)
            except Exception:
                self.log.failure("handler of {purpose} link failed on close", purpose=self.purpose)
        self._service.connectionEnded(self)
        self.ending.end()

    def _describeLoss(self, reason, reached):
        if reached is LinkState.HANDSHAKING:
            rejection = rejectionOf(self.transport.getHandle()) if self.transport else None
            if rejection is not None:
                return rejection
            if reason.check(SSL.Error):
                return f"TLS handshake failed: {_sslErrorText(reason.value)}"
            return "connection closed before the TLS handshake completed"
        if reached is not LinkState.OPEN:
            return "connection closed before the OPEN frame"
        if self._decoder.pending:
            return f"connection closed inside a frame ({self._decoder.pending} bytes pending)"
        return reason.getErrorMessage()

    # ILink

    def attach(self, handler):
        self._handler = handler
        queued, self._queued = self._queued, []
        for payload in queued:
            if self.state in _ENDED:
                return
            self._deliver(payload)
        if queued and self.state not in _ENDED:
            self.transport.resumeProducing()

    def sendFrame(self, payload):
        size = len(payload)
        if not 0 < size <= MAX_PAYLOAD:
            raise ValueError(f"DATA payload of {size} bytes; 1 to {MAX_PAYLOAD} allowed")
        if self.state in _ENDED:
            return
        self.transport.writeSequence((HEADER.pack(size + 1, _DATA), payload))
        self._lastSent = self._clock.seconds()

    def close(self):
        if self.state not in _ENDED:
            self._moveTo(LinkState.CLOSING)
            self._cancelTimer()
            # TLS holds its close back while a producer is registered.
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def abort(self, reason):
        if self.state in _ENDED:
            return
        self._moveTo(LinkState.CLOSING)
        self._closeReason = reason
        self._cancelTimer()
        self.transport.abortConnection()

    def registerProducer(self, producer, streaming):
        self.transport.registerProducer(producer, streaming)

    def pauseProducing(self):
        if self.state not in _ENDED:
            self.transport.pauseProducing()

    def resumeProducing(self):
        if self.state not in _ENDED:
            self.transport.resumeProducing()

    def stopProducing(self):
        self.close()

    def unregisterProducer(self):
        self.transport.unregisterProducer()

    # Timers

    def _schedule(self, delay, f, *args):
        self._cancelTimer()
        self._timer = self._clock.callLater(delay, f, *args)

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _sslErrorText(error):
    parts = [entry[-1] for entry in getattr(error, "args", [[]])[0] if isinstance(entry, tuple) and entry[-1]]
    return "; ".join(parts) or str(error) or error.__class__.__name__
