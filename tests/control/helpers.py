"""
A node for the control socket without a network (L{FakeNode}), and an endpoint that connects a
L{ControlClient} to a L{ControlProtocol} in memory (L{MemoryControlEndpoint}), for the fast tests.
"""

from types import SimpleNamespace

from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.test import iosim
from zope.interface import implementer

from phantom.address import Contact
from phantom.control.client import ControlClient
from phantom.control.interfaces import IControlledNode
from phantom.control.server import ControlProtocol

NODE_ID = bytes(range(32))
OTHER_ID = bytes(range(1, 33))
THIRD_ID = bytes(range(2, 34))
AP_ADDRESS = bytes.fromhex("fd" + "11" * 15)
FAR_AP_ADDRESS = bytes.fromhex("fd" + "22" * 15)
EXIT_ADDRESS = bytes.fromhex("fd" + "33" * 15)


class FakeTable(list):
    """A routing table: its contacts, and the bucket summary it was given."""

    def __init__(self, contacts=(), buckets=()):
        super().__init__(contacts)
        self.buckets = list(buckets)

    def summary(self):
        return self.buckets


class EchoTransport:
    """The far end of a fake tunnel: writes come back C{delay} seconds later on C{clock}, or never."""

    def __init__(self, protocol, apAddress, clock, delay, echo=True):
        self.protocol = protocol
        self.apAddress = apAddress
        self.clock = clock
        self.delay = delay
        self.echo = echo
        self.closed = False

    def write(self, data):
        if self.echo:
            self.clock.callLater(self.delay, self.protocol.dataReceived, data)

    def getPeer(self):
        return SimpleNamespace(apAddress=self.apAddress)

    def loseConnection(self):
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(None)


@implementer(IControlledNode)
class FakeNode:
    """
    An L{IControlledNode} that answers from its attributes, on a driven clock; what it was asked
    to do is in C{puts}, C{builds}, C{lookups} and C{opened}.
    """

    def __init__(self, clock=None):
        self.reactor = clock or Clock()
        self.nodeId = NODE_ID
        self.apAddress = AP_ADDRESS
        self.address = "127.0.0.9:7402"
        self.apiAddress = "127.0.0.9:7401"
        self.startedAt = None
        self.device = self.router = None
        self.links = (0, 0)
        self.linked = []
        self.table = FakeTable()
        self.lookups = (0, 0)
        self.stored = {}
        self.paths = []
        self.tunnels = []
        self.carried = 0
        self.puts = []
        self.builds = []
        self.built = None
        self.routes = {}
        self.lookedUp = []
        self.opened = []
        self.openSeconds = 0.5
        self.echoSeconds = 0.25
        self.echo = True
        self.tunnelError = None
        self.kept = []

    def linkCounts(self):
        return self.links

    def linkedPeers(self):
        return self.linked

    def routingTable(self):
        return self.table

    def lookupCounts(self):
        return self.lookups

    def storedCount(self):
        return len(self.stored)

    def put(self, key, value, ttl, replication):
        self.puts.append((key, value, ttl, replication))
        self.stored[key] = value
        return succeed(getattr(self, "putOutcome", 3))

    def get(self, key):
        return succeed(self.stored.get(key))

    def findRoute(self, apAddress):
        self.lookedUp.append(apAddress)
        return succeed(self.routes.get(apAddress))

    def buildPath(self, kind, shape):
        self.builds.append((kind, shape))
        return fail(self.built) if isinstance(self.built, Exception) else succeed(self.built)

    def ownedPaths(self):
        return self.paths

    def pathStates(self):
        return self.kept

    def connectTunnel(self, apAddress, factory):
        self.opened.append(apAddress)
        if self.tunnelError is not None:
            return fail(self.tunnelError)

        def connected():
            protocol = factory.buildProtocol(None)
            protocol.makeConnection(EchoTransport(protocol, apAddress, self.reactor, self.echoSeconds, self.echo))
            return protocol

        return deferLater(self.reactor, self.openSeconds, connected)

    def exitAddresses(self):
        return [EXIT_ADDRESS]

    def ownedTunnels(self):
        return self.tunnels

    def carriedCount(self):
        return self.carried


def fakePath(kind="entry", apAddress=AP_ADDRESS, nodes=(OTHER_ID, THIRD_ID), builtAt=0.0, phases=None):
    """A path as the control socket sees one."""
    return SimpleNamespace(
        kind=kind,
        apAddress=apAddress,
        nodes=[SimpleNamespace(nodeId=nodeId) for nodeId in nodes],
        phases=phases if phases is not None else {"plan": 0.01, "round1": 0.1, "round2": 0.2, "link": 0.05},
        link=SimpleNamespace(peer=IPv4Address("TCP", "127.0.0.5", 7402)),
        builtAt=builtAt,
    )


def fakeTunnel(outbound=True, peer=FAR_AP_ADDRESS, openedAt=0.0, sent=0, received=0):
    """A tunnel end as the control socket sees one."""
    return SimpleNamespace(
        outbound=outbound,
        getPeer=lambda: SimpleNamespace(apAddress=peer),
        openedAt=openedAt,
        bytesSent=sent,
        bytesReceived=received,
    )


def contact(nodeId, host="127.0.0.5", port=7402):
    """A routing table's contact."""
    return Contact(host, port, nodeId)


@implementer(IStreamClientEndpoint)
class MemoryControlEndpoint:
    """
    Connects each client to a new L{ControlProtocol} of C{node} in memory; L{flush} moves the
    bytes both ways. With C{refuse} set, connecting fails as when no node listens.
    """

    def __init__(self, node):
        self.node = node
        self.pumps = []
        self.refuse = False

    def connect(self, factory):
        if self.refuse:
            return fail(ConnectionRefusedError())
        client = factory.buildProtocol(None)
        server = ControlProtocol(self.node)
        self.pumps.append(iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), greet=False))
        return succeed(client)

    def flush(self):
        """Deliver everything written on every connection, answers included."""
        for pump in self.pumps:
            pump.flush()

    def open(self):
        """@return: how many connections are not closed."""
        return sum(not pump.clientIO.disconnecting for pump in self.pumps)


def memoryClient(node):
    """@return: a L{ControlClient} of C{node} in memory, on C{node}'s clock, and its endpoint."""
    endpoint = MemoryControlEndpoint(node)
    return ControlClient(endpoint, node.reactor, "memory"), endpoint
