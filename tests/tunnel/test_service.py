"""Tunnels across an exit path and an entry path of an in-process network, over real links."""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.link.helpers import until
from tests.tunnel.helpers import SHAPE, Collector, Echo, buildEntry, startTunnelNetwork


class TunnelTests(TestCase):
    timeout = 180

    async def test_echoAcrossSixHops(self):
        """Bytes sent into a tunnel come back from an echo at the entry path's owner, intact."""
        nodes = await startTunnelNetwork(self, 16, base=760)
        client, server = nodes[2], nodes[9]
        await buildEntry(nodes, server)
        accepted = []
        server.tunnels.acceptor = lambda tunnel: (accepted.append(tunnel), tunnel.start(Echo()))
        await client.paths.build("exit", SHAPE)
        tunnel = await client.tunnels.open(server.apAddress)
        payload = os.urandom(3 * 1024 * 1024 + 17)
        collector = Collector(len(payload))
        tunnel.start(collector)
        tunnel.write(payload)
        echoed = await collector.arrived
        self.assertEqual(echoed, payload)
        self.assertEqual(len(accepted), 1)
        tunnel.loseConnection()
        await collector.ended
        await until(lambda: not server.tunnels.tunnels and all(not node.tunnels.carried for node in nodes))

    async def test_idleTunnelsExpire(self):
        """A tunnel nothing has passed through for the idle timeout is closed, at both ends."""
        clock = Clock()
        nodes = await startTunnelNetwork(self, 12, base=770, clocks={6: clock})
        client, server = nodes[1], nodes[6]
        await buildEntry(nodes, server)
        # The server's tunnel runs on the fake clock, so it only listens.
        received = Collector(5)
        server.tunnels.acceptor = lambda tunnel: tunnel.start(received)
        await client.paths.build("exit", SHAPE)
        collector = Collector()
        (await client.tunnels.open(server.apAddress)).start(collector)
        collector.transport.write(b"hello")
        self.assertEqual(await received.arrived, b"hello")
        server.tunnels.startService()
        self.addCleanup(server.tunnels.stopService)
        clock.advance(server.tunnels.idleTimeout - 1)
        self.assertEqual(len(server.tunnels.tunnels), 1)
        clock.advance(30)
        await collector.ended
        await until(lambda: not client.tunnels.tunnels and not server.tunnels.tunnels)
