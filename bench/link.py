"""
Bulk throughput and 1 KiB round-trip time of one link, against bare Twisted TLS.

Two link services (a server node and a client node, each with its own identity) talk over
127.0.0.1. The baseline is the same TLS without the link layer: contexts from
L{phantom.link.tls.makeContext} (Ed25519 self-signed certificates, TLS 1.3, mutual
authentication, the client pinning the server's node id), the same connection creators and
C{TLSMemoryBIOFactory} over TCP, the same reactor, but a bare C{Protocol} that writes and
reads raw bytes. The difference measured is the link layer alone: framing, the OPEN frame,
frame decoding, dispatch to the purpose's handler, rate-limit and keepalive bookkeeping.

Figures:

    - C{throughput_mib_s}: payload MiB/s of one bulk transfer, written in L{CHUNK_SIZE}
      chunks (one full DATA frame each; the baseline writes chunks of the same size) by a
      push producer registered on the link (on the TLS transport for the baseline), timed
      from the first write until the receiving side has counted every byte. One chunk goes
      through first, untimed, so the server's side of the handshake is not in the figure.
    - C{rtt_1k_ms}: median time for 1 KiB to reach an echoing peer and come back whole: one
      DATA frame each way, echoed by L{phantom.link.echo.EchoHandler}; for the baseline, raw
      bytes echoed as they arrive, until 1 KiB is back. L{WARMUP_TRIPS} untimed trips first.

How it is run, and why: both ends live in this process, on one reactor. Every microsecond the
link layer adds, at the sending end (framing) or the receiving end (decoding, dispatch), then
shows in both figures, whereas with the peer in a child process the other core could hide the
cost of whichever end is not the bottleneck. A round trip inside one process also has no
cross-process wake-ups, whose cost (tens of microseconds, varying with the load of this shared
two-core machine) is the same for both variants and would only blur the ratio. The absolute
throughput is that of one core doing both ends, which is why only ratios are the contract.

Rounds interleave the variants: each round measures the bulk transfer on both, then the round
trips on both, baseline first in even rounds and link first in odd ones, each on a fresh
connection; the figures reported are medians over the rounds.

What TLS costs a link per record is measured apart, without sockets or a reactor, against a
baseline of its own (the same link layer over Twisted's C{TLSMemoryBIOProtocol}, as links ran
before L{phantom.link.service.LinkTLSProtocol}):

    - C{record_cpu_us_small} and C{record_cpu_us_16k}: CPU time (C{time.process_time}) per DATA
      frame of L{SMALL_RECORD} (a DHT message's size) or L{CELL_RECORD} bytes (a tunnel cell:
      one full TLS record), sent by one link and read by the other, each frame one TLS record
      and one read of the receiving end, both ends in memory (C{twisted.test.iosim}
      transports, bytes moved by hand). L{RECORD_FRAMES} frames a round on a fresh pair; the
      rounds interleave the two variants as above.
"""

import time
from dataclasses import replace
from functools import partial
from statistics import median

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOProtocol

from bench.report import BenchmarkResult, RatioGoal
from phantom.config import LinkLimits
from phantom.identity import Identity
from phantom.link.echo import EchoHandler
from phantom.link.interfaces import ILinkHandler
from phantom.link.protocol import LinkProtocol
from phantom.link.service import LinkService, LinkTLSFactory, OutboundRequest
from phantom.link.testing import pumpedTLSPair
from phantom.link.tls import ClientConnectionCreator, ServerConnectionCreator, makeContext
from phantom.wire.link import MAX_PAYLOAD, Purpose

HOST = "127.0.0.1"
MIB = 2**20

CHUNK_SIZE = MAX_PAYLOAD
"""Bytes per write of a bulk transfer: one full DATA frame."""
CHUNK = b"\xa5" * CHUNK_SIZE

PING_SIZE = 1024
"""Bytes sent, and awaited back, per round trip."""
PING = b"\x5a" * PING_SIZE

WARMUP_TRIPS = 100
"""Untimed round trips on each echo connection before the timed ones."""

THROUGHPUT = "throughput_mib_s"
ROUND_TRIP = "rtt_1k_ms"
SMALL_CPU = "record_cpu_us_small"
CELL_CPU = "record_cpu_us_16k"

SMALL_RECORD = 200
"""Payload bytes of a small frame, as a DHT request or answer carries."""
CELL_RECORD = 2**14 - 5
"""Payload bytes of a frame that fills one TLS record, as a tunnel cell does."""
RECORD_FRAMES = {SMALL_CPU: (SMALL_RECORD, 4000), CELL_CPU: (CELL_RECORD, 1000)}
"""Each per-record figure's payload size and frames a round."""

GOALS = {
    THROUGHPUT: RatioGoal(0.9, atLeast=True),
    ROUND_TRIP: RatioGoal(1.2, atLeast=False),
    SMALL_CPU: RatioGoal(0.8, atLeast=False),
    CELL_CPU: RatioGoal(1.1, atLeast=False),
}
"""What the link layer must reach against bare TLS, and its TLS per record against Twisted's."""

BULK_PURPOSE = Purpose.DHT
"""
The purpose the benchmark's own server accepts bulk links for: it serves no DHT, so the code
only routes those links to the byte counter.
"""

BENCH_LIMITS = replace(LinkLimits(), maxFramesPerSecond=10**9)
"""Default limits, but a frame-rate limit a benchmark never reaches."""


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take well under a minute).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    parser.add_argument("--rounds", type=_positive(int), default=7, help="interleaved rounds; medians are reported (default 7)")
    parser.add_argument("--mib", type=_positive(float), default=256, help="MiB per bulk transfer (default 256)")
    parser.add_argument("--trips", type=_positive(int), default=2000, help="timed 1 KiB round trips per round (default 2000)")


def _positive(convert):
    def positive(text):
        value = convert(text)
        if value <= 0:
            raise ValueError(text)
        return value

    positive.__name__ = f"positive {convert.__name__}"
    return positive


@inlineCallbacks
def measure(reactor, options):
    """
    Measure the link layer and bare TLS, interleaved.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}; runs both variants.
    @param options: the parsed options: C{rounds}, C{mib}, C{trips}.
    @return: a Deferred firing with the L{BenchmarkResult}.
    """
    serverIdentity, clientIdentity = Identity.generate(), Identity.generate()
    baseline = BareTLS(reactor, serverIdentity, clientIdentity)
    subject = PhantomLink(reactor, serverIdentity, clientIdentity)
    variants = (baseline, subject)
    samples = {variant: {THROUGHPUT: [], ROUND_TRIP: []} for variant in variants}
    totalBytes = int(options.mib * MIB)
    for variant in variants:
        yield variant.start()
    try:
        for number in range(options.rounds):
            order = variants if number % 2 == 0 else variants[::-1]
            for variant in order:
                samples[variant][THROUGHPUT].append((yield _bulkRound(variant, totalBytes)))
            for variant in order:
                samples[variant][ROUND_TRIP].append((yield _echoRound(variant, options.trips)))
    finally:
        yield DeferredList([variant.stop() for variant in variants])

    records = {protocol: {name: [] for name in RECORD_FRAMES} for protocol in (TLSMemoryBIOProtocol, LinkTLSFactory.protocol)}
    for number in range(options.rounds):
        order = list(records) if number % 2 == 0 else list(records)[::-1]
        for name, (size, frames) in RECORD_FRAMES.items():
            for protocol in order:
                records[protocol][name].append(recordCost(protocol, serverIdentity, clientIdentity, size, frames))
    for name in RECORD_FRAMES:
        samples[subject][name] = records[LinkTLSFactory.protocol][name]
        samples[baseline][name] = records[TLSMemoryBIOProtocol][name]

    def medians(variant):
        return {name: median(values) for name, values in samples[variant].items()}

    return BenchmarkResult(
        name="link",
        figures=medians(subject),
        baseline=medians(baseline),
        subject=subject.label,
        baselineName=baseline.label,
        notes=(
            f"medians of {options.rounds} interleaved rounds, both ends in one process; "
            f"bulk: {options.mib:g} MiB in {CHUNK_SIZE}-byte writes; "
            f"round trips: {options.trips} x {PING_SIZE} bytes after {WARMUP_TRIPS} untimed; "
            f"record_cpu: CPU per frame of {SMALL_RECORD} or {CELL_RECORD} bytes in one TLS record, "
            "written and read in memory, against the link layer over Twisted's TLSMemoryBIOProtocol"
        ),
        goals=GOALS,
    )


@inlineCallbacks
def _bulkRound(variant, totalBytes):
    channel = yield variant.openBulk()
    throughput = yield measureThroughput(channel, totalBytes)
    yield channel.close()
    return throughput


@inlineCallbacks
def _echoRound(variant, trips):
    channel = yield variant.openEcho()
    yield measureRoundTrips(channel, WARMUP_TRIPS)
    times = yield measureRoundTrips(channel, trips)
    yield channel.close()
    return median(times) * 1000


# What is measured, the same for both variants


class ByteCounter:
    """
    Counts bytes as they arrive and tells when a count is reached.

    @ivar count: the bytes counted so far.
    """

    def __init__(self):
        self.count = 0
        self._target = None
        self._waiting = None

    def reach(self, target):
        """
        @param target: a byte count; one wait at a time.
        @return: a Deferred that fires once C{count} is at least C{target}, or fails with the
            reason the connection was lost before.
        """
        waiting = Deferred()
        if self.count >= target:
            waiting.callback(self.count)
        else:
            self._target, self._waiting = target, waiting
        return waiting

    def add(self, size):
        """C{size} more bytes arrived."""
        self.count += size
        if self._waiting is not None and self.count >= self._target:
            waiting, self._waiting = self._waiting, None
            waiting.callback(self.count)

    def lost(self, reason):
        """The connection the bytes arrive on is gone; a pending wait fails with C{reason}."""
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.errback(reason)


class Channel:
    """
    The client end of one connection under test, as the measurements see it.

    @ivar send: writes one chunk of bytes: C{ILink.sendFrame} (one DATA frame) or the TLS
        transport's C{write}.
    @ivar flowControl: what a producer registers with: the link, or the TLS transport.
    @ivar received: the L{ByteCounter} that counts what is sent here where it ends up: the
        server's sink for a bulk connection, this end for an echo connection.
    """

    def __init__(self, send, flowControl, received, closeConnection, closed):
        """
        @param closeConnection: closes the client end cleanly.
        @param closed: a Deferred that fires when the client end is gone.
        """
        self.send = send
        self.flowControl = flowControl
        self.received = received
        self._closeConnection = closeConnection
        self._closed = closed

    def close(self):
        """
        Close the client end.

        @return: a Deferred that fires when it is gone.
        """
        self._closeConnection()
        return self._closed


@implementer(IPushProducer)
class BulkProducer:
    """
    Writes a number of bytes on a L{Channel} in L{CHUNK_SIZE} chunks while its transport is
    not paused, then unregisters.
    """

    def __init__(self, channel, totalBytes):
        self._channel = channel
        self._left = totalBytes
        self._paused = False
        self._registered = False

    def start(self):
        """Register with the channel's flow control and start writing."""
        self._channel.flowControl.registerProducer(self, True)
        self._registered = True
        self.resumeProducing()

    def resumeProducing(self):
        self._paused = False
        send = self._channel.send
        while not self._paused and self._left > 0:
            size = min(CHUNK_SIZE, self._left)
            send(CHUNK if size == CHUNK_SIZE else CHUNK[:size])
            self._left -= size
        if self._left == 0 and self._registered:
            self._registered = False
            self._channel.flowControl.unregisterProducer()

    def pauseProducing(self):
        self._paused = True

    def stopProducing(self):
        self._paused = True
        self._left = 0
        self._registered = False


@inlineCallbacks
def measureThroughput(channel, totalBytes):
    """
    Push C{totalBytes} through C{channel} with a L{BulkProducer}, after one untimed chunk.

    @return: a Deferred firing with the payload throughput in MiB/s, from the first write
        until the receiving end has counted every byte.
    """
    received = channel.received
    warmedUp = received.reach(received.count + CHUNK_SIZE)
    channel.send(CHUNK)
    yield warmedUp
    done = received.reach(received.count + totalBytes)
    started = time.perf_counter()
    BulkProducer(channel, totalBytes).start()
    yield done
    return totalBytes / MIB / (time.perf_counter() - started)


def measureRoundTrips(channel, trips):
    """
    Send L{PING_SIZE} bytes on C{channel} and wait until as many have come back, C{trips} times.

    Plain callbacks rather than C{inlineCallbacks}, to keep the harness's share of each trip,
    the same for both variants, small.

    @return: a Deferred firing with the list of round-trip times in seconds.
    """
    received = channel.received
    times = []
    done = Deferred()
    started = 0.0

    def send():
        nonlocal started
        received.reach(received.count + PING_SIZE).addCallbacks(returned, done.errback)
        started = time.perf_counter()
        channel.send(PING)

    def returned(_):
        times.append(time.perf_counter() - started)
        if len(times) < trips:
            send()
        else:
            done.callback(times)

    send()
    return done


# TLS per record


class _RecordSink:
    """The handler of the receiving link of L{recordCost}: counts frames."""

    def __init__(self):
        self.frames = 0

    def frameReceived(self, payload):
        self.frames += 1

    def linkClosed(self, reason):
        pass


def recordCost(tlsProtocol, serverIdentity, clientIdentity, size, frames):
    """
    Send C{frames} DATA frames of C{size} bytes from one link to another, in memory, each in
    one TLS record and one read.

    @param tlsProtocol: the TLS protocol class under both links (L{LinkTLSFactory}'s, or
        Twisted's C{TLSMemoryBIOProtocol}).
    @return: the CPU microseconds per frame, written and read.
    """
    reactor = MemoryReactorClock()
    server = LinkService(serverIdentity, None, BENCH_LIMITS, reactor)
    sink = _RecordSink()
    server.registerPurpose(Purpose.ECHO, lambda link: sink)
    client = LinkService(clientIdentity, None, BENCH_LIMITS, reactor)
    opened = Deferred()
    request = OutboundRequest(Purpose.ECHO, bytes(16), opened)
    factory = type("Factory", (LinkTLSFactory,), {"protocol": tlsProtocol})
    serverFactory = factory(ServerConnectionCreator(makeContext(serverIdentity, server=True)), False, _factory(partial(LinkProtocol, server)))
    clientCreator = ClientConnectionCreator(makeContext(clientIdentity, server=False), serverIdentity.nodeId)
    clientFactory = factory(clientCreator, True, _factory(partial(LinkProtocol, client, request)))
    clientAddress, serverAddress = IPv4Address("TCP", HOST, 40000), IPv4Address("TCP", HOST, 7402)
    _, serverTLS, pump = pumpedTLSPair(serverFactory, clientFactory, serverAddress, clientAddress, reactor)
    pump.flush()
    link = opened.result
    wire = pump.clientIO.stream
    payload = b"\xa5" * size
    started = time.process_time()
    for _ in range(frames):
        link.sendFrame(payload)
        data = b"".join(wire)
        del wire[:]
        serverTLS.dataReceived(data)
    spent = time.process_time() - started
    if sink.frames != frames:
        raise RuntimeError(f"{sink.frames} of {frames} frames arrived")
    link.abort("measured")
    pump.flush()
    return spent / frames * 1e6


# The two variants


class _Variant:
    """
    A server with a bulk sink and an echo, and a client that opens L{Channel}s to it.

    @ivar label: the variant's name in the report.
    @ivar sunk: the L{ByteCounter} of every byte the server's bulk sink received.
    """

    label = None

    def __init__(self, reactor, serverIdentity, clientIdentity):
        self._reactor = reactor
        self._serverIdentity = serverIdentity
        self._clientIdentity = clientIdentity
        self.sunk = ByteCounter()

    def start(self):
        """@return: a Deferred that fires once the server listens."""
        raise NotImplementedError

    def stop(self):
        """@return: a Deferred that fires once the server has stopped listening."""
        raise NotImplementedError

    def openBulk(self):
        """@return: a Deferred firing with a L{Channel} to the server's bulk sink."""
        return self._open(bulk=True, clientReceived=ByteCounter(), received=self.sunk)

    def openEcho(self):
        """@return: a Deferred firing with a L{Channel} to the server's echo."""
        received = ByteCounter()
        return self._open(bulk=False, clientReceived=received, received=received)

    def _open(self, bulk, clientReceived, received):
        """
        Connect to the bulk sink or the echo.

        @param clientReceived: the L{ByteCounter} of what the client end receives.
        @param received: the L{ByteCounter} for the channel's C{received}.
        """
        raise NotImplementedError


class PhantomLink(_Variant):
    """
    The subject: two L{LinkService}s, the client pinning the server's node id. The client's
    service listens too, as every node does; nothing connects to it.
    """

    label = "phantom link"

    def __init__(self, reactor, serverIdentity, clientIdentity):
        super().__init__(reactor, serverIdentity, clientIdentity)
        listen = partial(TCP4ServerEndpoint, reactor, 0, interface=HOST)
        self._server = LinkService(serverIdentity, listen(), BENCH_LIMITS, reactor)
        self._client = LinkService(clientIdentity, listen(), BENCH_LIMITS, reactor)
        self._server.registerPurpose(BULK_PURPOSE, lambda link: _CountingHandler(self.sunk))
        self._server.registerPurpose(Purpose.ECHO, EchoHandler)

    def start(self):
        self._server.startService()
        self._client.startService()
        return succeed(None)

    def stop(self):
        return DeferredList([self._client.stopService(), self._server.stopService()])

    @inlineCallbacks
    def _open(self, bulk, clientReceived, received):
        port = self._server.listeningAddress.port
        purpose = BULK_PURPOSE if bulk else Purpose.ECHO
        link = yield self._client.connect(HOST, port, purpose, nodeId=self._serverIdentity.nodeId)
        handler = _CountingHandler(clientReceived)
        link.attach(handler)
        return Channel(link.sendFrame, link, received, link.close, handler.closed)


class BareTLS(_Variant):
    """The baseline: the link layer's TLS setup carrying raw bytes, one port for each use."""

    label = "bare Twisted TLS"

    def __init__(self, reactor, serverIdentity, clientIdentity):
        super().__init__(reactor, serverIdentity, clientIdentity)
        self._serverContext = makeContext(serverIdentity, server=True)
        self._clientContext = makeContext(clientIdentity, server=False)
        self._sinkPort = self._echoPort = None

    @inlineCallbacks
    def start(self):
        self._sinkPort = yield self._listen(partial(_CountingProtocol, self.sunk))
        self._echoPort = yield self._listen(_EchoProtocol)

    def _listen(self, makeProtocol):
        creator = ServerConnectionCreator(self._serverContext)
        factory = TLSMemoryBIOFactory(creator, False, _factory(makeProtocol), clock=self._reactor)
        return TCP4ServerEndpoint(self._reactor, 0, interface=HOST).listen(factory)

    def stop(self):
        return DeferredList([port.stopListening() for port in (self._sinkPort, self._echoPort) if port is not None])

    @inlineCallbacks
    def _open(self, bulk, clientReceived, received):
        port = (self._sinkPort if bulk else self._echoPort).getHost().port
        creator = ClientConnectionCreator(self._clientContext, self._serverIdentity.nodeId)
        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(self._reactor, HOST, port))
        protocol = yield endpoint.connect(_factory(partial(_CountingProtocol, clientReceived)))
        yield protocol.handshakeDone
        transport = protocol.transport
        return Channel(transport.write, transport, received, transport.loseConnection, protocol.closed)


def _factory(makeProtocol):
    """A quiet protocol factory calling C{makeProtocol()} for each connection."""
    factory = Factory.forProtocol(makeProtocol)
    factory.noisy = False
    return factory


@implementer(ILinkHandler)
class _CountingHandler:
    """Counts the payload bytes of a link's frames; C{closed} fires when the link is gone."""

    def __init__(self, received):
        self._received = received
        self.closed = Deferred()

    def frameReceived(self, payload):
        self._received.add(len(payload))

    def linkClosed(self, reason):
        self._received.lost(reason)
        self.closed.callback(None)


@implementer(IHandshakeListener)
class _CountingProtocol(Protocol):
    """
    Counts the bytes received on a bare TLS connection.

    @ivar handshakeDone: fires when the TLS handshake has completed.
    @ivar closed: fires when the connection is gone.
    """

    def __init__(self, received):
        self._received = received
        self.handshakeDone = Deferred()
        self.closed = Deferred()

    def handshakeCompleted(self):
        self.handshakeDone.callback(None)

    def dataReceived(self, data):
        self._received.add(len(data))

    def connectionLost(self, reason):
        if not self.handshakeDone.called:
            self.handshakeDone.errback(reason)
        self._received.lost(reason)
        self.closed.callback(None)


class _EchoProtocol(Protocol):
    """Writes back every byte received on a bare TLS connection, as it arrives."""

    def dataReceived(self, data):
        self.transport.write(data)
