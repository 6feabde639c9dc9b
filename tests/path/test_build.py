"""Paths built, used and taken down by path services on an in-memory network and a driven clock."""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.netdb.records import routeKey
from phantom.path.interfaces import IPathFrameReceiver, PathKind, Side
from phantom.path.plan import PathShape
from phantom.wire.dht import Table
from phantom.wire.link import Purpose
from tests.link.helpers import LogCollector
from tests.path.helpers import MemoryPathNetwork


def build(network, owner, kind=PathKind.EXIT, shape=PathShape(3, 12), candidates=None):
    return network.run(Deferred.fromCoroutine(owner.paths.build(kind, shape, candidates)))


def silent(link, context):
    """A participant that takes the SETUP link and never answers."""
    return Silent()


class Silent:
    def frameReceived(self, payload):
        pass

    def linkClosed(self, reason):
        pass


@implementer(IPathFrameReceiver)
class Frames:
    """Keeps the frames that reach a node's paths."""

    def __init__(self):
        self.received = []

    def pathFrameReceived(self, path, side, payload):
        self.received.append((path, side, payload))


class BuildTests(SynchronousTestCase):
    def test_exitPath(self):
        """An exit path of 3 X- and 12 Y-nodes is built; every X has its place, no Y remembers it."""
        network = MemoryPathNetwork(self, 20)
        owner = network.nodes[5]
        path = build(network, owner)
        self.assertEqual((path.kind, path.shape, path.failures, path.keyCount), (PathKind.EXIT, PathShape(3, 12), [], 16))
        self.assertEqual(set(path.phases), {"plan", "round1", "round2", "link"})
        self.assertEqual(len(path.nodes), 3)
        self.assertIn(path, owner.paths.paths)
        self.assertIn(path.link, owner.links.links)
        self.assertEqual(path.link.nodeId, path.plan.adjacent.nodeId)
        self.assertEqual(set(path.keySeeds), {record.nodeId for record in path.nodes})
        network.settle()
        everyone = network.byId
        for record in path.nodes:
            [relayed] = everyone[record.nodeId].paths.relaying.values()
            self.assertEqual(relayed.keySeed, path.keySeeds[record.nodeId])
            self.assertEqual(relayed.keyCount, 16)
            self.assertEqual(relayed.terminating, record.nodeId == path.plan.terminating.nodeId)
            for side in relayed.sides():
                self.assertIsNotNone(relayed.links[side])
        t = everyone[path.plan.terminating.nodeId]
        [relayed] = t.paths.relaying.values()
        self.assertEqual(len(relayed.sides()), 1)
        for record in path.plan.yNodes:
            self.assertEqual(everyone[record.nodeId].paths.relaying, {})
        self.assertEqual([node.paths.helping for node in network.nodes], [0] * 20)
        pathLinks = {link.peer.host for link in t.links.links if link.purpose in (Purpose.SETUP, Purpose.PATH)}
        self.assertTrue(pathLinks)
        self.assertNotIn(owner.address[0], pathLinks)
        self.assertFalse(t.paths.isEntryNode)

    def test_entryPath(self):
        """An entry path's T publishes the routing entry naming it, and is its entry node."""
        network = MemoryPathNetwork(self, 20)
        owner = network.nodes[3]
        path = build(network, owner, PathKind.ENTRY)
        network.settle()
        record = network.run(Deferred.fromCoroutine(network.nodes[17].dht.findRecord(Table.ROUTE, routeKey(path.apAddress))))
        self.assertEqual([node.nodeId for node in record.entryNodes], [path.plan.terminating.nodeId])
        t = network.byId[path.plan.terminating.nodeId]
        self.assertEqual(t.dht.stored, [(Table.ROUTE, routeKey(path.apAddress))])
        self.assertTrue(t.paths.isEntryNode)
        relayed = t.paths.entryPathFor(path.apAddress)
        self.assertIsNotNone(relayed)
        self.assertTrue(relayed.terminating)
        self.assertIsNone(t.paths.entryPathFor(bytes(16)))
        for record in path.nodes[:-1]:
            self.assertFalse(network.byId[record.nodeId].paths.isEntryNode)

    def test_bothDirections(self):
        """Over builds in both directions of the circle, the owner connects to x0 or x0 to it."""
        network = MemoryPathNetwork(self, 12)
        owner = network.nodes[0]
        directions = set()
        for _ in range(12):
            path = build(network, owner, shape=PathShape(2, 3))
            directions.add(path.plan.reversed)
            self.assertEqual(path.link.inbound, path.plan.reversed)
            owner.paths.retire(path)
        self.assertEqual(directions, {False, True})

    def test_retire(self):
        """A retired path is forgotten by the owner, then by its hops one after the other."""
        network = MemoryPathNetwork(self, 12)
        owner = network.nodes[0]
        path = build(network, owner, shape=PathShape(2, 3))
        gone = []
        path.onGone(lambda: gone.append(True))
        hops = [network.byId[record.nodeId] for record in path.nodes]
        network.settle()
        relayed = [next(iter(hop.paths.relaying.values())) for hop in hops]
        owner.paths.retire(path)
        network.settle()
        self.assertEqual((owner.paths.paths, gone), ([], [True]))
        self.assertTrue(all(r.gone for r in relayed))
        self.assertEqual([hop.paths.relaying for hop in hops], [{}, {}])
        self.assertEqual(owner.paths.replacing, {})

    def test_silentNodeTimesOut(self):
        """
        A node that never answers costs its attempt a timeout; the retry without it succeeds
        (were the silent node an end, it would be kept for a few attempts: the old rule here).
        """
        network = MemoryPathNetwork(self, 12, PathSettings(roundTimeout=2.0), participants={4: silent})
        owner = network.nodes[0]
        owner.paths.keepEnds = 1
        candidates = [node.record for node in network.nodes[4:9]]
        started = network.clock.seconds()
        path = build(network, owner, shape=PathShape(2, 3), candidates=candidates)
        [why] = path.failures
        self.assertIn("Timeout", why)
        self.assertNotIn(network.nodes[4].nodeId, {hop.record.nodeId for hop in path.plan.circle})
        self.assertGreaterEqual(network.clock.seconds() - started, 2.0)

    def test_allAttemptsFail(self):
        """When every attempt fails, the build fails naming why each did."""
        network = MemoryPathNetwork(self, 4, PathSettings(attempts=2))
        with self.assertRaises(PathFailed) as caught:
            build(network, network.nodes[0], shape=PathShape(2, 3))
        self.assertIn("no exit path after 2 attempts", str(caught.exception))
        self.assertIn("distinct nodes", str(caught.exception))

    def test_buildFinishedWatchers(self):
        """Whoever watches builds end hears of each: its kind, whether it built a path, how long it took."""
        network = MemoryPathNetwork(self, 20, PathSettings(attempts=2))
        owner = network.nodes[5]
        finished = []
        owner.paths.onBuildFinished(lambda *ended: finished.append(ended))
        started = network.clock.seconds()
        path = build(network, owner)
        self.assertEqual(finished, [(PathKind.EXIT, True, network.clock.seconds() - started)])
        self.assertEqual(finished[0][2], sum(path.phases.values()))
        with self.assertRaises(PathFailed):
            build(network, owner, kind=PathKind.ENTRY, shape=PathShape(3, 30))
        self.assertEqual(finished[1][:2], (PathKind.ENTRY, False))

    def test_framesGoToTheReceiver(self):
        """Frames on an owned path's link and a relayed path's links reach the frame receiver."""
        receivers = {index: Frames() for index in range(12)}
        network = MemoryPathNetwork(self, 12, frameReceivers=receivers)
        owner = network.nodes[0]
        path = build(network, owner, shape=PathShape(2, 3))
        network.settle()
        x0 = network.byId[path.plan.adjacent.nodeId]
        path.link.sendFrame(b"hello")
        network.settle()
        [(relayed, side, payload)] = receivers[network.nodes.index(x0)].received
        # Sides are named as the setup arrays travelled: on a reversed circle x0 opened the
        # link to the owner, its new next.
        self.assertEqual((side, payload), (Side.NEXT if path.plan.reversed else Side.PREVIOUS, b"hello"))
        self.assertIs(relayed, next(iter(x0.paths.relaying.values())))
        relayed.links[side].sendFrame(b"back")
        network.settle()
        self.assertEqual(receivers[0].received, [(path, None, b"back")])

    def test_frameWithoutReceiverClosesPath(self):
        """With no frame receiver, a frame on a PATH link closes the path: a warning, and gone."""
        network = MemoryPathNetwork(self, 12)
        owner = network.nodes[0]
        path = build(network, owner, shape=PathShape(2, 3))
        network.settle()
        path.link.sendFrame(b"hello")
        network.settle()
        self.assertTrue(path.gone)
        self.assertEqual([network.byId[record.nodeId].paths.relaying for record in path.nodes], [{}, {}])

    def test_exitPathBuildsOnceAndReuses(self):
        """exitPath builds one path for callers that ask together, then hands that one out."""
        network = MemoryPathNetwork(self, 20)
        owner = network.nodes[0]
        first, second = owner.paths.exitPath(), owner.paths.exitPath()
        path = network.run(first)
        self.assertIs(network.run(second), path)
        self.assertEqual(owner.paths.paths, [path])
        self.assertIs(network.run(owner.paths.exitPath()), path)

    def test_exitPathWaitsForReplacement(self):
        """With its exit path lost and a replacement under way, exitPath hands out the replacement."""
        network = MemoryPathNetwork(self, 20)
        owner = network.nodes[0]
        path = network.run(owner.paths.exitPath())
        x0 = network.byId[path.plan.adjacent.nodeId]
        network.settle()
        next(iter(x0.paths.relaying.values())).close()
        network.settle()
        self.assertTrue(path.gone)
        replacement = network.run(owner.paths.exitPath())
        self.assertIsNot(replacement, path)
        self.assertEqual(owner.paths.paths, [replacement])

    def test_stopping(self):
        """A stopping service closes its paths, tears down the ones it relays and leaves setups."""
        network = MemoryPathNetwork(self, 12)
        owner = network.nodes[0]
        path = build(network, owner, shape=PathShape(2, 3))
        network.settle()
        x0 = network.byId[path.plan.adjacent.nodeId]
        x0.paths.stopService()
        network.settle()
        self.assertEqual(x0.paths.relaying, {})
        self.assertTrue(path.gone)


class DiversityTests(SynchronousTestCase):
    """
    The X-node diversity rule never relaxes silently (issue 12, finding 5): it holds by
    default; a network on one /16 needs it off in the configuration; a build without it says why.
    Before, the default C{auto} relaxed it by itself.
    """

    def test_onByDefault(self):
        """The default is on: with every candidate in one /16 no path is built, and the error says why."""
        self.assertEqual(PathSettings().diversity, "on")
        network = MemoryPathNetwork(self, 12, PathSettings(roundTimeout=2.0, attempts=1), oneNetwork=True)
        with self.assertRaises(PathFailed) as caught:
            network.run(Deferred.fromCoroutine(network.nodes[0].paths.build(PathKind.EXIT, PathShape(2, 3))))
        self.assertIn("distinct networks", str(caught.exception))

    def test_relaxedSaysWhy(self):
        """Off or auto, a build without the rule logs that it is one, and why."""
        for diversity, level, why in (("off", "info", "diversity = off"), ("auto", "warn", "diversity = auto")):
            network = MemoryPathNetwork(self, 12, PathSettings(roundTimeout=2.0, diversity=diversity), oneNetwork=True)
            logs = LogCollector(self, "phantom.path")
            network.run(Deferred.fromCoroutine(network.nodes[0].paths.build(PathKind.EXIT, PathShape(2, 3))))
            said = [line for name, line in logs.events if name == level and "without the X-node diversity rule" in line]
            self.assertTrue(said, logs.events)
            self.assertIn(why, said[0])

