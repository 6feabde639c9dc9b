"""In-process networks with tunnels: nodes with a DHT, paths and a tunnel service each."""

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol

from phantom.config import PathSettings
from phantom.crypto import apAddressOf
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from phantom.tunnel.service import TunnelService
from tests.link.helpers import until
from tests.path.helpers import PublishedRoutes
from tests.path.test_service import startPathNetwork

SETTINGS = PathSettings(roundTimeout=10.0, x=3, y=5, diversity="off", coarseEntries=False)
SHAPE = PathShape(3, 5)


async def startTunnelNetwork(testCase, count, base, options=None, ownEntry=(), tampering=False):
    """
    C{count} nodes, each with a tunnel service as C{node.tunnels}.

    @param options: node index to more keyword arguments for that node's tunnel service.
    @param ownEntry: indices of the nodes that are their own entry nodes.
    @param tampering: whether each node's relays tamper when armed (its
        L{tests.tunnel.tampering.Tampering} as C{node.tampering}).
    @return: the nodes; C{node.published} is the network's L{PublishedRoutes}.
    """
    nodes = await startPathNetwork(testCase, count, base, SETTINGS)
    published = PublishedRoutes(nodes)
    for index, node in enumerate(nodes):
        node.published = published
        node.apAddress = apAddressOf(node.identity.routingKey.public_key())
        more = dict((options or {}).get(index, {}))
        if index in ownEntry:
            more["ownEntry"] = node.identity.routingKey
        if tampering:
            from tests.tunnel.tampering import Tampering

            node.tampering = more["relaySetup"] = Tampering()
        node.tunnels = TunnelService(node.links, node.paths, node, reactor, node.apAddress, random.Random(1000 + index), **more)
        testCase.addCleanup(node.tunnels.stop)
    return nodes


async def buildEntry(nodes, owner):
    """Build an entry path for C{owner} and wait until its routing entry has been stored."""
    path = await owner.paths.build(PathKind.ENTRY, SHAPE)
    await owner.published.whenStored(path.apAddress)
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
    """Sends back whatever arrives; C{lost}: why its connection ended, once it has (C{ended} fires then)."""

    lost = None

    def __init__(self):
        self.ended = Deferred()

    def dataReceived(self, data):
        self.transport.write(data)

    def connectionLost(self, reason):
        self.lost = reason
        if not self.ended.called:
            self.ended.callback(None)


# Looking into a network's tunnels: who relays what, and what a tunnel left behind.

import os

from phantom.wire.link import Purpose


def byId(nodes):
    """The nodes by node id."""
    return {node.nodeId: node for node in nodes}


def hopNode(nodes, path, index):
    """The node that is X-node C{index} of C{path} (0: x0, -1: T)."""
    return byId(nodes)[path.plan.xNodes[index].nodeId]


def relayedOn(node, owner, path, index):
    """
    The L{phantom.path.service.RelayedPath} at C{node} that is X-node C{index} (0: x0, -1: T)
    of C{owner}'s C{path}, found by its neighbours; C{None} if there is none.
    """
    xIds = [record.nodeId for record in path.plan.xNodes]
    index %= len(xIds)
    neighbours = {owner.nodeId if index == 0 else xIds[index - 1]}
    if index + 1 < len(xIds):
        neighbours.add(xIds[index + 1])
    for relayed in node.paths.relaying.values():
        if not relayed.gone and {contact.nodeId for contact in relayed.contacts.values() if contact is not None} == neighbours:
            return relayed
    return None


def tunnelLinks(node):
    """The node's connections, open or opening, that are TUNNEL or ENTRY links."""
    return [link for link in node.links.connections if link.purpose in (Purpose.TUNNEL, Purpose.ENTRY)]


def leftovers(nodes, remembered=True, linksOf=tunnelLinks):
    """
    What tunnels left behind on C{nodes}: owned tunnels, carried splices, TUNNEL and ENTRY
    links, setups under way, and (if C{remembered}) blocks waiting for tunnel links.

    @param linksOf: C{linksOf(node)}, the node's TUNNEL and ENTRY links.
    @return: C{(node index, what, how many)} for each kind a node still holds; empty when clean.
    """
    found = []
    for index, node in enumerate(nodes):
        held = {
            "owned tunnels": len(node.tunnels.tunnels),
            "carried splices": len(node.tunnels.carried),
            "TUNNEL/ENTRY links": len(linksOf(node)),
            "setups under way": len(node.tunnels.opening),
        }
        if remembered:
            held["remembered blocks"] = len(node.tunnels.remembered)
        found.extend((index, what, count) for what, count in held.items() if count)
    return found


async def untilClean(nodes, timeout=10.0, remembered=True):
    """Wait until L{leftovers} finds nothing; fail naming what is left after C{timeout} seconds."""
    try:
        await until(lambda: not leftovers(nodes, remembered), timeout)
    except AssertionError:
        raise AssertionError(f"left behind after {timeout:g} s: {leftovers(nodes, remembered)}") from None


def flipBit(data, bit):
    """C{data} with bit number C{bit} (0: the top bit of the first byte) inverted."""
    flipped = bytearray(data)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(flipped)


class Recorder(Echo):
    """An echo that keeps what arrives and fires C{ended} when its tunnel ends."""

    def __init__(self, echo=True):
        super().__init__()
        self.received = bytearray()
        self.echo = echo
        self._awaited = []

    def dataReceived(self, data):
        self.received += data
        if self.echo:
            self.transport.write(data)
        awaited, self._awaited = self._awaited, []
        for count, d in awaited:
            self._check(count, d)

    def whenReceived(self, count):
        """@return: a Deferred that fires with what arrived once C{count} bytes have."""
        d = Deferred()
        self._check(count, d)
        return d

    def _check(self, count, d):
        if len(self.received) >= count:
            d.callback(bytes(self.received))
        else:
            self._awaited.append((count, d))


def acceptInto(node, accepted, protocol=Recorder):
    """
    Start C{protocol()} on each tunnel C{node} accepts; keep C{(tunnel, protocol)} in C{accepted}.

    @return: the listening port (C{node.tunnels.listener}).
    """

    def accept(tunnel):
        running = protocol()
        accepted.append((tunnel, running))
        tunnel.start(running)

    return node.tunnels.listen(accept)



async def openEcho(testCase, client, server, accepted, size=5000):
    """
    Open a tunnel from C{client} to C{server}, whose acceptor is L{acceptInto} C{accepted}, and
    see C{size} random bytes come back intact, having reached the server once.

    @return: C{(tunnel, collector, serverTunnel, recorder)}.
    """
    before = len(accepted)
    tunnel = await client.tunnels.open(server.apAddress)
    message = os.urandom(size)
    collector = Collector(len(message))
    tunnel.start(collector)
    tunnel.write(message)
    testCase.assertEqual(await collector.arrived, message)
    testCase.assertEqual(len(accepted), before + 1)
    serverTunnel, recorder = accepted[-1]
    testCase.assertEqual(bytes(recorder.received), message)
    return tunnel, collector, serverTunnel, recorder


async def startClientAndServer(testCase, count, base, client, server, exitPath=True, **options):
    """
    A network of C{count} nodes (L{startTunnelNetwork} with C{options}) in which node C{server}
    has an entry path and echoes each tunnel it accepts, and node C{client} has an exit path.

    @param exitPath: whether to build the client's exit path.
    @return: C{(nodes, client, server, entryPath, exitPath, accepted)}; C{accepted} as for
        L{acceptInto}.
    """
    nodes = await startTunnelNetwork(testCase, count, base, **options)
    client, server = nodes[client], nodes[server]
    entryPath = await buildEntry(nodes, server)
    accepted = []
    acceptInto(server, accepted)
    built = await client.paths.build(PathKind.EXIT, SHAPE) if exitPath else None
    return nodes, client, server, entryPath, built, accepted
