"""
Link timers, driven deterministically: two link layers joined in memory by C{iosim} with real
TLS, and a L{Clock} instead of the reactor, so every timeout is checked to the second.
"""

import dataclasses

from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.address import IPv4Address
from OpenSSL.crypto import X509
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LinkLimits
from phantom.identity import Identity
from phantom.link.echo import EchoHandler
from phantom.link.protocol import NEXT_STATES, Hold, LinkState
from phantom.link.service import LinkService, OutboundRequest, _LinkFactory
from phantom.link.testing import pumpedTLSPair
from phantom.link.tls import ClientConnectionCreator, ServerConnectionCreator
from phantom.wire.link import KEEPALIVE_FRAME, MAX_BODY, Purpose, dataHeader, encodeOpen
from tests.link.helpers import LogCollector

LIMITS = LinkLimits(handshakeTimeout=5, openTimeout=5, idleTimeout=30, keepaliveInterval=10)


DRAIN_LIMITS = dataclasses.replace(LIMITS, idleTimeout=600, keepaliveInterval=200)


def linkedPair(testCase, limits=LIMITS, linkId=bytes(16), awaitedFrom=None):
    """
    A client and a server link layer connected in memory over real TLS.

    @param awaitedFrom: the client's host if the server awaits the link (C{server.awaited} is
        then the wait's Deferred), or C{None} for an ECHO link to the ECHO handler.
    @return: (clock, pump, server service, client service, Deferred of the client's link)
    """
    reactor = MemoryReactorClock()
    server = LinkService(Identity.generate(), None, limits, reactor)
    server.registerPurpose(Purpose.ECHO, EchoHandler)
    if awaitedFrom is not None:
        server.awaited = server.expectLink(linkId, awaitedFrom, Purpose.ECHO, 5)
    client = LinkService(Identity.generate(), None, limits, reactor)
    opened = Deferred()
    request = OutboundRequest(Purpose.ECHO, linkId, opened)
    serverFactory = TLSMemoryBIOFactory(ServerConnectionCreator(server._serverContext), False, _LinkFactory(server), clock=reactor)
    clientFactory = TLSMemoryBIOFactory(ClientConnectionCreator(client._clientContext), True, _LinkFactory(client, request), clock=reactor)
    clientAddress = IPv4Address("TCP", "127.0.0.2", 40000)
    serverAddress = IPv4Address("TCP", "127.0.0.1", 7402)
    clientProtocol, serverProtocol, pump = pumpedTLSPair(serverFactory, clientFactory, serverAddress, clientAddress, reactor)
    return reactor, pump, server, client, opened


def advance(clock, pump, seconds, step=1.0):
    """Let C{seconds} pass in steps, moving bytes after each."""
    elapsed = 0.0
    while elapsed < seconds:
        clock.advance(step)
        pump.flush()
        elapsed += step


class TimerTests(SynchronousTestCase):
    """Keepalives keep links open; silence closes them at the configured time."""

    def test_keepalivesKeepLinkOpen(self):
        """Two nodes keep an unused link open for many idle timeouts."""
        clock, pump, server, client, opened = linkedPair(self)
        pump.flush()
        link = self.successResultOf(opened)
        advance(clock, pump, 10 * LIMITS.idleTimeout)
        self.assertIn(link, client.links)
        self.assertEqual(len(server.links), 1)

    def test_silentPeerClosedAtIdleTimeout(self):
        """A peer that stops sending is closed once the idle timeout has passed, not before."""
        clock, pump, server, client, opened = linkedPair(self)
        pump.flush()
        link = self.successResultOf(opened)
        link.transport.write = lambda data: None  # the client goes silent
        link._tick = lambda: None
        advance(clock, pump, LIMITS.idleTimeout - 2 * LIMITS.keepaliveInterval / 3)
        self.assertEqual(len(server.links), 1)
        advance(clock, pump, LIMITS.idleTimeout)
        self.assertEqual(server.links, frozenset())

    def openWithRecordedWrites(self):
        """A linked pair whose client link records what it writes; (clock, pump, link, writes)."""
        clock, pump, server, client, opened = linkedPair(self)
        pump.flush()
        link = self.successResultOf(opened)
        written = []
        original = link.transport.write
        link.transport.write = lambda data: (written.append(data), original(data))
        return clock, pump, link, written

    def test_keepaliveSentWhenQuiet(self):
        """A link that sent nothing for the keepalive interval sends a KEEPALIVE frame."""
        clock, pump, link, written = self.openWithRecordedWrites()
        advance(clock, pump, LIMITS.keepaliveInterval + LIMITS.idleTimeout / 3)
        self.assertIn(KEEPALIVE_FRAME, written)

    def test_busyLinkSendsNoKeepalive(self):
        """A link that keeps sending data sends no keepalives."""
        clock, pump, link, written = self.openWithRecordedWrites()
        for _ in range(int(3 * LIMITS.keepaliveInterval)):
            link.sendFrame(b"busy")
            advance(clock, pump, 1)
        self.assertNotIn(KEEPALIVE_FRAME, written)

    def test_handshakeTimeout(self):
        """A connection whose handshake never completes is closed after the handshake timeout."""
        clock = MemoryReactorClock()
        server = LinkService(Identity.generate(), None, dataclasses.replace(LIMITS, handshakeTimeout=7), clock)
        serverFactory = TLSMemoryBIOFactory(ServerConnectionCreator(server._serverContext), False, _LinkFactory(server), clock=clock)
        protocol = serverFactory.buildProtocol(None)
        transport = iosim.FakeTransport(
            protocol, True, IPv4Address("TCP", "127.0.0.1", 7402), IPv4Address("TCP", "127.0.0.2", 40000)
        )
        protocol.makeConnection(transport)
        self.assertEqual(len(server.connections), 1)
        clock.advance(6.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)



class AwaitedLinkTests(SynchronousTestCase):
    def test_framesBeforeAttachAreKept(self):
        """Frames that arrive before the awaiter attaches its handler are delivered after, in order."""
        clock, pump, server, client, opened = linkedPair(self, linkId=b"\x43" * 16, awaitedFrom="127.0.0.2")
        outbound = self.successResultOf(opened)
        inbound = self.successResultOf(server.awaited)
        outbound.sendFrame(b"one")
        outbound.sendFrame(b"two")
        pump.flush()
        handler = Recorder()
        inbound.attach(handler)
        self.assertEqual(handler.frames, [b"one", b"two"])
        outbound.sendFrame(b"three")
        pump.flush()
        self.assertEqual(handler.frames, [b"one", b"two", b"three"])


class Recorder:
    """A link handler that keeps the frames it receives."""

    def __init__(self):
        self.frames = []

    def frameReceived(self, payload):
        self.frames.append(payload)

    def linkClosed(self, reason):
        pass


class CertifiedTransport(StringTransport):
    """A string transport whose peer presented C{identity}'s certificate in a TLS handshake."""

    def __init__(self, identity):
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.2", 40000))
        self._certificate = X509.from_cryptography(identity.certificate)

    def getPeerCertificate(self):
        return self._certificate

    def abortConnection(self):
        self.loseConnection()

    def unregisterProducer(self):
        self.producer = None  # as TLS does: whether or not one is registered


class StateTests(SynchronousTestCase):
    """A link's L{LinkState}: every move it makes is one of L{NEXT_STATES}."""

    def inboundLink(self, limits=LIMITS):
        """An inbound link on a string transport, its handshake not yet complete; (clock, server, link, transport)."""
        clock = MemoryReactorClock()
        server = LinkService(Identity.generate(), None, limits, clock)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        link = _LinkFactory(server).buildProtocol(None)
        transport = CertifiedTransport(Identity.generate())
        link.makeConnection(transport)
        return clock, server, link, transport

    def test_inbound(self):
        """HANDSHAKING, AWAITING_OPEN after the handshake, OPEN with the OPEN frame, CLOSING, CLOSED and ended."""
        clock, server, link, transport = self.inboundLink()
        self.assertEqual(link.state, LinkState.HANDSHAKING)
        link.handshakeCompleted()
        self.assertEqual(link.state, LinkState.AWAITING_OPEN)
        self.assertFalse(link.opened)
        link.dataReceived(encodeOpen(Purpose.ECHO))
        self.assertEqual(link.state, LinkState.OPEN)
        self.assertTrue(link.opened)
        ended = link.ending.whenEnded()
        link.close()
        self.assertEqual(link.state, LinkState.CLOSING)
        self.assertNoResult(ended)
        link.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(link.state, LinkState.CLOSED)
        self.successResultOf(ended)
        self.assertEqual(server.connections, frozenset())

    def test_noOpenFrame(self):
        """AWAITING_OPEN for the open timeout, then aborted: CLOSING until the connection is gone."""
        clock, server, link, transport = self.inboundLink()
        link.handshakeCompleted()
        clock.advance(LIMITS.openTimeout)
        self.assertEqual(link.state, LinkState.CLOSING)
        self.assertTrue(transport.disconnecting)

    def test_outbound(self):
        """An outbound link is OPEN once the handshake completes; both ends CLOSED after a close."""
        clock, pump, server, client, opened = linkedPair(self)
        outbound = self.successResultOf(opened)
        [inbound] = server.connections
        self.assertEqual((inbound.state, outbound.state), (LinkState.OPEN, LinkState.OPEN))
        outbound.close()
        pump.flush()
        self.assertEqual((inbound.state, outbound.state), (LinkState.CLOSED, LinkState.CLOSED))

    def test_framesInOneWrite(self):
        """
        C{sendFrames} sends each payload as one DATA frame, in order, with one write to TLS; a
        payload out of bounds raises before anything is written.
        """
        clock, server, link, transport = self.inboundLink()
        link.handshakeCompleted()
        link.dataReceived(encodeOpen(Purpose.ECHO))
        writes = []
        transport.writeSequence = lambda parts: writes.append(b"".join(parts))
        link.sendFrames([b"one", b"two" * 1000])
        self.assertEqual(writes, [dataHeader(3) + b"one" + dataHeader(3000) + b"two" * 1000])
        self.assertRaises(ValueError, link.sendFrames, [b"fine", b""])
        self.assertRaises(ValueError, link.sendFrames, [b"x" * (MAX_BODY + 1)])
        self.assertEqual(len(writes), 1)

    def test_noWayBack(self):
        """A closed link cannot become anything else; every state has its moves listed."""
        clock, server, link, transport = self.inboundLink()
        link.abort("test")
        link.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(NEXT_STATES[LinkState.CLOSED], set())
        self.assertRaises(RuntimeError, link._moveTo, LinkState.OPEN)
        self.assertEqual(set(NEXT_STATES), set(LinkState))


class Producer:
    """A push producer that records what it is told."""

    def __init__(self):
        self.calls = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


def echoFrame(payload):
    return dataHeader(len(payload)) + payload


class BackpressureTests(SynchronousTestCase):
    """A link whose outbound buffer is full reads nothing; a peer that never drains it is closed."""

    def openEchoLink(self):
        """An inbound ECHO link, open, on a string transport; (clock, link, transport, logs)."""
        clock, server, link, transport = StateTests.inboundLink(self, DRAIN_LIMITS)
        logs = LogCollector(self)
        link.handshakeCompleted()
        link.dataReceived(encodeOpen(Purpose.ECHO))
        return clock, link, transport, logs

    def test_fullBufferStopsReading(self):
        """While the transport says the buffer is full, frames wait unread; they are answered once it drains."""
        clock, link, transport, logs = self.openEchoLink()
        writeSide = transport.producer
        link.dataReceived(echoFrame(b"one"))
        self.assertEqual(transport.value(), echoFrame(b"one"))
        writeSide.pauseProducing()
        self.assertEqual((transport.producerState, link.holds), ("paused", {Hold.WRITES}))
        link.dataReceived(echoFrame(b"two") + echoFrame(b"three"))
        self.assertEqual(transport.value(), echoFrame(b"one"))
        clock.advance(DRAIN_LIMITS.drainTimeout - 1)
        writeSide.resumeProducing()
        self.assertEqual(transport.value(), b"".join(map(echoFrame, [b"one", b"two", b"three"])))
        self.assertEqual((transport.producerState, link.holds), ("producing", frozenset()))
        clock.advance(DRAIN_LIMITS.drainTimeout)
        self.assertTrue(link.opened)

    def test_writesBlockedDuringAFrame(self):
        """A buffer that fills while one frame is handled stops the frames after it, read in the same chunk."""
        clock, link, transport, logs = self.openEchoLink()
        writeSide = transport.producer
        link.attach(FillsOnFirst(link, writeSide))
        link.dataReceived(echoFrame(b"one") + echoFrame(b"two"))
        self.assertEqual(transport.value(), echoFrame(b"one"))
        writeSide.resumeProducing()
        self.assertEqual(transport.value(), echoFrame(b"one") + echoFrame(b"two"))

    def test_peerNeverDrains(self):
        """A buffer that stays full for the drain timeout closes the link, with one line naming the peer."""
        clock, link, transport, logs = self.openEchoLink()
        transport.producer.pauseProducing()
        clock.advance(DRAIN_LIMITS.drainTimeout - 0.5)
        self.assertTrue(link.opened)
        clock.advance(0.5)
        self.assertEqual(link.state, LinkState.CLOSING)
        link.connectionLost(Failure(ConnectionAborted()))
        [line] = logs.lines
        self.assertIn("127.0.0.2:40000", line)
        self.assertIn(f"read nothing for {DRAIN_LIMITS.drainTimeout:g} s", line)

    def test_closeThatNeverDrains(self):
        """A closed link whose peer takes nothing is aborted after the drain timeout."""
        clock, link, transport, logs = self.openEchoLink()
        link.close()
        clock.advance(DRAIN_LIMITS.drainTimeout)
        link.connectionLost(Failure(ConnectionAborted()))
        [line] = logs.lines
        self.assertIn(f"did not let it close within {DRAIN_LIMITS.drainTimeout:g} s", line)

    def test_closedWhileHeldReadsAgain(self):
        """
        A link closed while its full buffer and the consumer it feeds hold its reading reads
        again, so that TLS sees its peer's close_notify (before, it waited for the drain
        timeout); what it reads then is not handled.
        """
        clock, link, transport, logs = self.openEchoLink()
        producer = Producer()
        link.registerProducer(producer, True)
        link.unregisterProducer()
        transport.producer.pauseProducing()
        link.pauseProducing()
        self.assertEqual((link.holds, transport.producerState), ({Hold.WRITES, Hold.CONSUMER}, "paused"))
        link.close()
        self.assertEqual((link.holds, transport.producerState), (frozenset(), "producing"))
        link.dataReceived(echoFrame(b"late"))
        self.assertNotIn(echoFrame(b"late"), transport.value())

    def test_registeredProducerPausedInstead(self):
        """A registered producer (a splice's other link) is paused in the link's place; the link reads on."""
        clock, link, transport, logs = self.openEchoLink()
        producer = Producer()
        link.registerProducer(producer, True)
        transport.producer.pauseProducing()
        self.assertEqual((producer.calls, link.holds, transport.producerState), (["pause"], frozenset(), "producing"))
        link.dataReceived(echoFrame(b"one"))
        self.assertEqual(transport.value(), echoFrame(b"one"))
        transport.producer.resumeProducing()
        self.assertEqual(producer.calls, ["pause", "resume"])
        link.unregisterProducer()
        transport.producer.pauseProducing()
        self.assertEqual((producer.calls, link.holds), (["pause", "resume"], {Hold.WRITES}))

    def test_producerRegisteredWhileFull(self):
        """
        A producer registered while the buffer is full is paused at once, and the link reads
        again; unregistered while it is still full, the link stops reading in its place.
        """
        clock, link, transport, logs = self.openEchoLink()
        transport.producer.pauseProducing()
        producer = Producer()
        link.registerProducer(producer, True)
        self.assertEqual((producer.calls, link.holds, transport.producerState), (["pause"], frozenset(), "producing"))
        self.assertRaises(RuntimeError, link.registerProducer, Producer(), True)
        link.unregisterProducer()
        self.assertEqual((link.holds, transport.producerState), ({Hold.WRITES}, "paused"))
        transport.producer.resumeProducing()
        self.assertEqual((link.holds, transport.producerState), (frozenset(), "producing"))

    def test_holdsCombine(self):
        """Reading resumes only when the buffer has drained and the consumer the link feeds wants more."""
        clock, link, transport, logs = self.openEchoLink()
        link.pauseProducing()
        transport.producer.pauseProducing()
        link.dataReceived(echoFrame(b"one"))
        transport.producer.resumeProducing()
        self.assertEqual((transport.value(), link.holds), (b"", {Hold.CONSUMER}))
        link.resumeProducing()
        self.assertEqual((transport.value(), transport.producerState), (echoFrame(b"one"), "producing"))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(st.binary(min_size=1, max_size=20), st.sampled_from(["full", "drained", "paused", "resumed"]))))
    def test_framesAnsweredInOrderOnlyWhileFree(self, steps):
        """
        Whatever the order of frames, full and drained buffers, pauses and resumes: nothing is
        answered while held, everything is answered in order once free, and the link stays open.
        """
        clock, link, transport, logs = self.openEchoLink()
        writeSide = transport.producer
        sent = []
        for step in steps:
            if step == "full":
                writeSide.pauseProducing()
            elif step == "drained":
                writeSide.resumeProducing()
            elif step == "paused":
                link.pauseProducing()
            elif step == "resumed":
                link.resumeProducing()
            else:
                before = transport.value()
                sent.append(step)
                link.dataReceived(echoFrame(step))
                if link.holds:
                    self.assertEqual(transport.value(), before)
            if not link.holds:
                self.assertEqual(transport.value(), b"".join(map(echoFrame, sent)))
            self.assertEqual(transport.producerState, "paused" if link.holds else "producing")
        writeSide.resumeProducing()
        link.resumeProducing()
        self.assertEqual(transport.value(), b"".join(map(echoFrame, sent)))
        self.assertTrue(link.opened)

    def test_badFrameWhileHeld(self):
        """A malformed frame read while the link is held still closes it at once, with one clear line."""
        clock, link, transport, logs = self.openEchoLink()
        transport.producer.pauseProducing()
        link.dataReceived((MAX_BODY + 1).to_bytes(4, "big") + b"\x02")
        self.assertEqual(link.state, LinkState.CLOSING)
        link.connectionLost(Failure(ConnectionAborted()))
        [line] = logs.lines
        self.assertIn("127.0.0.2:40000", line)


class FillsOnFirst:
    """An echo handler whose first answer fills the link's outbound buffer."""

    def __init__(self, link, writeSide):
        self._link = link
        self._writeSide = writeSide
        self._first = True

    def frameReceived(self, payload):
        self._link.sendFrame(payload)
        if self._first:
            self._first = False
            self._writeSide.pauseProducing()

    def linkClosed(self, reason):
        pass


class FairnessTests(SynchronousTestCase):
    """
    One link's flood cannot hold the reactor: a link handles its share of frames per turn, then
    lets the others have theirs; the frame-rate limit counts the work frames bring.
    """

    def service(self, limits=LIMITS):
        clock = MemoryReactorClock()
        server = LinkService(Identity.generate(), None, limits, clock)
        server.registerPurpose(Purpose.ECHO, lambda link: Recorder())
        return clock, server

    def openLink(self, server):
        """An open inbound ECHO link whose handler records its frames; (link, transport, handler)."""
        handlers = []
        server.registerPurpose(Purpose.ECHO, lambda link: handlers.append(Recorder()) or handlers[0])
        link = _LinkFactory(server).buildProtocol(None)
        transport = CertifiedTransport(Identity.generate())
        link.makeConnection(transport)
        link.handshakeCompleted()
        link.dataReceived(encodeOpen(Purpose.ECHO))
        return link, transport, handlers[0]

    def test_floodYieldsEachTurn(self):
        """
        1,000 frames read at once from a flooding peer are handled 64 a turn, its reading paused
        in between; a well-behaved link's frame read meanwhile is handled before the next.
        """
        clock, server = self.service()
        flooder, flooderTransport, flooded = self.openLink(server)
        good, _, quiet = self.openLink(server)
        flooder.dataReceived(echoFrame(b"x") * 1000)
        self.assertEqual(len(flooded.frames), LIMITS.framesPerTurn)
        self.assertEqual((flooderTransport.producerState, flooder.holds), ("paused", {Hold.TURN}))
        good.dataReceived(echoFrame(b"hello"))
        self.assertEqual(quiet.frames, [b"hello"])
        clock.advance(0)  # a Clock runs the turns scheduled as it goes; a reactor, one per iteration
        self.assertEqual(len(flooded.frames), 1000)
        self.assertEqual((flooderTransport.producerState, flooder.holds), ("producing", frozenset()))

    def test_closedWhileWaitingForItsTurn(self):
        """A link closed while it waits for its next turn leaves no timer behind."""
        clock, server = self.service()
        link, transport, _ = self.openLink(server)
        link.dataReceived(echoFrame(b"x") * 100)
        link.abort("test")
        link.connectionLost(Failure(ConnectionAborted()))
        self.assertEqual([call for call in clock.getDelayedCalls() if call.active()], [])

    def test_workCountsBytes(self):
        """A few big frames are as much work as many small ones: 3 frames of 128 KiB count 27."""
        clock, server = self.service(dataclasses.replace(LIMITS, maxFramesPerSecond=20))
        logs = LogCollector(self)
        link, transport, _ = self.openLink(server)
        link.dataReceived(echoFrame(b"x" * 131067) * 3)
        clock.advance(0)
        self.assertTrue(transport.disconnecting)
        link.connectionLost(Failure(ConnectionAborted()))
        [line] = logs.lines
        self.assertIn("more than 20 frames' work in one second", line)

    def test_floodingAddressCoolsDown(self):
        """
        A link closed for too much work has its peer's address refused at accept for
        C{floodCooldown} seconds, before any TLS work; other addresses are accepted meanwhile.
        """
        limits = dataclasses.replace(LIMITS, maxFramesPerSecond=20, floodCooldown=30)
        clock, server = self.service(limits)
        link, transport, _ = self.openLink(server)
        self.assertTrue(server.admit("127.0.0.2"))
        link.dataReceived(KEEPALIVE_FRAME * 50)
        self.assertTrue(transport.disconnecting)
        link.connectionLost(Failure(ConnectionAborted()))
        self.assertFalse(server.admit("127.0.0.2"))
        self.assertTrue(server.admit("127.0.0.3"))
        clock.advance(29)
        self.assertFalse(server.admit("127.0.0.2"))
        clock.advance(1)
        self.assertTrue(server.admit("127.0.0.2"))
        self.assertEqual(server.refusals.total, 2)

    def test_bigReadDecodedASliceATurn(self):
        """
        One read of 256 KiB of KEEPALIVE frames is decoded 32 KiB a turn (as set here), the link's reading
        paused in between, so a well-behaved link is served before the rest; a read beyond the
        work limit closes the link at the slice that crosses it, the rest never decoded.
        """
        limits = dataclasses.replace(LIMITS, maxFramesPerSecond=20000, bytesPerTurn=32768)
        clock, server = self.service(limits)
        flooder, transport, _ = self.openLink(server)
        good, _, quiet = self.openLink(server)
        decoded = []
        real = flooder._decoder.feed
        self.patch(flooder._decoder, "feed", lambda data: decoded.append(len(data)) or real(data))
        flooder.dataReceived(KEEPALIVE_FRAME * (256 * 1024 // 5))
        self.assertEqual(decoded, [limits.bytesPerTurn])
        self.assertEqual((transport.producerState, flooder.holds), ("paused", {Hold.TURN}))
        good.dataReceived(echoFrame(b"hello"))
        self.assertEqual(quiet.frames, [b"hello"])
        clock.advance(0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(decoded), 4)  # 26,214 frames: over 20,000 in the fourth slice
