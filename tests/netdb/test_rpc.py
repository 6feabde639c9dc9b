"""
DHT RPCs over links: multiplexing, timeouts, broken peers. In memory on a driven clock, and
over real TLS links on loopback for multiplexing and malformed input.
"""

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.address import Contact
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb.rpc import MAX_ANSWERING, MAX_ANSWERING_PER_PEER, Answering, Deadlines, DhtLinks, RpcChannel, RpcFailed
from phantom.wire.dht import MAX_VALUE, Rpc, RpcKind, Table, encodeRpc
from phantom.wire.link import Purpose, dataHeader, encodeOpen
from tests.link.helpers import (
    LogCollector,
    NonReader,
    connectRaw,
    freshLoopbackAddress,
    isReading,
    portOf,
    startLinkService,
    unsentBytes,
    until,
)


class Responder:
    """Answers FIND_NODE with one contact whose id is the target; PING with PONG; SAMPLE never."""

    def __init__(self):
        self.senders = []

    def respond(self, sender, kind, content):
        self.senders.append(sender)
        if kind == RpcKind.PING:
            return RpcKind.PONG, None
        if kind == RpcKind.FIND_NODE:
            return RpcKind.NODES, {"contacts": [{"node_id": content.target, "address": b"\x00" * 16, "port": 1}]}
        if kind == RpcKind.STORE:
            raise RuntimeError("this responder cannot store")
        if kind == RpcKind.FIND_VALUE:
            return RpcKind.STORED, {"accepted": 1}  # the wrong kind of reply
        return Deferred()  # SAMPLE: never answered


def contactOf(links):
    return Contact(*links.address, links.nodeId)


class MemoryRpcTests(SynchronousTestCase):
    """Requests and replies between nodes of an in-memory network."""

    def setUp(self):
        self.network = MemoryNetwork(HeapClock())

    def startDht(self, timeout=5.0):
        links = self.network.linkService()
        responder = Responder()
        return links, responder, DhtLinks(links, responder, self.network.clock, timeout=timeout)

    def drive(self, deferred):
        return self.network.run(deferred)

    def test_manyInFlight(self):
        """100 requests in flight on one link each get their own reply; one link is used."""
        serverLinks, responder, _ = self.startDht()
        clientLinks, _, client = self.startDht()
        targets = [bytes([i]) * 32 for i in range(100)]
        replies = self.drive(
            gatherResults([client.call(contactOf(serverLinks), RpcKind.FIND_NODE, {"port": 4242, "target": t}) for t in targets])
        )
        self.assertEqual([content.contacts[0].node_id for _, content in replies], targets)
        self.assertEqual(len(clientLinks.links), 1)
        self.assertEqual(responder.senders[0], Contact(clientLinks.address[0], 4242, clientLinks.nodeId))

    def test_bothDirections(self):
        """The node that accepted a DHT link sends its own requests over it."""
        serverLinks, _, server = self.startDht()
        clientLinks, _, client = self.startDht()
        self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": clientLinks.address[1]}))
        kind, _ = self.drive(server.call(contactOf(clientLinks), RpcKind.PING, {"port": serverLinks.address[1]}))
        self.assertEqual(kind, RpcKind.PONG)
        self.assertEqual(len(serverLinks.links), 1)

    def test_timeout(self):
        """A request without a reply fails after the timeout, not before; the link stays usable."""
        serverLinks, _, _ = self.startDht()
        _, _, client = self.startDht(timeout=0.3)
        failures = []
        client.call(contactOf(serverLinks), RpcKind.SAMPLE, {"port": 0}).addErrback(failures.append)
        self.network.runFor(0.29)
        self.assertEqual(failures, [])
        self.network.runFor(0.01)
        self.assertTrue(failures[0].check(RpcFailed))
        kind, _ = self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        self.assertEqual(kind, RpcKind.PONG)

    def test_eachRequestItsOwnDeadline(self):
        """
        Requests sent at different times each fail at their own deadline, a reply in between
        changes none, and the channel keeps one timer for all of them, not one per request.
        """
        serverLinks, _, _ = self.startDht()
        _, _, client = self.startDht(timeout=0.3)
        self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        timers = len(self.network.clock.getDelayedCalls())
        failed = []
        for index in range(3):
            d = client.call(contactOf(serverLinks), RpcKind.SAMPLE, {"port": 0})
            d.addErrback(lambda failure, index=index: failed.append((index, self.network.clock.seconds())))
            self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
            self.assertLessEqual(len(self.network.clock.getDelayedCalls()), timers + 1)
            self.network.runFor(0.1)
        start = self.network.clock.seconds() - 0.3
        self.network.runFor(0.3)
        self.assertEqual([index for index, _ in failed], [0, 1, 2])
        sentAt = [start + 0.1 * index for index in range(3)]
        for (_, when), sent in zip(failed, sentAt):
            self.assertAlmostEqual(when - sent, 0.3, delta=0.011)

    def test_oneTimerForAllChannels(self):
        """
        The requests a node has in flight on many links share one timer, due at the oldest
        one's deadline; each still fails at its own deadline.
        """
        servers = [self.startDht()[0] for _ in range(3)]
        _, _, client = self.startDht(timeout=0.3)
        for server in servers:
            self.drive(client.call(contactOf(server), RpcKind.PING, {"port": 0}))
        self.network.runFor(0.3)  # the pings' deadlines pass: no timer left
        clock = self.network.clock
        timers = len(clock.getDelayedCalls())
        failed = []
        for index, server in enumerate(servers):
            d = client.call(contactOf(server), RpcKind.SAMPLE, {"port": 0})
            d.addErrback(lambda failure, index=index: failed.append((index, clock.seconds())))
            self.network.runFor(0.05)
        self.assertEqual(len(clock.getDelayedCalls()), timers + 1)
        start = clock.seconds() - 0.15
        self.network.runFor(0.3)
        self.assertEqual([index for index, _ in failed], [0, 1, 2])
        for index, when in failed:
            self.assertAlmostEqual(when - (start + 0.05 * index), 0.3, delta=0.011)
        self.assertEqual(len(clock.getDelayedCalls()), timers)

    def test_wrongReplyKind(self):
        """A reply of the wrong kind fails the request and closes the link."""
        serverLinks, _, _ = self.startDht()
        clientLinks, _, client = self.startDht()
        with self.assertRaises(RpcFailed):
            self.drive(client.call(contactOf(serverLinks), RpcKind.FIND_VALUE, {"port": 0, "table": "VALUE", "key": b"k" * 32}))
        self.network.settle()
        self.assertEqual(clientLinks.links, set())

    def test_responderFails(self):
        """A request the responder cannot answer closes the link and fails pending requests."""
        serverLinks, _, _ = self.startDht()
        _, _, client = self.startDht()
        logs = LogCollector(self, "phantom.netdb")
        store = {"port": 0, "table": "VALUE", "key": b"k" * 32, "ttl": 1, "value": b"v"}
        pending = client.call(contactOf(serverLinks), RpcKind.SAMPLE, {"port": 0})
        with self.assertRaises(RpcFailed):
            self.drive(client.call(contactOf(serverLinks), RpcKind.STORE, store))
        self.assertTrue(self.failureResultOf(pending).check(RpcFailed))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(logs.having("answering STORE", level="critical"))

    def test_unreachable(self):
        """A contact nobody answers for fails the request with RpcFailed, now and next time."""
        _, _, client = self.startDht()
        for attempt in range(2):
            with self.assertRaises(RpcFailed):
                self.drive(client.call(Contact("10.9.9.9", 1, b"x" * 32), RpcKind.PING, {"port": 0}))

    def test_idleClosed(self):
        """Links idle for the idle time are closed by closeIdle; busy ones are kept."""
        serverLinks, _, _ = self.startDht()
        clientLinks, _, client = self.startDht()
        self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        client.closeIdle()
        self.network.settle()
        self.assertEqual(len(clientLinks.links), 1)
        client.idleClose = 0
        client.closeIdle()
        self.network.settle()
        self.assertEqual((clientLinks.links, serverLinks.links), (set(), set()))

    def test_requestRightAfterIdleClose(self):
        """A request made in the same turn as closeIdle goes over a fresh link."""
        serverLinks, _, _ = self.startDht()
        clientLinks, _, client = self.startDht()
        self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        client.idleClose = 0
        client.closeIdle()
        kind, _ = self.drive(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        self.assertEqual(kind, RpcKind.PONG)


class BigValues(Responder):
    """Answers FIND_VALUE with the largest value there can be."""

    def respond(self, sender, kind, content):
        if kind == RpcKind.FIND_VALUE:
            return RpcKind.VALUE, {"value": b"v" * MAX_VALUE}
        return super().respond(sender, kind, content)


def startDht(testCase, timeout=5.0, responder=None, **changes):
    address = freshLoopbackAddress()
    links = startLinkService(testCase, address=address, bindAddress=address, **changes)
    responder = responder or Responder()
    dht = DhtLinks(links, responder, reactor, timeout=timeout)
    return links, responder, dht


def realContactOf(links):
    return Contact(links.listeningAddress.host, portOf(links), links.nodeId)


class RealRpcTests(TestCase):
    """Over real TLS links on loopback."""

    async def test_manyInFlight(self):
        """100 requests in flight on one real link each get their own reply; one link is used."""
        serverLinks, responder, _ = startDht(self)
        clientLinks, _, client = startDht(self)
        targets = [bytes([i]) * 32 for i in range(100)]
        replies = await gatherResults(
            [client.call(realContactOf(serverLinks), RpcKind.FIND_NODE, {"port": 4242, "target": t}) for t in targets]
        )
        self.assertEqual([content.contacts[0].node_id for _, content in replies], targets)
        self.assertEqual(len(clientLinks.links), 1)
        self.assertEqual(responder.senders[0], Contact(clientLinks.listeningAddress.host, 4242, clientLinks.nodeId))

    async def test_malformedMessage(self):
        """A malformed RPC closes its link with a log line; other links are untouched."""
        serverLinks, _, _ = startDht(self)
        _, _, good = startDht(self)
        badLinks, _, bad = startDht(self)
        logs = LogCollector(self)
        channel = await bad.channelTo(realContactOf(serverLinks))
        channel.link.sendFrame(Rpc.build({"kind": "PING", "request_id": b"r" * 8, "content": {"port": 1}}) + b"junk")
        await channel.link.ending.whenEnded()
        [line] = logs.having(badLinks.listeningAddress.host, "malformed DHT message")
        kind, _ = await good.call(realContactOf(serverLinks), RpcKind.PING, {"port": 0})
        self.assertEqual(kind, RpcKind.PONG)

    async def test_findValueFloodReadNothing(self):
        """
        5,000 FIND_VALUE for a 65,495-byte value from a peer that reads no reply: the node holds at
        most its write bound for that link and stops reading it, another node's requests are
        answered meanwhile, and the link is closed at the drain timeout of a driven clock.
        """
        clock = Clock()
        serverLinks, _, _ = startDht(self, responder=BigValues(), clock=clock, idleTimeout=600.0, keepaliveInterval=200.0)
        _, _, good = startDht(self)
        logs = LogCollector(self)
        request = encodeRpc(RpcKind.FIND_VALUE, b"r" * 8, {"port": 1, "table": Table.NODE, "key": b"k" * 32})
        hostile = NonReader(encodeOpen(Purpose.DHT) + (dataHeader(len(request)) + request) * 5000)
        closed = connectRaw(portOf(serverLinks), hostile, host=serverLinks.listeningAddress.host)

        await until(lambda: any(not isReading(link) for link in serverLinks.links))
        [link] = serverLinks.links
        bound = serverLinks.limits.maxWriteBuffer + MAX_VALUE + 4096  # one more reply, in TLS records
        self.assertLessEqual(unsentBytes(link), bound)
        kind, _ = await good.call(realContactOf(serverLinks), RpcKind.PING, {"port": 0})
        self.assertEqual(kind, RpcKind.PONG)
        self.assertLessEqual(unsentBytes(link), bound)

        clock.advance(serverLinks.limits.drainTimeout)
        await link.ending.whenEnded()
        hostile.transport.abortConnection()  # it reads nothing, so it would never learn of the close
        await closed
        [line] = logs.about(hostile.localPort)
        self.assertIn(f"read nothing for {serverLinks.limits.drainTimeout:g} s", line)


class PipeliningTests(SynchronousTestCase):
    """
    A peer that pipelines requests whose answers take time gets MAX_ANSWERING worked on at once
    on one link, and MAX_ANSWERING_PER_PEER over all its links; the node's total is shared.
    """

    class SlowResponder:
        def __init__(self):
            self.waiting = []

        def respond(self, sender, kind, content):
            answer = Deferred()
            self.waiting.append((sender.nodeId, answer))
            return answer

        def answerAll(self, nodeId):
            for sender, answer in list(self.waiting):
                if sender == nodeId and not answer.called:
                    answer.callback((RpcKind.PONG, None))

    class FakeLink:
        def __init__(self, nodeId=b"n" * 32, host="192.0.2.1"):
            self.peer = IPv4Address("TCP", host, 40000)
            self.nodeId = nodeId
            self.sent, self.calls = [], []
            self.aborted = None

        def sendFrame(self, payload):
            self.sent.append(payload)

        def pauseProducing(self):
            self.calls.append("pause")

        def resumeProducing(self):
            self.calls.append("resume")

        def abort(self, reason):
            self.aborted = reason

    @staticmethod
    def ping(channel, count, first=0):
        for n in range(first, first + count):
            channel.frameReceived(encodeRpc(RpcKind.PING, n.to_bytes(8, "big"), {"port": 0}))

    def test_pausedAtTheBound(self):
        """
        The link stops being read at the request beyond MAX_ANSWERING awaiting answers, that
        request held; it is answered, and the link read on, as answers go out.
        """
        responder, link = self.SlowResponder(), self.FakeLink()
        channel = RpcChannel(link, responder, Clock(), 5.0, lambda channel: None)
        self.ping(channel, MAX_ANSWERING + 1)
        self.assertEqual((channel.answeringCount, len(responder.waiting), link.calls), (MAX_ANSWERING, MAX_ANSWERING, ["pause"]))
        responder.waiting[0][1].callback((RpcKind.PONG, None))
        self.assertEqual((channel.answeringCount, len(responder.waiting), link.calls), (MAX_ANSWERING, MAX_ANSWERING + 1, ["pause", "resume"]))
        self.assertEqual(len(link.sent), 1)
        responder.answerAll(link.nodeId)
        self.assertEqual((channel.answeringCount, link.calls, len(link.sent)), (0, ["pause", "resume"], MAX_ANSWERING + 1))

    def test_peerBoundOverItsLinks(self):
        """
        A hostile peer pipelining requests over three links (one node id) gets
        MAX_ANSWERING_PER_PEER worked on in all, its other links paused with requests held;
        a well-behaved peer meanwhile is answered; as the hostile peer's answers go out its
        held requests are taken in turn.
        """
        responder, answering = self.SlowResponder(), Answering()
        hostile = [self.FakeLink(b"h" * 32, f"192.0.2.{n}") for n in (1, 2, 3)]
        channels = [RpcChannel(link, responder, Clock(), 5.0, lambda channel: None, answering=answering) for link in hostile]
        for channel in channels:
            self.ping(channel, MAX_ANSWERING_PER_PEER)
        self.assertEqual(answering.held(peer=b"h" * 32), MAX_ANSWERING_PER_PEER)
        self.assertEqual(len(responder.waiting), MAX_ANSWERING_PER_PEER)
        self.assertEqual([link.calls for link in hostile], [[], ["pause"], ["pause"]])
        good = self.FakeLink(b"g" * 32, "198.51.100.7")
        channel = RpcChannel(good, responder, Clock(), 5.0, lambda channel: None, answering=answering)
        self.ping(channel, 1)
        responder.answerAll(b"g" * 32)
        self.assertEqual((len(good.sent), good.calls), (1, []))
        responder.answerAll(b"h" * 32)
        self.assertEqual(answering.held(peer=b"h" * 32), MAX_ANSWERING_PER_PEER)
        responder.answerAll(b"h" * 32)
        self.assertEqual(sum(len(link.sent) for link in hostile), 2 * MAX_ANSWERING_PER_PEER)

    def test_totalFullHeaviestGivesWay(self):
        """
        With every answer of the node's total under way for hostile peers, a well-behaved
        peer's request drops the oldest answer of the peer holding the most (its requester
        times out; no reply, nothing logged, its link left open) and is answered.
        """
        responder, answering = self.SlowResponder(), Answering(perLink=64, perPeer=64, total=100)
        hostile = [self.FakeLink(bytes([n]) * 32) for n in (1, 2)]
        channels = [RpcChannel(link, responder, Clock(), 5.0, lambda channel: None, answering=answering) for link in hostile]
        self.ping(channels[0], 60)
        self.ping(channels[1], 40)
        self.assertEqual(len(answering), 100)
        good = self.FakeLink(b"g" * 32)
        self.ping(RpcChannel(good, responder, Clock(), 5.0, lambda channel: None, answering=answering), 1)
        self.assertEqual((answering.held(peer=bytes([1]) * 32), answering.held(peer=b"g" * 32)), (59, 1))
        self.assertTrue(responder.waiting[0][1].called)
        responder.answerAll(b"g" * 32)
        self.assertEqual(len(good.sent), 1)
        responder.answerAll(bytes([1]) * 32)
        self.assertEqual((len(hostile[0].sent), hostile[0].aborted), (59, None))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_closedLinkGivesItsAnswersBack(self):
        """A link that closes with answers under way and a request held frees its peer's share."""
        responder, answering = self.SlowResponder(), Answering()
        link = self.FakeLink()
        channel = RpcChannel(link, responder, Clock(), 5.0, lambda channel: None, answering=answering)
        self.ping(channel, MAX_ANSWERING + 3)
        channel.linkClosed(None)
        self.assertEqual((len(answering), answering.held(peer=link.nodeId)), (0, 0))
        again = RpcChannel(self.FakeLink(), responder, Clock(), 5.0, lambda channel: None, answering=answering)
        self.ping(again, 1)
        self.assertEqual(answering.held(peer=link.nodeId), 1)


class SharedAnsweringTests(SynchronousTestCase):
    """The DHT links of one node share one bound per peer, on the in-memory network."""

    def test_hostilePeerOverSeveralLinks(self):
        """
        A hostile peer opening three DHT links and pipelining 100 never-answered requests on
        each gets MAX_ANSWERING_PER_PEER worked on in all; a well-behaved client is answered.
        """
        network = MemoryNetwork(HeapClock())
        serverLinks = network.linkService()
        responder = Responder()
        server = DhtLinks(serverLinks, responder, network.clock)
        hostileLinks = network.linkService()
        for _ in range(3):
            link = network.run(hostileLinks.connect(*serverLinks.address, Purpose.DHT))
            for n in range(100):
                link.sendFrame(encodeRpc(RpcKind.SAMPLE, n.to_bytes(8, "big"), {"port": 0}))
        network.settle()
        self.assertEqual(server.answering.held(peer=hostileLinks.nodeId), MAX_ANSWERING_PER_PEER)
        self.assertEqual(len(responder.senders), MAX_ANSWERING_PER_PEER)
        clientLinks = network.linkService()
        client = DhtLinks(clientLinks, Responder(), network.clock)
        kind, _ = network.run(client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0}))
        self.assertEqual(kind, RpcKind.PONG)


class Waits:
    """The owner of some waits on L{Deadlines}: C{expired} lists the keys that expired, with when."""

    def __init__(self, clock, deadlines=None):
        self.clock = clock
        self.waiting = set()
        self.expired = []
        self.deadlines = deadlines

    def start(self, key):
        self.waiting.add(key)
        self.deadlines.add(self, key)

    def awaits(self, key):
        return key in self.waiting

    def expire(self, key):
        self.waiting.remove(key)
        self.expired.append((key, self.clock.seconds()))


class DeadlinesTests(SynchronousTestCase):
    """Many waits of one length on one timer."""

    def setUp(self):
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock, 5.0)
        self.waits = Waits(self.clock, self.deadlines)

    def test_eachAtItsDeadline(self):
        """Each wait expires at its own deadline, in order, on one timer; none is left after."""
        for key in range(3):
            self.waits.start(key)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.clock.advance(1)
        self.clock.pump([1] * 5)
        self.assertEqual(self.waits.expired, [(0, 5.0), (1, 6.0), (2, 7.0)])
        self.assertEqual((self.clock.getDelayedCalls(), len(self.deadlines)), ([], 0))

    def test_overWaitsSkipped(self):
        """A wait that ended (its reply came) is not expired, and the timer moves on to the next one still under way."""
        for key in range(3):
            self.waits.start(key)
            self.clock.advance(1)
        self.waits.waiting -= {0, 1}
        self.clock.advance(3)
        self.assertEqual(self.waits.expired, [])
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [7.0])
        self.clock.advance(1)
        self.assertEqual(self.waits.expired, [(2, 7.0)])

    def test_nothingWaitedNoTimer(self):
        """Once the timer finds no wait under way it is not set again, until a new wait starts."""
        self.waits.start("a")
        self.waits.waiting.clear()
        self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.waits.start("b")
        self.clock.advance(5)
        self.assertEqual(self.waits.expired, [("b", 10.0)])

    def test_waitStartedWhileExpiring(self):
        """A wait started by an expiry gets its own deadline, and an earlier one still comes first."""
        waits = self.waits

        class Again(Waits):
            def expire(self, key):
                super().expire(key)
                waits.start("again")

        again = Again(self.clock, self.deadlines)
        again.start("first")
        self.clock.advance(1)
        waits.start("second")
        self.clock.advance(4)
        self.assertEqual(again.expired, [("first", 5.0)])
        self.assertEqual(sorted(call.getTime() for call in self.clock.getDelayedCalls()), [6.0])
        self.clock.advance(1)
        self.clock.advance(4)
        self.assertEqual(waits.expired, [("second", 6.0), ("again", 10.0)])

    def test_prune(self):
        """prune drops the waits that ended at the front and stops the timer when none is left."""
        self.waits.start("a")
        self.waits.start("b")
        self.waits.waiting.discard("a")
        self.deadlines.prune()
        self.assertEqual((len(self.deadlines), len(self.clock.getDelayedCalls())), (1, 1))
        self.waits.waiting.discard("b")
        self.deadlines.prune()
        self.assertEqual((len(self.deadlines), self.clock.getDelayedCalls()), (0, []))

    def test_expireAll(self):
        """expireAll ends every wait under way at once and stops the timer."""
        for key in range(3):
            self.waits.start(key)
        self.waits.waiting.discard(1)
        self.deadlines.expireAll()
        self.assertEqual(self.waits.expired, [(0, 0.0), (2, 0.0)])
        self.assertEqual((len(self.deadlines), self.clock.getDelayedCalls()), (0, []))


class RequestIdTests(SynchronousTestCase):
    """Request ids: drawn once per channel, then counted up; unique among those in flight."""

    def test_oneDrawPerChannel(self):
        """
        A channel draws random bytes once, for its first request id; the ids that follow
        count up from it (no system call per request), wrapping at 2**64.
        """
        draws = []

        def randomBytes(size):
            draws.append(size)
            return b"\xff" * (size - 1) + bytes([0xFF - len(draws)])

        link = PipeliningTests.FakeLink()
        channel = RpcChannel(link, Responder(), Clock(), 5.0, lambda channel: None, randomBytes=randomBytes)
        for _ in range(3):
            channel.request(RpcKind.PING, {"port": 0})
        self.assertEqual(draws, [8])
        self.assertEqual([Rpc.parse(frame).request_id for frame in link.sent], [b"\xff" * 7 + b"\xfe", b"\xff" * 8, b"\x00" * 8])
