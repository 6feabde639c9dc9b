"""
Real link services and raw misbehaving clients on loopback, for the link tests; and what every
room's tests share: the one log collector (L{LogCollector}), the one source of loopback
addresses (L{LOOPBACK}), and L{until} for the tests that still poll.
"""

import dataclasses
import ipaddress
import os
import socket

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger, globalLogPublisher, formatEvent
from zope.interface import implementer

from phantom.config import LISTEN_BACKLOG, LinkLimits
from phantom.identity import Identity
from phantom.link.tls import ClientConnectionCreator, ServerConnectionCreator, makeContext
from phantom.link.service import LinkService

FAST_LIMITS = LinkLimits(
    handshakeTimeout=1.0, openTimeout=1.0, idleTimeout=3.0, keepaliveInterval=1.0, connectTimeout=2.0
)


def startLinkService(testCase, address="127.0.0.1", limits=FAST_LIMITS, identity=None, bindAddress=None, clock=None, **changes):
    """
    A started L{LinkService} on C{address}, port chosen by the kernel, stopped on cleanup; its
    links' timers run on C{clock} (a driven one) if given.
    """
    identity = identity or Identity.generate()
    service = LinkService(
        identity,
        TCP4ServerEndpoint(reactor, 0, interface=address, backlog=LISTEN_BACKLOG),
        dataclasses.replace(limits, **changes),
        reactor,
        bindAddress=bindAddress,
        clock=clock,
    )
    service.startService()
    testCase.addCleanup(service.stopService)
    service.identity = identity
    return service


def portOf(service):
    return service.listeningAddress.port


@implementer(IHandshakeListener)
class RawClient(Protocol):
    """
    A client that sends C{payload} (after the TLS handshake, or at once over plain TCP), then
    optionally closes, and records what happens.
    """

    def __init__(self, payload=b"", closeAfter=False):
        self.payload = payload
        self.closeAfter = closeAfter
        self.received = b""
        self.closed = Deferred()
        self.tls = False
        self._awaitedBytes = []

    def connectionMade(self):
        self.localPort = self.transport.getHost().port
        if not self.tls:
            self._send()

    def handshakeCompleted(self):
        self._send()

    def _send(self):
        if self.payload:
            self.transport.write(self.payload)
        if self.closeAfter:
            self.transport.loseConnection()

    def dataReceived(self, data):
        self.received += data
        awaited, self._awaitedBytes = self._awaitedBytes, []
        for wanted, d in awaited:
            self._check(wanted, d)

    def whenReceived(self, wanted):
        """@return: a Deferred that fires once C{wanted} is among the bytes received."""
        d = Deferred()
        self._check(wanted, d)
        return d

    def _check(self, wanted, d):
        if wanted in self.received:
            d.callback(self.received)
        else:
            self._awaitedBytes.append((wanted, d))

    def connectionLost(self, reason):
        self.reason = reason
        self.closed.callback(None)


class NonReader(RawClient):
    """
    A hostile client: sends its payload after the TLS handshake and reads nothing, through a
    small receive window (so the kernel buffers little of what the node sends it).
    """

    def connectionMade(self):
        self.transport.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        super().connectionMade()

    def handshakeCompleted(self):
        self.transport.pauseProducing()
        super().handshakeCompleted()


def unsentBytes(link):
    """What the kernel has not taken yet of a real link's writes: its TCP transport's buffer (a FileDescriptor's)."""
    tcp = link.transport.transport
    return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen


def isReading(link):
    """Whether the reactor reads a real link's TCP connection."""
    return link.transport.transport in reactor.getReaders()


def connectionPairs(serverIdentity, clientIdentity, pin=True):
    """
    @param pin: whether the client pins the server's node id.
    @return: a function of no arguments that makes a server's and a client's TLS connection
        of two nodes' links, with the link layer's contexts (one of each, shared by all the
        pairs) and connection creators, over memory BIOs and not yet handshaken (see
        L{handshakeInMemory}).
    """
    accepting = ServerConnectionCreator(makeContext(serverIdentity, server=True))
    clientContext = makeContext(clientIdentity, server=False)

    def pair():
        server = accepting.serverConnectionForTLS(None)
        server.set_accept_state()
        return server, ClientConnectionCreator(clientContext, serverIdentity.nodeId if pin else None).clientConnectionForTLS(None)

    return pair


def handshakeInMemory(pair):
    """
    Handshake two TLS connections (L{connectionPairs}) by moving their memory BIOs' bytes,
    each reading what comes after its handshake (the server's tickets), as Twisted's TLS does.

    @raise RuntimeError: when the handshake does not finish.
    """
    for _ in range(20):
        for connection in pair:
            try:
                connection.do_handshake()
                connection.recv(65536)
            except SSL.WantReadError:
                pass
        moved = False
        for source, sink in (pair, pair[::-1]):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            sink.bio_write(data)
            moved = True
        if not moved:
            break
    if any(connection.get_peer_finished() is None for connection in pair):
        raise RuntimeError("the TLS handshake did not finish")


def plainClientContext():
    """A TLS 1.3 client context that presents no certificate and accepts any server."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
    return context


def connectRaw(port, client, context=None, host="127.0.0.1", tls=True, fromHost=None):
    """
    Connect C{client} to C{host:port}, over TLS with C{context} (our own identity's client
    context by default) or over plain TCP; from C{fromHost} if given.

    @return: C{client.closed}, which fires when the connection is gone.
    """
    endpoint = TCP4ClientEndpoint(reactor, host, port, bindAddress=(fromHost, 0) if fromHost else None)
    if tls:
        client.tls = True
        context = context or makeContext(Identity.generate(), server=False)
        endpoint = wrapClientTLS(ClientConnectionCreator(context), endpoint)
    connected = endpoint.connect(_QuietFactory(client))
    connected.addErrback(client.closed.errback)
    return client.closed


class _QuietFactory(Factory):
    """Builds one given protocol and logs nothing (C{connectProtocol}'s factory logs its start and stop)."""

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol


class LogCollector:
    """
    The tests' one log observer: collects the formatted events of level info and up logged
    under C{namespace} (every namespace for C{""}) while the test runs.

    @ivar lines: the warnings, formatted, in order (a list the test may clear).
    @ivar events: C{(level name, formatted line)} of every event of level info and up.
    """

    LEVELS = frozenset({"info", "warn", "error", "critical"})

    def __init__(self, testCase, namespace="phantom.link", publisher=globalLogPublisher):
        """
        @param publisher: the log publisher to observe while the test runs, or C{None} for
            none (the collector is then a logger's observer itself).
        """
        self.lines = []
        self.events = []
        self._namespace = namespace
        if publisher is not None:
            publisher.addObserver(self)
            testCase.addCleanup(publisher.removeObserver, self)

    def clear(self):
        """Forget what was collected."""
        del self.lines[:], self.events[:]

    def __call__(self, event):
        level = event.get("log_level")
        if level is None or level.name not in self.LEVELS or not event.get("log_namespace", "").startswith(self._namespace):
            return
        line = formatEvent(event)
        self.events.append((level.name, line))
        if level.name == "warn":
            self.lines.append(line)

    def about(self, port):
        """The warnings naming the peer whose end of the connection is C{port}."""
        return [line for line in self.lines if f":{port} " in line]

    def having(self, *parts, level="warn"):
        """The lines of C{level} that contain every one of C{parts}."""
        return [line for name, line in self.events if name == level and all(part in line for part in parts)]


class CollectingHandler:
    """A link handler that keeps what it receives."""

    def __init__(self, link):
        self.link = link
        self.frames = []
        self.closed = Deferred()
        self.waiting = []

    def frameReceived(self, payload):
        self.frames.append(payload)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(payload)

    def nextFrame(self):
        d = Deferred()
        self.waiting.append(d)
        return d

    def linkClosed(self, reason):
        self.reason = reason
        self.closed.callback(None)


class LoopbackAddresses:
    """
    The one source of the loopback addresses tests bind nodes to: each call of L{fresh}
    hands out an address nobody in this process had before (127.42.0.1 upward, skipping .0
    and .255), so networks of different tests never share an address, whatever order the
    tests run in. On Linux the whole of 127.0.0.0/8 reaches this machine.
    """

    def __init__(self, first="127.42.0.1"):
        self._next = int(ipaddress.IPv4Address(first))
        self._named = {}

    def fresh(self):
        """@return: an address not handed out before, dotted."""
        while self._next & 0xFF in (0, 0xFF):
            self._next += 1
        address = ipaddress.IPv4Address(self._next)
        if address not in LOOPBACK_NETWORK:
            raise RuntimeError("out of loopback addresses")
        self._next += 1
        return str(address)

    def named(self, name):
        """@return: the address handed out for C{name}, one fresh address per name."""
        if name not in self._named:
            self._named[name] = self.fresh()
        return self._named[name]


LOOPBACK_NETWORK = ipaddress.IPv4Network("127.0.0.0/8")


def trialWorker():
    """The index of the trial worker this process is (C{trial --jobs} runs each in C{_trial_temp/N}), or 0."""
    name = os.path.basename(os.getcwd())
    return int(name) if name.isdigit() else 0


LOOPBACK = LoopbackAddresses(f"127.{42 + 16 * trialWorker()}.0.1")
"""The addresses of this process: parallel trial workers draw from ranges of their own."""


def freshLoopbackAddress():
    """A loopback address no other test of this process uses; see L{LoopbackAddresses}."""
    return LOOPBACK.fresh()


def freePort(host="127.0.0.1"):
    """A TCP port nobody listens on at C{host} right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def until(predicate, timeout=10.0, step=0.05):
    """Wait until C{predicate()} is true; fail the test after C{timeout} seconds."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, step, lambda: None)
        waited += step


def secondsWaitedForCpu(path="/proc/self/schedstat"):
    """
    @return: the seconds this process's main thread has spent ready to run but waiting for a
        CPU (Linux's scheduler statistics), or C{None} where the system does not tell.
    """
    try:
        with open(path) as statistics:
            return int(statistics.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class OwnTimeClock(Clock):
    """
    A clock that follows the wall clock less the time this process waited for a CPU: the time
    it would have taken alone on the machine. Deadlines on it (a link's handshake, a DHT RPC, a
    path's round) mean as much work done on a machine loaded by other processes as on an idle
    one, so tests of real nodes in this process do not fail by chance under load; where the
    system does not say how long the process waited, it is the wall clock.

    The reactor brings it up to date every C{tick} seconds, and at once when a call is due.
    """

    log = Logger()

    def __init__(self, reactor=reactor, waited=secondsWaitedForCpu, tick=0.01):
        super().__init__()
        self._reactor = reactor
        self._waited = waited
        self._tick = tick
        self.rightNow = reactor.seconds()
        self._mark = self._now()
        self._loop = LoopingCall(self.catchUp)
        self._loop.clock = reactor
        self._wake = None

    def _now(self):
        return self._reactor.seconds(), self._waited() or 0.0

    def start(self):
        """Follow the wall clock from now on."""
        self._mark = self._now()
        self._loop.start(self._tick, now=False)

    def stop(self):
        """Stop following the wall clock."""
        if self._loop.running:
            self._loop.stop()
        if self._wake is not None and self._wake.active():
            self._wake.cancel()

    def catchUp(self):
        """Advance by the wall clock's time since the last catch-up, less the time waited for a CPU."""
        self._wake = None
        (wall, waited), (lastWall, lastWaited) = self._now(), self._mark
        self._mark = (wall, waited)
        self.advance(max(0.0, (wall - lastWall) - (waited - lastWaited)))

    def callLater(self, delay, callable, *args, **kw):
        call = super().callLater(delay, self._run, callable, args, kw)
        if delay <= 0 and self._loop.running and self._wake is None:
            self._wake = self._reactor.callLater(0, self.catchUp)
        return call

    def _run(self, callable, args, kw):
        # As the reactor does: a call that raises is logged, and the clock goes on.
        try:
            callable(*args, **kw)
        except Exception:
            self.log.failure("a timed call raised")


_ownTimeClocks = {}


def ownTimeClock(testCase):
    """
    The test's one L{OwnTimeClock}, running until the test's cleanup (made on the first call).
    """
    clock = _ownTimeClocks.get(testCase)
    if clock is None:
        clock = _ownTimeClocks[testCase] = OwnTimeClock()
        clock.start()
        testCase.addCleanup(_ownTimeClocks.pop, testCase)
        testCase.addCleanup(clock.stop)
    return clock
