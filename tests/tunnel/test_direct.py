"""
Non-anonymised participation (paper §6.3) over real links and the real network database: a node
that is its own exit node, and a node that is its own entry node, with end-to-end TLS all the
same (more cases in test_network, on an in-memory network).
"""

import os

from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from phantom.netdb.records import routeKey
from phantom.path.interfaces import PathKind
from phantom.tunnel.endpoint import EndToEnd, TunnelClientEndpoint, TunnelServerEndpoint
from phantom.tunnel.transport import TunnelAddress
from phantom.wire.dht import Table
from tests.tunnel.helpers import SHAPE, Collector, Echo, startTunnelNetwork, untilClean


class Remembering(Echo):
    def connectionMade(self):
        self.factory.made.append(self)


async def echoThrough(client, server, size=200_000):
    """Open an end-to-end tunnel from C{client} to C{server}'s AP-address; check an echo; close."""
    factory = Factory.forProtocol(Remembering)
    factory.made = []
    port = await TunnelServerEndpoint(server.tunnels, EndToEnd(server.identity.routingKey)).listen(factory)
    payload = os.urandom(size)
    collector = await TunnelClientEndpoint(client.tunnels, server.apAddress).connect(
        Factory.forProtocol(lambda: Collector(len(payload)))
    )
    collector.transport.write(payload)
    echoed = await collector.arrived
    [echo] = factory.made
    peer = echo.transport.getPeer()
    collector.transport.loseConnection()
    await collector.ended
    port.stopListening()
    return echoed == payload, peer


class DirectTests(TestCase):
    timeout = 180

    async def test_ownExitAndOwnEntry(self):
        """
        A node that is its own entry node publishes a routing entry naming itself; a node that
        is its own exit node reaches it with no path at all, and a node with an exit path too.
        """
        nodes = await startTunnelNetwork(self, 12, base=950, options={3: {"ownExit": True}}, ownEntry={8})
        server, direct, anonymous = nodes[8], nodes[3], nodes[5]
        # The server's own routing entry is published when its tunnel service starts.
        server.tunnels.startService()
        self.addCleanup(server.tunnels.stopService)
        await server.published.whenStored(server.apAddress)
        entry = await direct.findRecord(Table.ROUTE, routeKey(server.apAddress))
        self.assertEqual([node.nodeId for node in entry.entryNodes], [server.nodeId])

        intact, peer = await echoThrough(direct, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(direct.tunnels.exits.current.apAddress))
        self.assertEqual(direct.paths.paths, [])

        exitPath = await anonymous.paths.build(PathKind.EXIT, SHAPE)
        intact, peer = await echoThrough(anonymous, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(anonymous.tunnels.exits.ofPath(exitPath).apAddress))
        await untilClean(nodes)
