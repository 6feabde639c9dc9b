"""The link layer over real TLS sockets on loopback: authentication, dispatch, limits, bad input."""

import gc
from collections import Counter
import tracemalloc

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.task import Clock
from twisted.logger import Logger
from OpenSSL import SSL
from twisted.trial.unittest import TestCase

from phantom.crypto import nodeIdOfCertificate
from phantom.errors import ConnectedToSelf, LinkFailed, LinkTimeout, PinMismatch
from phantom.link.echo import EchoHandler
from phantom.identity import Identity
from phantom.link.protocol import Hold, LinkProtocol, LinkState
from phantom.link.tls import makeContext
from phantom.wire.link import KEEPALIVE_FRAME, MAX_BODY, MAX_PAYLOAD, Purpose, dataHeader, encodeOpen
from tests.link.helpers import (
    CollectingHandler,
    LogCollector,
    NonReader,
    RawClient,
    connectRaw,
    connectionPairs,
    freshLoopbackAddress,
    handshakeInMemory,
    isReading,
    plainClientContext,
    portOf,
    startLinkService,
    unsentBytes,
    until,
)


async def echoLink(testCase):
    """
    Start a server serving ECHO and a client, and open an ECHO link between them.

    @return: C{(server, client, link, handler)}: the link is the client's, C{handler} its
        L{CollectingHandler}.
    """
    server = startLinkService(testCase)
    server.registerPurpose(Purpose.ECHO, EchoHandler)
    client = startLinkService(testCase)
    link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
    handler = CollectingHandler(link)
    link.attach(handler)
    return server, client, link, handler



async def assertEchoServed(testCase, server):
    """Assert that a well-behaved client from an address of its own has a frame echoed by C{server}."""
    client = startLinkService(testCase, bindAddress=freshLoopbackAddress())
    link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
    handler = CollectingHandler(link)
    link.attach(handler)
    echoed = handler.nextFrame()
    link.sendFrame(b"served")
    testCase.assertEqual(await echoed, b"served")

class AuthenticationTests(TestCase):
    """Both sides learn who the other is; a pinned outbound link reaches only its node."""

    async def test_echoAndIdentities(self):
        """An ECHO link carries frames both ways; each side knows the other's node id."""
        server, client, link, handler = await echoLink(self)
        self.assertEqual(link.nodeId, server.nodeId)
        echoed = handler.nextFrame()
        link.sendFrame(b"hello")
        self.assertEqual(await echoed, b"hello")
        [inbound] = server.links
        self.assertEqual(inbound.nodeId, client.nodeId)
        self.assertEqual((inbound.inbound, inbound.purpose), (True, Purpose.ECHO))

    async def test_framesLeaveAtOnce(self):
        """
        A frame sent on an idle link is in the kernel's hands when C{sendFrame} returns: not
        buffered for the reactor's next turn, the socket not watched for room.
        """
        server, client, link, handler = await echoLink(self)
        echoed = handler.nextFrame()
        link.sendFrame(b"at once")
        self.assertEqual(unsentBytes(link), 0)
        self.assertNotIn(link.transport.transport, reactor.getWriters())
        self.assertEqual(await echoed, b"at once")

    async def test_pinnedLink(self):
        """Pinning the server's real node id works."""
        server = startLinkService(self)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        client = startLinkService(self)
        link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO, nodeId=server.nodeId)
        self.assertEqual(link.nodeId, server.nodeId)

    async def test_wrongPin(self):
        """A wrong pin fails the handshake with an error naming both node ids."""
        server = startLinkService(self)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        client = startLinkService(self)
        wrong = bytes(32)
        with self.assertRaises(PinMismatch) as caught:
            await client.connect("127.0.0.1", portOf(server), Purpose.ECHO, nodeId=wrong)
        self.assertIn(server.nodeId.hex(), str(caught.exception))
        self.assertIn(wrong.hex(), str(caught.exception))
        self.assertEqual(client.links, frozenset())

    def test_noResumption(self):
        """
        A client that offers the session of an earlier link to the same node gets a full
        handshake: each side sees the other's certificate again, so every link checks its pins
        (the server's session tickets, which OpenSSL sends anyway, resume nothing).
        """
        server, client = Identity.generate(), Identity.generate()
        pair = connectionPairs(server, client)
        first = pair()
        handshakeInMemory(first)
        second = pair()
        second[1].set_session(first[1].get_session())
        handshakeInMemory(second)
        self.assertEqual((second[0].presentedNodeId, second[1].presentedNodeId), (client.nodeId, server.nodeId))

    async def test_clientWithoutCertificate(self):
        """A TLS client that presents no certificate is refused and logged."""
        server = startLinkService(self)
        logs = LogCollector(self)
        client = RawClient(encodeOpen(Purpose.ECHO))
        await connectRaw(portOf(server), client, context=plainClientContext())
        self.assertEqual(len(logs.about(client.localPort)), 1)
        self.assertIn("certificate", logs.about(client.localPort)[0])
        self.assertEqual(server.connections, frozenset())

    async def test_connectionRefused(self):
        """Nobody listening: the connect fails with a clear error."""
        client = startLinkService(self)
        with self.assertRaises(LinkFailed) as caught:
            await client.connect("127.0.0.1", 1, Purpose.ECHO)
        self.assertIn("127.0.0.1:1", str(caught.exception))

    async def test_selfConnection(self):
        """A node that reaches itself closes the link."""
        node = startLinkService(self)
        node.registerPurpose(Purpose.ECHO, EchoHandler)
        with self.assertRaises(ConnectedToSelf):
            await node.connect("127.0.0.1", portOf(node), Purpose.ECHO)

    async def test_bindAddress(self):
        """Outbound links leave from the node's own address, which the far side sees."""
        server = startLinkService(self)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        address = freshLoopbackAddress()
        client = startLinkService(self, address=address, bindAddress=address)
        link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
        handler = CollectingHandler(link)
        link.attach(handler)
        echoed = handler.nextFrame()
        link.sendFrame(b"x")
        await echoed
        [inbound] = server.links
        self.assertEqual(inbound.peer.host, address)


class DispatchTests(TestCase):
    """The OPEN frame decides who gets a link."""

    async def test_unknownPurposeClosed(self):
        """A purpose nobody registered closes the link with a log line."""
        server = startLinkService(self)
        logs = LogCollector(self)
        client = RawClient(encodeOpen(Purpose.ECHO))
        await connectRaw(portOf(server), client)
        [line] = logs.about(client.localPort)
        self.assertIn("no handler for ECHO links", line)

    async def test_awaitedLink(self):
        """An awaited link goes to the waiting Deferred, not to the purpose's handler."""
        server = startLinkService(self)
        client = startLinkService(self)
        linkId = b"\x42" * 16
        awaited = server.expectLink(linkId, "127.0.0.1", Purpose.ECHO, timeout=5)
        outbound = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO, linkId=linkId)
        inbound = await awaited
        self.assertEqual((inbound.linkId, inbound.nodeId), (linkId, client.nodeId))
        handler = CollectingHandler(inbound)
        inbound.attach(handler)
        received = handler.nextFrame()
        outbound.sendFrame(b"over the awaited link")
        self.assertEqual(await received, b"over the awaited link")
        self.assertEqual(server.awaitedCount, 0)

    async def test_awaitedFromOtherAddressNotMatched(self):
        """A link with the awaited id from another address does not fulfil the wait."""
        server = startLinkService(self)
        address, awaitedAddress = freshLoopbackAddress(), freshLoopbackAddress()
        client = startLinkService(self, address=address, bindAddress=address)
        linkId = b"\x44" * 16
        awaited = server.expectLink(linkId, awaitedAddress, Purpose.ECHO, timeout=5)
        logs = LogCollector(self)
        link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO, linkId=linkId)
        handler = CollectingHandler(link)
        link.attach(handler)
        await handler.closed
        self.assertNoResult(awaited)
        self.assertEqual(server.awaitedCount, 1)
        awaited.cancel()
        self.failureResultOf(awaited, CancelledError)
        [line] = logs.having(f"from {address}:")
        self.assertIn("no handler for ECHO links", line)

    async def test_awaitedWithWrongPurpose(self):
        """A link with the awaited id but another purpose is closed; the wait goes on."""
        server = startLinkService(self)
        client = startLinkService(self)
        linkId = b"\x45" * 16
        awaited = server.expectLink(linkId, "127.0.0.1", Purpose.ECHO, timeout=5)
        link = await client.connect("127.0.0.1", portOf(server), Purpose.DHT, linkId=linkId)
        handler = CollectingHandler(link)
        link.attach(handler)
        await handler.closed
        self.assertEqual(server.awaitedCount, 1)
        right = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO, linkId=linkId)
        self.assertEqual((await awaited).nodeId, client.nodeId)
        self.assertEqual(right.nodeId, server.nodeId)

    def test_awaitedTwiceRefused(self):
        """The same link id from the same address cannot be awaited twice at once."""
        server = startLinkService(self)
        d = server.expectLink(b"\x01" * 16, "127.0.0.1", Purpose.ECHO, timeout=5)
        self.assertRaises(ValueError, server.expectLink, b"\x01" * 16, "127.0.0.1", Purpose.ECHO, 5)
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(server.awaitedCount, 0)

    def test_awaitedOnTheServiceClock(self):
        """A wait for a link ends at its timeout on the service's clock, like the links' own timers."""
        clock = Clock()
        server = startLinkService(self, clock=clock)
        d = server.expectLink(b"\x01" * 16, "127.0.0.1", Purpose.ECHO, timeout=5)
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertIn("within 5 s", str(self.failureResultOf(d, LinkTimeout).value))
        self.assertEqual(server.awaitedCount, 0)


class LimitTests(TestCase):
    """Timeouts and the frame-rate limit against raw peers (timers to the second: test_protocol)."""

    async def test_silentPeer(self):
        """A peer that connects and says nothing is closed after the handshake timeout."""
        server = startLinkService(self, handshakeTimeout=0.1)
        logs = LogCollector(self)
        client = RawClient()
        await connectRaw(portOf(server), client, tls=False)
        [line] = logs.about(client.localPort)
        self.assertIn("TLS handshake not completed in time", line)

    async def test_noOpenFrame(self):
        """A peer that completes the handshake but sends no OPEN frame is closed."""
        server = startLinkService(self, openTimeout=0.1)
        logs = LogCollector(self)
        client = RawClient()
        await connectRaw(portOf(server), client)
        [line] = logs.about(client.localPort)
        self.assertIn("no OPEN frame in time", line)

    async def test_idlePeer(self):
        """An opened link on which nothing arrives is closed after the idle timeout."""
        server = startLinkService(self, idleTimeout=0.3, keepaliveInterval=0.1)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        logs = LogCollector(self)
        client = RawClient(encodeOpen(Purpose.ECHO))
        await connectRaw(portOf(server), client)
        [line] = logs.about(client.localPort)
        self.assertIn("idle for 0.3 s", line)
        self.assertIn(KEEPALIVE_FRAME, client.received)

    async def test_frameRate(self):
        """A peer sending more frames per second than allowed is closed."""
        server = startLinkService(self, maxFramesPerSecond=20)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        logs = LogCollector(self)
        client = RawClient(encodeOpen(Purpose.ECHO) + KEEPALIVE_FRAME * 50)
        await connectRaw(portOf(server), client)
        [line] = logs.about(client.localPort)
        self.assertIn("more than 20 frames' work in one second", line)


class ConnectionLimitTests(TestCase):
    """
    Caps on inbound connections, in total and per address, over real sockets: a hostile peer
    that fills its share is refused at accept while well-behaved peers still get their links.
    """

    async def silentConnections(self, server, count, fromHost):
        """C{count} plain TCP connections from C{fromHost} that never start TLS: their C{closed}s."""
        closed = []
        for _ in range(count):
            closed.append(connectRaw(portOf(server), RawClient(), tls=False, fromHost=fromHost))
        await until(lambda: len(server.connections) >= min(count, server.limits.maxHandshakesPerAddress))
        return closed

    async def test_perAddressCap(self):
        """
        A peer with more connections than its address may hold without their OPEN frame has the
        extra ones closed at accept, long before any timeout; another peer opens a link, and the
        refusals give one log line, not one each.
        """
        server = startLinkService(self, handshakeTimeout=60, openTimeout=60, maxHandshakesPerAddress=3)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        logs = LogCollector(self)
        hostile = freshLoopbackAddress()
        closed = await self.silentConnections(server, 8, hostile)
        await gatherResults(closed[3:]).addTimeout(5, reactor)
        self.assertEqual(server.inboundCount, (3, 3))
        self.assertEqual([d.called for d in closed[:3]], [False] * 3)
        await assertEchoServed(self, server)
        self.assertEqual(server.inboundCount, (4, 3))
        self.assertEqual(server.refusals.total, 5)
        lines = [line for line in logs.lines if "refused" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("3 inbound connections without their OPEN frame from one address", lines[0])

    async def test_totalCap(self):
        """
        Beyond the total cap, held one each by as many addresses, another address is refused
        (none holds more than it would); once the hostile connections time out (the handshake
        deadline, not reset by anything they send) the slots are free again.
        """
        server = startLinkService(self, handshakeTimeout=0.5, maxInbound=4, maxHandshakesPerAddress=10)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        hostile = []
        for _ in range(4):
            hostile += await self.silentConnections(server, 1, freshLoopbackAddress())
        await until(lambda: server.inboundCount[0] == 4)
        late = RawClient()
        await connectRaw(portOf(server), late, tls=False, fromHost=freshLoopbackAddress()).addTimeout(5, reactor)
        self.assertEqual(server.inboundCount[0], 4)
        await gatherResults(hostile)
        await until(lambda: server.inboundCount == (0, 0))
        client = startLinkService(self, bindAddress=freshLoopbackAddress())
        link = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
        self.assertEqual(link.nodeId, server.nodeId)

    async def test_totalFullHeaviestGivesWay(self):
        """
        A few addresses that hold every inbound slot with open, idle links do not shut the node
        to everyone else (to owners that keep it as an end, it would look gone): the oldest link
        of the address holding the most gives way to an address holding fewer.
        """
        server = startLinkService(self, maxInbound=4, maxInboundPerAddress=4, idleTimeout=60)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        hostile = freshLoopbackAddress()
        clients = [RawClient(encodeOpen(Purpose.ECHO)) for _ in range(4)]
        closed = [connectRaw(portOf(server), client, fromHost=hostile) for client in clients]
        await until(lambda: server.inboundCount == (4, 0))
        await assertEchoServed(self, server)
        self.assertEqual(server.inboundCount, (4, 0))
        self.assertEqual([d.called for d in closed], [True, False, False, False])

    async def test_floodingAddressRefusedAtAccept(self):
        """
        A peer whose link was closed for flooding KEEPALIVE frames and who connects again is
        refused at accept, before any TLS work, for C{floodCooldown} seconds; a well-behaved
        peer is served meanwhile.
        """
        server = startLinkService(self, maxFramesPerSecond=20, floodCooldown=60)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        logs = LogCollector(self)
        hostile = freshLoopbackAddress()
        flooder = RawClient(encodeOpen(Purpose.ECHO) + KEEPALIVE_FRAME * 50)
        await connectRaw(portOf(server), flooder, fromHost=hostile).addTimeout(5, reactor)
        self.assertIn("more than 20 frames' work in one second", logs.about(flooder.localPort)[0])
        again = RawClient(encodeOpen(Purpose.ECHO) + KEEPALIVE_FRAME)
        await connectRaw(portOf(server), again, fromHost=hostile).addTimeout(5, reactor)
        self.assertEqual((again.received, server.refusals.total), (b"", 1))
        self.assertIn("flooded a link", [line for line in logs.lines if "refused" in line][0])
        await assertEchoServed(self, server)

    async def test_tricklingDoesNotExtendTheHandshake(self):
        """A peer that sends a byte of a TLS hello now and then is closed at the handshake deadline all the same."""
        server = startLinkService(self, handshakeTimeout=0.4)
        logs = LogCollector(self)
        client = RawClient()
        closed = connectRaw(portOf(server), client, tls=False)
        await until(lambda: server.connections)
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)
        sent = 0
        while not closed.called and sent < len(hello):
            client.transport.write(hello[sent : sent + 1])
            sent += 1
            await deferLater(reactor, 0.05, lambda: None)
        await closed.addTimeout(5, reactor)
        self.assertLess(sent, 20)
        [line] = logs.about(client.localPort)
        self.assertIn("TLS handshake not completed in time", line)


def badConnections(port):
    """
    One connection of each kind of bad input the link layer must shrug off.

    @return: a list of (description, RawClient, closed Deferred).
    """
    oversized = (MAX_BODY + 1).to_bytes(4, "big") + b"\x02"
    badPurpose = bytearray(encodeOpen(Purpose.ECHO))
    badPurpose[5] = 0xEE
    kinds = [
        ("plaintext", dict(payload=b"GET / HTTP/1.0\r\n\r\n", closeAfter=False), dict(tls=False)),
        ("no certificate", dict(payload=encodeOpen(Purpose.ECHO)), dict(context=plainClientContext())),
        ("oversized frame", dict(payload=encodeOpen(Purpose.ECHO) + oversized), {}),
        ("truncated frame", dict(payload=encodeOpen(Purpose.ECHO) + dataHeader(100) + b"x" * 10, closeAfter=True), {}),
        ("DATA first", dict(payload=dataHeader(1) + b"x"), {}),
        ("unknown purpose", dict(payload=bytes(badPurpose)), {}),
        ("silent", dict(), dict(tls=False)),
        ("silent after handshake", dict(), {}),
    ]
    connections = []
    for description, clientArgs, connectArgs in kinds:
        client = RawClient(**clientArgs)
        connections.append((description, client, connectRaw(port, client, **connectArgs)))
    return connections


SILENT = {"silent": LinkState.HANDSHAKING, "silent after handshake": LinkState.AWAITING_OPEN}
"""The bad connections that say nothing more, and the state the server's end waits in for its deadline."""


class BadInputTests(TestCase):
    """Bad input closes only the connection it came on, with one log line, and leaks nothing."""

    async def burst(self, server, good, clock, count, logs):
        """
        Make C{count} bad connections at once, wait until all are closed, check each got
        exactly one log line, and keep no reference to them. C{good} is the server's end of
        the link that is to stay.

        The server's deadlines run on C{clock}, a driven one: the silent connections are closed
        by their handshake or OPEN deadline once every one of them waits on it, not by how fast
        the machine is (a loaded machine takes seconds over the burst).

        @return: the kinds of bad input sent.
        """
        connections = []
        while len(connections) < count:
            connections += badConnections(portOf(server))
        connections = connections[:count]
        waiting = Counter(SILENT[description] for description, _, _ in connections if description in SILENT)
        await gatherResults([closed for description, _, closed in connections if description not in SILENT])

        def pending():
            return Counter(connection.state for connection in server.connections - server.links)

        # The others' server ends may still be closing; the silent ones reach what they wait in.
        await until(lambda: pending() == waiting, timeout=120.0)
        clock.advance(max(server.limits.handshakeTimeout, server.limits.openTimeout))
        self.assertEqual(pending(), Counter({LinkState.CLOSING: sum(waiting.values())}))
        await gatherResults([closed for _, _, closed in connections])
        # The server's ends log as they go; await those not gone yet (one may still count as a link).
        await gatherResults([connection.ending.whenEnded() for connection in server.connections - {good}])
        for description, client, _ in connections:
            lines = logs.about(client.localPort)
            self.assertEqual(len(lines), 1, f"{description}: {lines}")
        logs.clear()
        return {description for description, _, _ in connections}

    async def test_burstLeavesGoodLinksAlone(self):
        """
        200 bad connections in a burst: each is closed with exactly one log line naming the
        peer, a link opened before still works, a new one can be opened, and memory stays put
        (a leak of 2.5 KiB per connection would show; one TLS connection's state is far larger).

        Both services' timers run on a driven clock: a loaded machine can take longer over the
        burst than any idle timeout, and the good link is to be closed by nothing that happens.

        The links log to the test's collector alone while memory is measured: where logging
        has not begun (a trial worker, another runner), Twisted keeps every global log event
        until it does, and that is no memory of the link layer's.
        """
        clock = Clock()
        # The burst comes from one address: the caps on connections are not what is tested here.
        quiet = dict(clock=clock, idleTimeout=600.0, keepaliveInterval=200.0)
        server = startLinkService(self, maxHandshakes=400, maxHandshakesPerAddress=400, **quiet)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        client = startLinkService(self, **quiet)
        before = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
        await until(lambda: server.links)
        [good] = server.links
        handler = CollectingHandler(before)
        before.attach(handler)
        logs = LogCollector(self, publisher=None)
        self.patch(LinkProtocol, "log", Logger(namespace="phantom.link.protocol.LinkProtocol", observer=logs))

        await self.burst(server, good, clock, 40, logs)  # warm-up: caches, imports, allocator pools
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        baseline, _ = tracemalloc.get_traced_memory()
        kinds = await self.burst(server, good, clock, 200, logs)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()

        self.assertEqual(len(kinds), 8)
        self.assertLess(grown, 512 * 1024, f"memory grew by {grown} bytes")
        self.assertEqual(server.connections, frozenset(server.links))
        self.assertEqual(len(server.links), 1)

        echoed = handler.nextFrame()
        before.sendFrame(b"still here")
        self.assertEqual(await echoed, b"still here")
        after = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
        self.assertEqual(after.nodeId, server.nodeId)

    async def test_wrongKeyType(self):
        """A certificate whose key is not Ed25519 is refused during the handshake."""
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        from phantom.crypto import selfSignedCertificate
        from phantom.identity import Identity
        from phantom.link.tls import makeContext

        server = startLinkService(self)
        logs = LogCollector(self)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _ecCertificate(key)
        identity = Identity(key, certificate, Identity.generate().pathBuildingKey)
        client = RawClient(encodeOpen(Purpose.ECHO))
        await connectRaw(portOf(server), client, context=makeContext(identity, server=False))
        [line] = logs.about(client.localPort)
        self.assertIn("Ed25519", line)
        # The key type is the reason: the certificate pins a node id as well as any...
        self.assertEqual(len(nodeIdOfCertificate(certificate)), 32)
        self.assertEqual(server.connections, frozenset())
        # ...and a certificate made the way nodes make theirs, for an Ed25519 key, is accepted.
        key = ed25519.Ed25519PrivateKey.generate()
        nodeLike = Identity(key, selfSignedCertificate(key), identity.pathBuildingKey)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        link = await startLinkService(self, identity=nodeLike).connect("127.0.0.1", portOf(server), Purpose.ECHO)
        self.assertEqual(link.nodeId, server.nodeId)
        handler = CollectingHandler(link)
        link.attach(handler)
        echoed = handler.nextFrame()
        link.sendFrame(b"accepted")
        self.assertEqual(await echoed, b"accepted")
        [inbound] = server.links
        self.assertEqual(inbound.nodeId, nodeIdOfCertificate(nodeLike.certificate))


def _ecCertificate(key):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not a phantom node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class BackpressureTests(TestCase):
    """A peer that sends and never reads cannot make the node buffer without bound."""

    async def test_echoFloodReadNothing(self):
        """
        16 MiB of ECHO frames from a peer that reads nothing: the node holds at most its bound for
        that link and stops reading it, another client is answered meanwhile, and the link is
        closed at the drain timeout of a driven clock.
        """
        clock = Clock()
        server = startLinkService(self, clock=clock, idleTimeout=600.0, keepaliveInterval=200.0)
        server.registerPurpose(Purpose.ECHO, EchoHandler)
        logs = LogCollector(self)
        frame = dataHeader(MAX_PAYLOAD) + b"x" * MAX_PAYLOAD
        hostile = NonReader(encodeOpen(Purpose.ECHO) + frame * (16 * 2**20 // len(frame)))
        closed = connectRaw(portOf(server), hostile)

        # Held for its writes, not for a turn (a link yields the reactor after each slice it reads).
        await until(lambda: any(not isReading(link) and Hold.WRITES in link.holds for link in server.links))
        [link] = server.links
        bound = server.limits.maxWriteBuffer + len(frame) + 4096  # one more frame, in TLS records
        self.assertLessEqual(unsentBytes(link), bound)

        client = startLinkService(self)
        good = await client.connect("127.0.0.1", portOf(server), Purpose.ECHO)
        handler = CollectingHandler(good)
        good.attach(handler)
        echoed = handler.nextFrame()
        good.sendFrame(b"still answered")
        self.assertEqual(await echoed, b"still answered")
        self.assertLessEqual(unsentBytes(link), bound)
        self.assertTrue(link.opened)

        clock.advance(server.limits.drainTimeout - 1)
        self.assertTrue(link.opened)
        clock.advance(1)
        # The kernel may take more of the buffer meanwhile (its send buffer grows): the buffer is
        # then full again soon after, and its drain timeout starts again from there.
        for _ in range(10 * int(server.limits.drainTimeout)):
            if closed.called:
                break
            await deferLater(reactor, 0.001, lambda: None)
            clock.advance(1)
        await closed
        [line] = logs.about(hostile.localPort)
        self.assertIn(f"read nothing for {server.limits.drainTimeout:g} s", line)
        self.assertTrue(good.opened)


class TLSMemoryTests(TestCase):
    """What OpenSSL holds for an idle link, and after a burst (docs/scale.md, what a unit of work costs)."""

    def test_idleBuffersReleased(self):
        """Both sides' contexts let OpenSSL free a connection's record buffers while it is idle."""
        identity = Identity.generate()
        for server in (True, False):
            # set_mode(0) adds nothing and answers the mode set.
            self.assertTrue(makeContext(identity, server=server).set_mode(0) & SSL.MODE_RELEASE_BUFFERS, server)

    async def test_burstCarried(self):
        """A burst of large frames, read from the socket many KiB at a time, arrives whole and in order."""
        server, client, link, handler = await echoLink(self)
        frames = [bytes([number]) * (MAX_PAYLOAD // 2) for number in range(12)]
        for frame in frames:
            link.sendFrame(frame)
        await until(lambda: len(handler.frames) == len(frames))
        self.assertEqual(handler.frames, frames)
