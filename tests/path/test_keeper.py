"""The path keeper: entry and exit paths built at start and built again whenever one is missing."""

import random

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.path.interfaces import PathKind
from phantom.path.keeper import PathKeeper, fittingShape, tooSmallAdvice
from phantom.path.plan import PathShape
from tests.link.helpers import LogCollector
from tests.path.helpers import MemoryPathNetwork, PublishedRoutes


class FakePath:
    def __init__(self, kind):
        self.kind = kind
        self.phases = {"plan": 0.5}


class FakePaths:
    """A path service whose builds succeed or fail as the test says (C{results}, in order)."""

    def __init__(self, settings=PathSettings()):
        self.settings = settings
        self.paths = []
        self.replacing = {}
        self.results = []
        self.asked = []

    async def build(self, kind, shape=None):
        self.asked.append(kind)
        result = self.results.pop(0) if self.results else PathFailed("no path")
        if isinstance(result, Exception):
            raise result
        if isinstance(result, Deferred):
            result = await result
        path = FakePath(kind)
        self.paths.append(path)
        return path


class KeeperTests(SynchronousTestCase):
    def keeper(self, wanted, seen=40, ready=None, settings=PathSettings()):
        self.clock = Clock()
        self.paths = FakePaths(settings)
        keeper = PathKeeper(self.paths, wanted, self.clock, lambda: seen, random.Random(1), ready=ready)
        self.addCleanup(lambda: keeper.running and keeper.stopService())
        return keeper

    def test_builtAtStart(self):
        """At start, one build per path wanted, of each kind; none of a kind wanted 0 times."""
        keeper = self.keeper({PathKind.ENTRY: 2, PathKind.EXIT: 0})
        self.paths.results = [True, True]
        keeper.startService()
        self.assertEqual(self.paths.asked, [PathKind.ENTRY, PathKind.ENTRY])
        self.clock.advance(10)
        self.assertEqual(len(self.paths.asked), 2)
        self.assertEqual(keeper.states(), [{"kind": "entry", "wanted": 2, "built": 2, "building": 0, "failures": 0, "last_error": ""}])

    def test_waitsUntilReady(self):
        """Nothing is built before the node has joined the network."""
        joined = Deferred()
        keeper = self.keeper({PathKind.EXIT: 1}, ready=joined)
        self.paths.results = [True]
        keeper.startService()
        self.clock.advance(5)
        self.assertEqual(self.paths.asked, [])
        joined.callback(3)
        self.clock.advance(1)
        self.assertEqual(self.paths.asked, [PathKind.EXIT])

    def test_retriedWithGrowingDelay(self):
        """A failed build is tried again after a delay that doubles up to retryMax, and resets after a success."""
        keeper = self.keeper({PathKind.ENTRY: 1})
        keeper.startService()
        times = []
        self.paths.build = self.recording(self.paths.build, times)
        for _ in range(200):
            self.clock.advance(1)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertTrue(all(gap <= keeper.retryMax * 1.5 + 1 for gap in gaps), gaps)
        self.assertGreater(gaps[-1], gaps[0])
        self.assertLess(len(times), 20)
        [state] = keeper.states()
        self.assertEqual((state["built"], state["failures"], state["last_error"]), (0, len(times) + 1, "no path"))
        self.paths.results = [True]
        self.clock.advance(keeper.retryMax * 1.5 + 1)
        [state] = keeper.states()
        self.assertEqual((state["built"], state["failures"], state["last_error"]), (1, 0, ""))

    def test_retriedWhenTheNetworkGrows(self):
        """A build that failed is tried again soon after the node comes to see more nodes, whatever the delay."""
        seen = [3]
        self.clock = Clock()
        self.paths = FakePaths()
        keeper = PathKeeper(self.paths, {PathKind.ENTRY: 1}, self.clock, lambda: seen[0], random.Random(1), retryMax=60.0)
        keeper.retryMin = 1.0
        keeper.startService()
        self.addCleanup(keeper.stopService)
        for _ in range(120):
            self.clock.advance(1)
        tries = len(self.paths.asked)
        self.clock.advance(1)
        self.assertEqual(len(self.paths.asked), tries, "waiting out the delay")
        seen[0] = 4
        self.clock.advance(1)
        self.assertEqual(len(self.paths.asked), tries + 1)
        self.clock.advance(1)
        self.assertEqual(len(self.paths.asked), tries + 1, "no more growth: the delay again")

    def recording(self, build, times):
        def recorded(kind, shape=None):
            times.append(self.clock.seconds())
            return build(kind, shape)

        return recorded

    def test_lostPathRebuilt(self):
        """A path that is gone with no replacement being built is built again."""
        keeper = self.keeper({PathKind.EXIT: 1})
        self.paths.results = [True, True]
        keeper.startService()
        self.paths.paths.clear()
        self.paths.replacing[PathKind.EXIT] = Deferred()
        self.clock.advance(2)
        self.assertEqual(len(self.paths.asked), 1, "a replacement is on its way")
        del self.paths.replacing[PathKind.EXIT]
        self.clock.advance(1)
        self.assertEqual(len(self.paths.asked), 2)
        self.assertEqual(len(self.paths.paths), 1)

    def test_buildsInFlightCount(self):
        """A build under way counts: no second one is started for the same missing path."""
        keeper = self.keeper({PathKind.EXIT: 1})
        pending = Deferred()
        self.paths.results = [pending]
        keeper.startService()
        self.clock.advance(5)
        self.assertEqual(len(self.paths.asked), 1)
        self.assertEqual(keeper.states()[0]["building"], 1)
        pending.callback(None)
        self.assertEqual(keeper.states()[0]["built"], 1)

    def test_tooSmallToldOnce(self):
        """
        A network smaller than the shape is told once, after a few failures, with how many nodes
        the shape needs, how many the node sees, and what to set.
        """
        logs = LogCollector(self, "phantom.path.keeper")
        keeper = self.keeper({PathKind.ENTRY: 1, PathKind.EXIT: 1}, seen=11)
        keeper.startService()
        for _ in range(600):
            self.clock.advance(1)
        told = [line for line in logs.lines if "too small" in line]
        self.assertEqual(len(told), 1)
        self.assertEqual(
            told[0],
            "the network is too small for paths of 3 X- and 12 Y-nodes: they need 15 other nodes, and this node"
            " sees 11. Set a smaller shape in the config file's [path] section (x = 2, y = 4 needs 6), or on a"
            " network of two machines give --own-exit and --own-entry (not anonymous)",
        )

    def test_stopped(self):
        """A stopped keeper builds nothing more."""
        keeper = self.keeper({PathKind.EXIT: 1})
        keeper.startService()
        keeper.stopService()
        self.clock.advance(100)
        self.assertEqual(len(self.paths.asked), 1)


class ShapeTests(SynchronousTestCase):
    def test_fittingShape(self):
        """The default where it fits with a third spare; smaller shapes below; none under 5 other nodes."""
        self.assertEqual(fittingShape(4), None)
        self.assertEqual(fittingShape(5), PathShape(2, 3))
        self.assertEqual(fittingShape(7), PathShape(2, 3))
        self.assertEqual(fittingShape(11), PathShape(2, 4))
        self.assertEqual(fittingShape(19), PathShape(3, 7))
        self.assertEqual(fittingShape(30), PathShape(3, 12))
        for others in range(5, 60):
            shape = fittingShape(others)
            self.assertLessEqual(shape.size, others)

    def test_tinyNetwork(self):
        """Under 5 other nodes no shape fits: the advice is --own-exit and --own-entry."""
        self.assertIn("No path fits fewer than 5 other nodes, or on a network of two machines give --own-exit", tooSmallAdvice(PathShape(2, 3), 1))


class KeptOnNetworkTests(SynchronousTestCase):
    def test_entryPathPublishedAndRenewed(self):
        """
        On an in-memory network, the keeper builds an entry path at start; T publishes its routing
        entry; when the path's lifetime ends it is replaced and the new entry published.
        """
        network = MemoryPathNetwork(self, 10, PathSettings(roundTimeout=3.0, x=2, y=3, lifetime=60.0, renewAhead=10.0, coarseEntries=False))
        owner = network.nodes[0]
        published = PublishedRoutes([node.dht for node in network.nodes])
        keeper = PathKeeper(owner.paths, {PathKind.ENTRY: 1}, network.clock, lambda: 9, random.Random(2))
        keeper.startService()
        self.addCleanup(keeper.stopService)
        network.runFor(5)
        [path] = owner.paths.paths
        network.run(published.whenStored(path.apAddress))
        network.runFor(60)
        [renewed] = owner.paths.paths
        self.assertIsNot(renewed, path)
        self.assertTrue(path.gone)
        self.assertEqual(keeper.states()[0]["built"], 1)
