"""Paths that lose a hop or reach the end of their lifetime are replaced; overloaded nodes refuse."""

from twisted.trial.unittest import TestCase

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.path.plan import PathShape
from tests.link.helpers import until
from tests.path.test_service import startPathNetwork

SHAPE = PathShape(2, 3)


class RenewalTests(TestCase):
    timeout = 120

    async def test_deadHopReplaced(self):
        """
        When an X-node dies, its neighbours tear the path down hop by hop; the owner notices and
        builds a replacement without it.
        """
        nodes = await startPathNetwork(self, 14, 760, PathSettings(roundTimeout=3.0))
        owner = nodes[2]
        path = await owner.paths.build("exit", SHAPE)
        everyone = {node.nodeId: node for node in nodes}
        victim = everyone[path.plan.terminating.nodeId]
        await until(lambda: victim.paths.relaying)
        victim.paths.stopService()
        await victim.links.stopService()
        await until(lambda: owner.paths.paths and owner.paths.paths[0] is not path, timeout=30)
        replacement = owner.paths.paths[0]
        self.assertFalse(path.link in owner.links.links)
        self.assertEqual(len(replacement.nodes), 2)
        self.assertNotIn(victim.nodeId, {hop.record.nodeId for hop in replacement.plan.circle})

    async def test_lifetimeRenewal(self):
        """A path is replaced before its lifetime ends, and the old one is closed."""
        nodes = await startPathNetwork(self, 12, 790, PathSettings(roundTimeout=3.0, lifetime=4.0, renewAhead=2.0))
        owner = nodes[1]
        path = await owner.paths.build("exit", SHAPE)
        await until(lambda: owner.paths.paths and owner.paths.paths[0] is not path, timeout=30)
        await until(lambda: path.link not in owner.links.links)

    async def test_overloadedNodesRefuse(self):
        """Nodes at their participation limit refuse new setups: no path can be built."""
        nodes = await startPathNetwork(self, 10, 820, PathSettings(roundTimeout=1.0, attempts=2, maxParticipations=0))
        with self.assertRaises(PathFailed):
            await nodes[0].paths.build("exit", SHAPE)
