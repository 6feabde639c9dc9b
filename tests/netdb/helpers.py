"""In-process DHT networks: real nodes, each its own link service on its own loopback address."""

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from phantom.address import Contact
from phantom.config import DhtSettings
from phantom.identity import Identity
from phantom.netdb.api import ApiDecoder, ApiService
from phantom.netdb.service import DhtNode
from phantom.wire.api import REPLIES
from tests.link.helpers import portOf, startLinkService

FAST_DHT = DhtSettings(rpcTimeout=2.0, getTimeout=8.0, maintenanceInterval=3600.0)


def loopbackAddress(index, base=100):
    """127.0.(base/250).(...): addresses for node C{index}, away from other tests' addresses."""
    number = base + index
    return f"127.0.{number // 250 + 1}.{number % 250 + 2}"


def startDhtNode(testCase, index, bootstrap=(), settings=FAST_DHT, identity=None, dataDir=None, base=100, seed=None, cls=DhtNode, clock=reactor):
    """
    A started DHT node (of class C{cls}) on its own loopback address, stopped on cleanup; its
    links run on the reactor, its timers on C{clock}.
    """
    host = loopbackAddress(index, base)
    identity = identity or Identity.generate()
    links = startLinkService(testCase, address=host, bindAddress=host, identity=identity)
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


async def startDhtNetwork(testCase, count, base=100, settings=FAST_DHT):
    """
    C{count} DHT nodes; the first is everyone's bootstrap contact (by address only).

    @return: the nodes, once every one has joined.
    """
    first = startDhtNode(testCase, 0, base=base, settings=settings)
    await first.joined
    bootstrap = (Contact(first.address[0], first.address[1]),)
    nodes = [first] + [startDhtNode(testCase, i, bootstrap, base=base, settings=settings) for i in range(1, count)]
    await gatherResults([node.joined for node in nodes])
    return nodes


def startApi(testCase, node):
    """Serve C{node}'s values on the module API on its own address; C{node.api} is its (host, port)."""
    service = ApiService(node, TCP4ServerEndpoint(reactor, 0, interface=node.address[0]), reactor, getTimeout=node.settings.getTimeout)
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
