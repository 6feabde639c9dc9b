"""
DHT networks for tests: in memory on a driven clock (L{MemoryDht}, most tests), or real nodes
in this process, each with its own link service on its own loopback address (the integration
tests, and the rooms above).
"""

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from phantom.address import Contact
from phantom.config import DhtSettings
from phantom.identity import Identity
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb.api import ApiDecoder, ApiService
from phantom.netdb.service import DhtNode
from phantom.wire.api import REPLIES
from tests.link.helpers import LOOPBACK, ownTimeClock, portOf, startLinkService

FAST_DHT = DhtSettings(rpcTimeout=2.0, getTimeout=8.0, maintenanceInterval=3600.0)

START = 1_800_000_000
"""The time on the clock of an in-memory network when it starts."""


class MemoryDht:
    """
    DHT nodes on a L{MemoryNetwork}: no sockets, every timer on one L{HeapClock} that
    L{run} drives, so a network of dozens of nodes joins, stores and finds in milliseconds.

    @ivar network: the L{MemoryNetwork}; C{network.clock} is every node's clock.
    """

    def __init__(self, testCase, settings=FAST_DHT):
        self._testCase = testCase
        self.settings = settings
        self.clock = HeapClock()
        self.clock.advance(START)
        self.network = MemoryNetwork(self.clock)

    def run(self, deferred, within=3600.0):
        """Drive the clock until C{deferred} (or a coroutine) has its result; see L{MemoryNetwork.run}."""
        if not isinstance(deferred, Deferred):
            deferred = Deferred.fromCoroutine(deferred)
        return self.network.run(deferred, within)

    def runFor(self, seconds):
        """Let C{seconds} of the clock pass, every timer at its time; see L{MemoryNetwork.runFor}."""
        self.network.runFor(seconds)

    def startNode(self, index, bootstrap=(), identity=None, dataDir=None, seed=None, cls=DhtNode, settings=None):
        """
        A started DHT node (of class C{cls}) with its own link service on the network, stopped
        on cleanup; C{node.links} is its link service. Its join has begun: see C{node.joined}.
        """
        identity = identity or Identity.generate()
        links = self.network.linkService(nodeId=identity.nodeId)
        node = cls(
            identity,
            links,
            self.clock,
            settings or self.settings,
            address=links.address,
            bootstrap=bootstrap,
            dataDir=dataDir,
            random=random.Random(seed if seed is not None else index),
        )
        node.links = links
        node.startService()
        self._testCase.addCleanup(lambda: node.running and node.stopService())
        return node

    def start(self, count):
        """
        C{count} nodes; the first is everyone's bootstrap contact (by address only).

        @return: the nodes, once every one has joined.
        """
        first = self.startNode(0)
        self.run(first.joined)
        bootstrap = (Contact(*first.address),)
        nodes = [first] + [self.startNode(i, bootstrap) for i in range(1, count)]
        self.run(gatherResults([node.joined for node in nodes]))
        return nodes

    def stop(self, node):
        """Stop C{node} and take it off the network: its links close, nobody reaches it."""
        node.stopService()
        self.network.disconnect(node.links)
        self.network.settle()


def loopbackAddress(index, base=100):
    """
    A loopback address of its own for the pair C{(index, base)} (the same one every time it is
    asked for), from the one allocator L{tests.link.helpers.LOOPBACK}.
    """
    return LOOPBACK.named(("node", index, base))


def startDhtNode(testCase, index, bootstrap=(), settings=FAST_DHT, identity=None, dataDir=None, base=None, seed=None, cls=DhtNode, clock=None):
    """
    A started DHT node (of class C{cls}) on a loopback address of its own, stopped on cleanup;
    its links run on the reactor, its and its links' timers on C{clock}: the test's
    L{OwnTimeClock} unless given (a loaded machine makes no deadline pass sooner). C{index}
    seeds its random; C{base} is ignored (every node gets a fresh address).
    """
    clock = ownTimeClock(testCase) if clock is None else clock
    host = LOOPBACK.fresh()
    identity = identity or Identity.generate()
    links = startLinkService(testCase, address=host, bindAddress=host, identity=identity, clock=clock)
    node = cls(
        identity,
        links,
        clock,
        settings,
        address=(host, portOf(links)),
        bootstrap=bootstrap,
        dataDir=dataDir,
        random=random.Random(seed if seed is not None else index),
    )
    node.links = links
    node.startService()
    testCase.addCleanup(node.stopService)
    return node


async def startDhtNetwork(testCase, count, base=None, settings=FAST_DHT):
    """
    C{count} real DHT nodes, each on a fresh loopback address; the first is everyone's
    bootstrap contact (by address only). C{base} is ignored.

    @return: the nodes, once every one has joined.
    """
    first = startDhtNode(testCase, 0, settings=settings)
    await first.joined
    bootstrap = (Contact(first.address[0], first.address[1]),)
    nodes = [first] + [startDhtNode(testCase, i, bootstrap, settings=settings) for i in range(1, count)]
    await gatherResults([node.joined for node in nodes])
    return nodes


def startApi(testCase, node):
    """Serve C{node}'s values on the module API on its own address; C{node.api} is its (host, port)."""
    service = ApiService(node, TCP4ServerEndpoint(reactor, 0, interface=node.address[0]), reactor, node.settings)
    service.startService()
    testCase.addCleanup(service.stopService)
    node.api = (node.address[0], service.listeningAddress.port)
    return service


class ApiClient(Protocol):
    """A module-API client: writes requests, collects the replies in order of arrival."""

    def __init__(self):
        self.decoder = ApiDecoder(REPLIES)
        self.replies = []
        self._waiting = []

    def dataReceived(self, data):
        self.replies += self.decoder.feed(data)
        waiting, self._waiting = self._waiting, []
        for count, d in waiting:
            self.wait(count, d)

    def wait(self, count, d=None):
        """@return: a Deferred firing with the first C{count} replies once they have arrived."""
        d = d or Deferred()
        if len(self.replies) >= count:
            d.callback(self.replies[:count])
        else:
            self._waiting.append((count, d))
        return d


def apiClient(host, port):
    """@return: a Deferred firing with an L{ApiClient} connected to C{host:port}."""
    return connectProtocol(TCP4ClientEndpoint(reactor, host, port), ApiClient())
