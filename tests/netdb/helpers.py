"""In-process DHT networks: real nodes, each its own link service on its own loopback address."""

import random

from twisted.internet import reactor
from twisted.internet.defer import gatherResults

from phantom.config import Contact, DhtSettings
from phantom.identity import Identity
from phantom.netdb.service import DhtNode
from tests.link.helpers import portOf, startLinkService

FAST_DHT = DhtSettings(rpcTimeout=2.0, getTimeout=8.0, maintenanceInterval=3600.0)


def loopbackAddress(index, base=100):
    """127.0.(base/250).(...): addresses for node C{index}, away from other tests' addresses."""
    number = base + index
    return f"127.0.{number // 250 + 1}.{number % 250 + 2}"


def startDhtNode(testCase, index, bootstrap=(), settings=FAST_DHT, identity=None, dataDir=None, base=100, seed=None, cls=DhtNode):
    """A started DHT node (of class C{cls}) on its own loopback address, stopped on cleanup."""
    host = loopbackAddress(index, base)
    identity = identity or Identity.generate()
    links = startLinkService(testCase, address=host, bindAddress=host, identity=identity)
    node = cls(
        identity,
        links,
        reactor,
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
