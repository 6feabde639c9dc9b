"""Paths that lose a hop or reach the end of their lifetime are replaced; overloaded nodes refuse."""

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from tests.path.helpers import MemoryPathNetwork

SHAPE = PathShape(2, 3)


def build(network, owner, kind="exit", shape=SHAPE):
    return network.run(Deferred.fromCoroutine(owner.paths.build(kind, shape)))


class RenewalTests(SynchronousTestCase):
    def test_deadHopReplaced(self):
        """
        When an X-node dies, its neighbours tear the path down hop by hop; the owner notices and
        builds a replacement without it.
        """
        network = MemoryPathNetwork(self, 14, PathSettings(roundTimeout=3.0))
        owner = network.nodes[2]
        path = build(network, owner)
        victim = network.byId[path.plan.terminating.nodeId]
        network.settle()
        self.assertTrue(victim.paths.relaying)
        victim.paths.stopService()
        network.links.disconnect(victim.links)
        network.run(path.whenGone())
        network.run(owner.paths.replacing.get(PathKind.EXIT, succeed(None)))  # if it is still being built
        [replacement] = owner.paths.paths
        self.assertTrue(path.gone)
        self.assertNotIn(path.link, owner.links.links)
        self.assertEqual(len(replacement.nodes), 2)
        self.assertNotIn(victim.nodeId, {hop.record.nodeId for hop in replacement.plan.circle})
        for record in path.nodes:
            self.assertFalse([r for r in network.byId[record.nodeId].paths.relaying.values() if r.keySeed in path.keySeeds.values()])

    def test_lifetimeRenewal(self):
        """
        A path is replaced before its lifetime ends, at a random moment between renew_ahead and
        twice that before, and the old one is closed.
        """
        network = MemoryPathNetwork(self, 12, PathSettings(roundTimeout=3.0, lifetime=4.0, renewAhead=2.0))
        owner = network.nodes[1]
        path = build(network, owner)
        self.assertGreaterEqual(path.renewAt - path.builtAt, 4.0 - 2 * 2.0)
        self.assertLessEqual(path.renewAt - path.builtAt, 4.0 - 2.0)
        network.run(path.whenGone())  # once its replacement is built
        self.assertTrue(owner.paths.paths and owner.paths.paths[0] is not path)
        self.assertGreaterEqual(network.clock.seconds(), path.renewAt)
        self.assertLess(network.clock.seconds() - path.builtAt, 4.0)
        network.settle()
        self.assertNotIn(path.link, owner.links.links)
        self.assertTrue(path.gone)

    def test_replacedPathHeld(self):
        """
        A replaced path is kept open, no longer handed out, while a hold on it is not released
        (its tunnels finishing), and closed once it is; or after another lifetime at most.
        """
        network = MemoryPathNetwork(self, 12, PathSettings(roundTimeout=3.0, lifetime=8.0, renewAhead=2.0))
        owner = network.nodes[1]
        holds = []
        owner.paths.holdReplaced(lambda path: holds.append(Deferred()) or holds[-1])
        path = build(network, owner)
        network.runFor(6.5)  # renewed between 4 and 6 s, its successor only from 8 s on
        self.assertEqual(len(holds), 1)
        self.assertFalse(path.gone)
        self.assertEqual([held is path for held in owner.paths.draining], [True])
        self.assertFalse(any(built is path for built in owner.paths.paths))
        holds[0].callback(None)
        network.settle()
        self.assertTrue(path.gone)
        self.assertEqual(owner.paths.draining, [])
        [second] = owner.paths.paths
        network.runFor(6.0)
        self.assertTrue(any(held is second for held in owner.paths.draining))
        self.assertFalse(second.gone)
        network.runFor(8.0)
        self.assertTrue(second.gone)
        self.assertFalse(any(held is second for held in owner.paths.draining))

    def test_overloadedNodesRefuse(self):
        """Nodes at their participation limit refuse new setups: no path can be built."""
        network = MemoryPathNetwork(self, 10, PathSettings(roundTimeout=1.0, attempts=2, maxParticipations=0))
        with self.assertRaises(PathFailed) as caught:
            build(network, network.nodes[0])
        self.assertIn("gave up", str(caught.exception))
