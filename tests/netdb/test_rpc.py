"""DHT RPCs over real links on loopback: multiplexing, timeouts, broken peers."""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from phantom.address import Contact
from phantom.netdb.rpc import DhtLinks, RpcFailed
from phantom.wire.dht import Rpc, RpcKind
from tests.link.helpers import LogCollector, portOf, startLinkService
from tests.link.helpers import until


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


def startDht(testCase, timeout=5.0, address="127.0.0.1"):
    links = startLinkService(testCase, address=address, bindAddress=address)
    responder = Responder()
    dht = DhtLinks(links, responder, reactor, timeout=timeout)
    return links, responder, dht


def contactOf(links):
    return Contact(links.listeningAddress.host, portOf(links), links.nodeId)


class RpcTests(TestCase):
    """Requests and replies between two nodes."""

    async def test_manyInFlight(self):
        """100 requests in flight on one link each get their own reply; one link is used."""
        serverLinks, responder, _ = startDht(self)
        clientLinks, _, client = startDht(self, address="127.0.0.41")
        targets = [bytes([i]) * 32 for i in range(100)]
        replies = await gatherResults(
            [client.call(contactOf(serverLinks), RpcKind.FIND_NODE, {"port": 4242, "target": t}) for t in targets]
        )
        self.assertEqual([content.contacts[0].node_id for _, content in replies], targets)
        self.assertEqual(len(clientLinks.links), 1)
        self.assertEqual(responder.senders[0], Contact("127.0.0.41", 4242, clientLinks.nodeId))

    async def test_bothDirections(self):
        """The node that accepted a DHT link sends its own requests over it."""
        serverLinks, _, server = startDht(self)
        clientLinks, _, client = startDht(self, address="127.0.0.42")
        await client.call(contactOf(serverLinks), RpcKind.PING, {"port": portOf(clientLinks)})
        kind, _ = await server.call(contactOf(clientLinks), RpcKind.PING, {"port": portOf(serverLinks)})
        self.assertEqual(kind, RpcKind.PONG)
        self.assertEqual(len(serverLinks.links), 1)

    async def test_timeout(self):
        """A request without a reply fails after the timeout; the link stays usable."""
        serverLinks, _, _ = startDht(self)
        _, _, client = startDht(self, timeout=0.3)
        with self.assertRaises(RpcFailed):
            await client.call(contactOf(serverLinks), RpcKind.SAMPLE, {"port": 0})
        kind, _ = await client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0})
        self.assertEqual(kind, RpcKind.PONG)

    async def test_wrongReplyKind(self):
        """A reply of the wrong kind fails the request and closes the link."""
        serverLinks, _, _ = startDht(self)
        clientLinks, _, client = startDht(self)
        with self.assertRaises(RpcFailed):
            await client.call(contactOf(serverLinks), RpcKind.FIND_VALUE, {"port": 0, "table": "VALUE", "key": b"k" * 32})
        await until(lambda: not clientLinks.links)

    async def test_responderFails(self):
        """A request the responder cannot answer closes the link and fails pending requests."""
        serverLinks, _, _ = startDht(self)
        _, _, client = startDht(self)
        logs = LogCollector(self)
        store = {"port": 0, "table": "VALUE", "key": b"k" * 32, "ttl": 1, "value": b"v"}
        with self.assertRaises(RpcFailed):
            await client.call(contactOf(serverLinks), RpcKind.STORE, store)
        self.flushLoggedErrors(RuntimeError)
        self.assertTrue(any("could not be answered" in line for line in logs.lines))

    async def test_malformedMessage(self):
        """A malformed RPC closes its link with a log line; other links are untouched."""
        serverLinks, _, _ = startDht(self)
        _, _, good = startDht(self)
        badLinks, _, bad = startDht(self, address="127.0.0.43")
        logs = LogCollector(self)
        channel = await bad.channelTo(contactOf(serverLinks))
        channel.link.sendFrame(Rpc.build({"kind": "PING", "request_id": b"r" * 8, "content": {"port": 1}}) + b"junk")
        await until(lambda: not badLinks.links)
        self.assertTrue(any("127.0.0.43" in line and "malformed DHT message" in line for line in logs.lines))
        kind, _ = await good.call(contactOf(serverLinks), RpcKind.PING, {"port": 0})
        self.assertEqual(kind, RpcKind.PONG)

    async def test_unreachable(self):
        """A contact nobody answers for fails the request with RpcFailed."""
        _, _, client = startDht(self)
        with self.assertRaises(RpcFailed):
            await client.call(Contact("127.0.0.1", 1, b"x" * 32), RpcKind.PING, {"port": 0})

    async def test_idleClosed(self):
        """Links idle for the idle time are closed by closeIdle; busy ones are kept."""
        serverLinks, _, _ = startDht(self)
        clientLinks, _, client = startDht(self)
        await client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0})
        client.closeIdle()
        self.assertEqual(len(clientLinks.links), 1)
        client.idleClose = 0
        client.closeIdle()
        await until(lambda: not clientLinks.links)


class IdleCloseTests(TestCase):
    """Closing idle links never leaves requests on a link that is going away."""

    async def test_requestRightAfterIdleClose(self):
        """A request made in the same turn as closeIdle goes over a fresh link."""
        serverLinks, _, _ = startDht(self)
        clientLinks, _, client = startDht(self)
        await client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0})
        client.idleClose = 0
        client.closeIdle()
        kind, _ = await client.call(contactOf(serverLinks), RpcKind.PING, {"port": 0})
        self.assertEqual(kind, RpcKind.PONG)
