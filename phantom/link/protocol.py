"""
One link: a TLS connection carrying frames, from the handshake to the close.

L{LinkProtocol} is the protocol inside Twisted's C{TLSMemoryBIOProtocol}. It checks the peer's
certificate when the handshake completes, sends or expects the OPEN frame, enforces the
handshake, open, idle and drain timeouts and the frame-rate limit, sends keepalives, and hands
DATA payloads to the handler of the link's purpose. A peer that breaks the rules gets its
connection aborted and one log line naming it and the reason.

Backpressure: the link is the producer of its own writes (registered with its transport), so
while more than C{LinkLimits.maxWriteBuffer} bytes wait for the kernel it handles no more frames
and reads nothing; a handler that answers on the same link (ECHO, the DHT's RPC) can then make it
write no more. A splice registers the other link of its tunnel instead, which is then paused in
its place. A peer that takes none of the waiting bytes within C{LinkLimits.drainTimeout} loses
its link.

Where a link is in its life is its L{LinkState}; L{NEXT_STATES} lists every move.
"""

from collections import deque
from enum import Enum

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import describePeer, unmapped
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

WORK_BYTES = 16384
"""A frame counts one unit of work against C{LinkLimits.maxFramesPerSecond}, and one more for
every this many bytes it carries."""


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


class Hold(Enum):
    """Why a link reads and handles no frames for now."""

    UNATTACHED = "a DATA frame arrived before its handler"
    WRITES = "its outbound buffer is full"
    CONSUMER = "the consumer it feeds (a spliced link) is full"
    TURN = "it handled its share of frames in this turn of the reactor"


@implementer(IPushProducer)
class _WriteSide:
    """
    What a link registers as its transport's producer: the transport's pause and resume of
    the link's writes, passed to the link.
    """

    def __init__(self, link):
        self._link = link

    def pauseProducing(self):
        self._link._writesBlocked()

    def resumeProducing(self):
        self._link._writesDrained()

    def stopProducing(self):
        self._link._writesStopped()


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
        self._backlog = deque()
        self._holds = set()
        self._handling = False
        self._producer = None
        self._writeSide = _WriteSide(self)
        self._timer = None
        self._turn = None
        self._unread = deque()
        self._writesFull = False
        self._drainTimer = None
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
        self._afterRead = None
        self._reading = 0

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
        self.peer = unmapped(self.transport.getPeer())
        tcp = getattr(self.transport, "transport", None)
        if tcp is not None and hasattr(tcp, "bufferSize"):
            # A FileDescriptor pauses its producer above bufferSize bytes unsent.
            tcp.bufferSize = self._limits.maxWriteBuffer
        self.transport.registerProducer(self._writeSide, True)
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
        if not self._unread and not self._holds and len(data) <= self._limits.bytesPerTurn:
            # The usual read (one TLS record's plaintext): decoded and handled at once.
            self._decode(data)
            if self.state not in _ENDED:
                self._handleBacklog()
            return
        self._unread.append(data)
        self._work()

    def readStarted(self):
        """The TLS layer begins to hand over the records of one socket read (L{afterRead})."""
        if self._afterRead is None:
            self._afterRead = []
        self._reading += 1

    def readDone(self):
        """
        The TLS layer has handed over every record of the socket read: run the calls that
        waited for that, and those they add meanwhile, each alone (one that fails is logged).
        A read within a read (none happens: reads come from the reactor) leaves them to the outer.
        """
        self._reading -= 1
        calls = self._afterRead
        if calls is None or self._reading:
            return
        try:
            for call in calls:
                try:
                    call()
                except Exception:
                    self.log.failure("after a read of the {purpose} link from {peer}", purpose=self.purpose, peer=describePeer(self.peer))
        finally:
            self._afterRead = None

    def afterRead(self, call):
        if self._afterRead is None:
            return False
        self._afterRead.append(call)
        return True

    def _work(self):
        """
        This turn's work: decode at most C{bytesPerTurn} of the bytes read, then handle frames;
        what is left waits for the next turn (one socket read can hold a quarter of a million
        KEEPALIVE frames).
        """
        if Hold.TURN in self._holds or self.state in _ENDED:
            return
        budget = self._limits.bytesPerTurn
        while self._unread and budget > 0 and self.state not in _ENDED:
            data = self._unread.popleft()
            if len(data) > budget:
                view = memoryview(data)
                self._unread.appendleft(view[budget:])
                data = view[:budget]
            budget -= len(data)
            self._decode(bytes(data) if isinstance(data, memoryview) else data)
        if self.state in _ENDED:
            return
        self._handleBacklog()
        if self._unread and not self._holds:
            self._yieldTurn()

    def _decode(self, data):
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as e:
            return self.abort(str(e))
        now = self._clock.seconds()
        if frames:
            self._lastReceived = now
        if now - self._windowStart >= 1.0:
            self._windowStart = now
            self._windowFrames = 0
        work = len(data) // WORK_BYTES
        for kind, content in frames:
            if kind is FrameKind.KEEPALIVE:
                # A run of KEEPALIVEs did all it does: it refreshed _lastReceived.
                work += content or 1
            else:
                work += 1
                self._backlog.append((kind, content))
        self._windowFrames += work
        if self._windowFrames > self._limits.maxFramesPerSecond:
            self._service.flooded(self)
            return self.abort(f"more than {self._limits.maxFramesPerSecond} frames' work in one second")

    def _yieldTurn(self):
        """Let other links and clients have the reactor before this one goes on."""
        if self._turn is None and self.state not in _ENDED:
            self._hold(Hold.TURN)
            self._turn = self._service.reactor.callLater(0, self._nextTurn)

    def _handleBacklog(self):
        """Handle the frames read, in order, until one of L{Hold} stops it."""
        if self._handling:
            return
        self._handling = True
        share = self._limits.framesPerTurn
        try:
            while self._backlog and not self._holds and self.state not in _ENDED:
                if not share:
                    return self._yieldTurn()
                share -= 1
                kind, content = self._backlog.popleft()
                if kind == _DATA:
                    if self.state is not LinkState.OPEN:
                        return self.abort("DATA frame before OPEN")
                    if self._handler is None:
                        self._backlog.appendleft((kind, content))
                        self._hold(Hold.UNATTACHED)
                        return
                    self._deliver(content)
                elif kind == FrameKind.OPEN:
                    self._openReceived(content)
        finally:
            self._handling = False

    def _nextTurn(self):
        self._turn = None
        self._release(Hold.TURN)

    def _hold(self, why):
        if not self._holds:
            self.transport.pauseProducing()
        self._holds.add(why)

    def _release(self, why):
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and self.state not in _ENDED:
            self.transport.resumeProducing()
            self._work()

    def _openReceived(self, content):
        if self.state is not LinkState.AWAITING_OPEN:
            return self.abort("unexpected OPEN frame")
        self.purpose = Purpose(int(content.purpose))
        self.linkId = content.link_id
        self._cancelTimer()
        self._becomeOpen()
        self._service.dispatch(self)

    def _deliver(self, payload):
        try:
            self._handler.frameReceived(payload)
        except Exception:
            self.log.failure("handler of {purpose} link from {peer} failed", purpose=self.purpose, peer=describePeer(self.peer))
            self.abort("its handler failed")

    def _tick(self):
        now = self._clock.seconds()
        if self._holds:
            self._lastReceived = now  # not reading: the peer's silence would be ours
        elif now - self._lastReceived >= self._limits.idleTimeout:
            return self.abort(f"idle for {self._limits.idleTimeout:g} s")
        if now - self._lastSent >= self._limits.keepaliveInterval:
            self.transport.write(KEEPALIVE_FRAME)
            self._lastSent = now
        self._schedule(self._tickInterval, self._tick)

    # Backpressure: called by the transport through the link's _WriteSide

    def _writesBlocked(self):
        self._writesFull = True
        if self._drainTimer is None and self.state is not LinkState.CLOSED:
            self._drainTimer = self._clock.callLater(self._limits.drainTimeout, self._drainExpired)
        if self._producer is not None:
            self._producer.pauseProducing()
        else:
            self._hold(Hold.WRITES)

    def _writesDrained(self):
        self._writesFull = False
        self._cancelDrainTimer()
        if self._producer is not None:
            self._producer.resumeProducing()
        self._release(Hold.WRITES)

    def _writesStopped(self):
        if self._producer is not None:
            self._producer.stopProducing()

    def _drainExpired(self):
        self._drainTimer = None
        if self.state is LinkState.CLOSING:
            self._closeReason = f"its peer did not let it close within {self._limits.drainTimeout:g} s"
            self.transport.abortConnection()
        else:
            self.abort(f"its peer read nothing for {self._limits.drainTimeout:g} s")

    def _cancelDrainTimer(self):
        if self._drainTimer is not None and self._drainTimer.active():
            self._drainTimer.cancel()
        self._drainTimer = None

    def connectionLost(self, reason):
        self._cancelTimer()
        self._cancelDrainTimer()
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._turn = None
        closedByUs = self.state is LinkState.CLOSING
        reached = self._closedFrom if closedByUs else self.state
        self._moveTo(LinkState.CLOSED)
        self._backlog.clear()
        self._unread.clear()
        self._producer = None
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
        self._release(Hold.UNATTACHED)

    def sendFrame(self, payload):
        header = _dataHeader(payload)
        if self.state in _ENDED:
            return
        self.transport.write(header + payload)
        self._lastSent = self._clock.seconds()

    def sendFrames(self, payloads):
        parts = []
        for payload in payloads:
            parts += (_dataHeader(payload), payload)
        if self.state in _ENDED or not parts:
            return
        self.transport.writeSequence(parts)
        self._lastSent = self._clock.seconds()

    def close(self):
        if self.state not in _ENDED:
            self._moveTo(LinkState.CLOSING)
            self._cancelTimer()
            # TLS closes once it reads its peer's close_notify: a closing link reads, whatever
            # held it back (the frames it reads are dropped; the drain timeout bounds it).
            if self._holds:
                self._holds.clear()
                self.transport.resumeProducing()
            # TLS holds its close back while a producer is registered.
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            if self._drainTimer is None:
                # Whatever is still unsent must go within the drain timeout too.
                self._drainTimer = self._clock.callLater(self._limits.drainTimeout, self._drainExpired)

    def abort(self, reason):
        if self.state in _ENDED:
            return
        self._moveTo(LinkState.CLOSING)
        self._closeReason = reason
        self._cancelTimer()
        self.transport.abortConnection()

    def registerProducer(self, producer, streaming):
        """
        Let C{producer} (a push producer) be paused instead of this link's reading while the
        link's outbound buffer is full.
        """
        if self._producer is not None:
            raise RuntimeError(f"a producer is registered with this link already: {self._producer!r}")
        if self.state is LinkState.CLOSED:
            producer.stopProducing()
            return
        self._producer = producer
        if Hold.WRITES in self._holds:
            producer.pauseProducing()
            self._release(Hold.WRITES)

    def unregisterProducer(self):
        producer, self._producer = self._producer, None
        if producer is not None and self._writesFull and self.state not in _ENDED:
            self._hold(Hold.WRITES)

    def pauseProducing(self):
        if self.state not in _ENDED:
            self._hold(Hold.CONSUMER)

    def resumeProducing(self):
        self._release(Hold.CONSUMER)

    def stopProducing(self):
        self.close()

    @property
    def holds(self):
        """The L{Hold}s that stop this link reading now: none while it reads."""
        return frozenset(self._holds)

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


def _dataHeader(payload):
    """
    @return: the header of the DATA frame that carries C{payload}.
    @raise ValueError: C{payload} is empty or longer than L{MAX_PAYLOAD}.
    """
    size = len(payload)
    if not 0 < size <= MAX_PAYLOAD:
        raise ValueError(f"DATA payload of {size} bytes; 1 to {MAX_PAYLOAD} allowed")
    return HEADER.pack(size + 1, _DATA)
