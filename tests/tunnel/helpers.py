"""In-process networks with tunnels: nodes with a DHT, paths and a tunnel service each."""

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol

from phantom.config import PathSettings
from phantom.crypto import apAddressOf
from phantom.netdb.records import routeKey
from phantom.path.plan import PathShape
from phantom.tunnel.service import TunnelService
from phantom.wire.dht import Table
from tests.link.helpers import until
from tests.path.test_service import startPathNetwork

SETTINGS = PathSettings(roundTimeout=10.0, x=3, y=5)
SHAPE = PathShape(3, 5)


async def startTunnelNetwork(testCase, count, base, cls=TunnelService):
    """C{count} nodes, each with a tunnel service (of class C{cls}) as C{node.tunnels}."""
    nodes = await startPathNetwork(testCase, count, base, SETTINGS)
    for index, node in enumerate(nodes):
        node.apAddress = apAddressOf(node.identity.routingKey.public_key())
        node.tunnels = cls(node.links, node.paths, node, reactor, node.apAddress, random.Random(1000 + index))
        testCase.addCleanup(node.tunnels.stop)
    return nodes


async def buildEntry(nodes, owner):
    """Build an entry path for C{owner} and wait until every node would find its routing entry."""
    path = await owner.paths.build("entry", SHAPE)
    await until(lambda: sum(1 for node in nodes if node.store.get(Table.ROUTE, routeKey(path.apAddress))) >= 1)
    return path


class Collector(Protocol):
    """Keeps what arrives; C{wanted} bytes fire C{arrived}; the end fires C{ended}."""

    def __init__(self, wanted=None):
        self.received = bytearray()
        self.wanted = wanted
        self.arrived = Deferred()
        self.ended = Deferred()

    def dataReceived(self, data):
        self.received += data
        if self.wanted is not None and len(self.received) >= self.wanted and not self.arrived.called:
            self.arrived.callback(bytes(self.received))

    def connectionLost(self, reason):
        self.reason = reason
        if not self.ended.called:
            self.ended.callback(None)


class Echo(Protocol):
    """Sends back whatever arrives."""

    def dataReceived(self, data):
        self.transport.write(data)

    def connectionLost(self, reason):
        self.lost = reason
