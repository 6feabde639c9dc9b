"""
Client identity reuse: which identities the servers a client talks to see, in-process.

One client opens 20 end-to-end TLS tunnels to 4 servers (each behind an entry path), 10 over one
exit path and 10 over its replacement, on an in-memory network driven by a clock. Each server
records the AP-address of the certificate the client presented. The figures count the tunnels
on which a server saw the client's published AP-address (the address of its hidden service), and
the identities seen over more than one exit path; the ideal of both is 0. Before every exit path
had its own client identity, all 20 tunnels showed the published AP-address, and that one
identity spanned both exit paths.
"""

import random

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from phantom.config import PathSettings
from phantom.crypto import apAddressOf
from phantom.identity import Identity
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb.testing import MemoryDatabase
from phantom.path.interfaces import IPathFrameReceiver, PathKind
from phantom.path.plan import PathShape
from phantom.path.service import PathService
from phantom.tunnel.endpoint import EndToEnd, TunnelClientEndpoint, TunnelServerEndpoint
from phantom.tunnel.service import TunnelService

START = 1_800_000_000
SETTINGS = PathSettings(roundTimeout=5.0, x=3, y=5, diversity="off", lifetime=86400.0, coarseEntries=False)
SHAPE = PathShape(3, 5)


@implementer(IPathFrameReceiver)
class _Node:
    """A node on the in-memory network: links, its view of the database, paths, tunnels."""

    def __init__(self, links, database, clock, seed):
        self.identity = Identity.generate()
        self.apAddress = apAddressOf(self.identity.routingKey.public_key())
        self.links = links.linkService(nodeId=self.identity.nodeId)
        self.dht = database.node(self.identity, *self.links.address)
        self.paths = PathService(self.identity, self.links, self.dht, clock, SETTINGS, random.Random(seed), frameReceiver=self)
        self.tunnels = TunnelService(self.links, self.paths, self.dht, clock, self.apAddress, random.Random(1000 + seed))
        self.endToEnd = EndToEnd(self.identity.routingKey, clock)

    def pathFrameReceived(self, path, side, payload):
        self.tunnels.pathFrameReceived(path, side, payload)


@implementer(IHandshakeListener)
class _Seen(Protocol):
    """Records the client identity the server's side of a tunnel authenticated."""

    def __init__(self, seen):
        self._seen = seen

    def handshakeCompleted(self):
        self._seen.append(self.transport.getPeer().apAddress)


def clientIdentityReuse(tunnels=20, servers=4, generations=2, relays=16, seed=0):
    """
    Open C{tunnels} tunnels from one client to C{servers} servers, in turn, over C{generations}
    exit paths one after the other, and count what the servers saw.

    @return: a dict: C{published_ap_seen}, the tunnels on which a server saw the client's
        published AP-address (ideal 0); C{shared_across_exit_paths}, the client identities seen
        over more than one exit path (ideal 0); and, to read them by, C{tunnels},
        C{exit_paths} and C{distinct_identities} (ideal: one per exit path).
    """
    clock = HeapClock()
    clock.advance(START)
    links = MemoryNetwork(clock)
    database = MemoryDatabase(clock, random.Random(seed))
    nodes = [_Node(links, database, clock, seed * 100 + index) for index in range(1 + servers + relays)]
    client, serverNodes = nodes[0], nodes[1 : 1 + servers]
    for node in nodes:
        node.paths.startService()
    try:
        byGeneration = []
        for server in serverNodes:
            links.run(_build(server, PathKind.ENTRY))
            seen = []
            server.seen = seen
            TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(Factory.forProtocol(lambda seen=seen: _Seen(seen)))
        perGeneration = tunnels // generations
        for generation in range(generations):
            exitPath = links.run(_build(client, PathKind.EXIT))
            observed = []
            for index in range(perGeneration if generation < generations - 1 else tunnels - perGeneration * generation):
                server = serverNodes[index % servers]
                before = len(server.seen)
                protocol = links.run(TunnelClientEndpoint(client.tunnels, server.apAddress).connect(Factory.forProtocol(Protocol)))
                links.settle()
                observed.extend(server.seen[before:])
                protocol.transport.loseConnection()
                links.settle()
            byGeneration.append(observed)
            client.paths.retire(exitPath)
            links.settle()
        everything = [identity for observed in byGeneration for identity in observed]
        owners = {}
        for generation, observed in enumerate(byGeneration):
            for identity in observed:
                owners.setdefault(identity, set()).add(generation)
        return {
            "published_ap_seen": sum(identity == client.apAddress for identity in everything),
            "shared_across_exit_paths": sum(len(generationsSeen) > 1 for generationsSeen in owners.values()),
            "tunnels": len(everything),
            "exit_paths": generations,
            "distinct_identities": len(owners),
        }
    finally:
        for node in nodes:
            node.tunnels.stop()
            if node.paths.running:
                node.paths.stopService()
        links.settle()


def _build(node, kind):
    return Deferred.fromCoroutine(node.paths.build(kind, SHAPE))


if __name__ == "__main__":
    import json

    print(json.dumps(clientIdentityReuse()))
