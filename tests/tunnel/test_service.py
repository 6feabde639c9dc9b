"""
A tunnel across an exit path and an entry path of an in-process network, over real links and
real TLS (the rest of the tunnels' behaviour is tested on an in-memory network, in test_network).
"""

import os
from phantom.path.interfaces import PathKind

from twisted.trial.unittest import TestCase

from tests.tunnel.helpers import SHAPE, Collector, Echo, buildEntry, startTunnelNetwork, untilClean


class TunnelTests(TestCase):
    timeout = 180

    async def test_echoAcrossSixHops(self):
        """Bytes sent into a tunnel come back from an echo at the entry path's owner, intact."""
        nodes = await startTunnelNetwork(self, 16, base=760)
        client, server = nodes[2], nodes[9]
        await buildEntry(nodes, server)
        accepted = []
        server.tunnels.listen(lambda tunnel: (accepted.append(tunnel), tunnel.start(Echo())))
        await client.paths.build(PathKind.EXIT, SHAPE)
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
        await untilClean(nodes)
