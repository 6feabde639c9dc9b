"""
Routing entries that do not date their path (issue 12, finding 2): their sequence is their expiry,
their expiry is coarse and jittered, their entry node publishes them at a moment the entry
decides, and their owner renews the path at a random moment. Before, an entry carried the
second of its build as its sequence and expiry and was published as the path came up.
"""

import random

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.netdb.records import RoutingEntry, routeKey
from phantom.path.entries import (
    GRID,
    EntryFloor,
    HORIZON,
    MARGIN,
    VALIDITY,
    coarseExpiry,
    publicationDelay,
    publicationWindow,
    renewalTime,
)
from phantom.path import service
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from phantom.path.relay import SetupParticipant
from phantom.path.service import PathService
from phantom.wire.dht import Table
from tests.link.helpers import LogCollector
from tests.path.helpers import MemoryPathNetwork

COARSE = PathSettings(roundTimeout=5.0)
SHAPE = PathShape(2, 3)


class ScheduleTests(SynchronousTestCase):
    """The times, sans-io."""

    @given(st.floats(min_value=1.7e9, max_value=1.9e9), st.integers(min_value=0))
    def test_expiryIsCoarse(self, now, seed):
        """
        The expiry is on the 10-minute grid, and the build times that could have given it span
        two grid cells: the expiry places the build in no interval under 1200 s.
        """
        expires = coarseExpiry(now, random.Random(seed))
        self.assertEqual(expires % GRID, 0)
        window = expires - GRID - VALIDITY
        self.assertGreaterEqual(window, now + MARGIN)
        self.assertLess(window, now + MARGIN + 2 * GRID)
        # Every build time in the two cells below the window can give this expiry, and no other.
        for earliest in (window - 2 * GRID - MARGIN + 1, window - MARGIN):
            self.assertIn(expires, {coarseExpiry(earliest, FixedChoice(choice)) for choice in (0, 1)})

    @given(st.integers(min_value=0), st.floats(min_value=0, max_value=HORIZON))
    def test_publicationInWindow(self, seed, early):
        """The entry node publishes within the window the expiry sets, whenever it got the entry."""
        expires = 1_800_000_000
        start, end = publicationWindow(expires)
        now = start - early
        delay = publicationDelay(expires, now, random.Random(seed))
        self.assertGreaterEqual(now + delay, start)
        self.assertLessEqual(now + delay, end)

    def test_publicationAtOnce(self):
        """An entry whose window is over, or opens beyond the horizon, is published at once."""
        now = 1_800_000_000
        self.assertEqual(publicationDelay(now + 600, now, random.Random(1)), 0)
        self.assertEqual(publicationDelay(now + 86400, now, random.Random(1)), 0)

    @given(st.floats(min_value=1.7e9, max_value=1.9e9), st.integers(min_value=0))
    def test_renewalBeforeExpiry(self, now, seed):
        """The successor's entry is out a full grid cell before its predecessor's expires."""
        rng = random.Random(seed)
        expires = coarseExpiry(now, rng)
        renewal = renewalTime(expires, rng)
        self.assertGreater(renewal, now + GRID / 2)
        successor = coarseExpiry(renewal, rng)
        self.assertLessEqual(publicationWindow(successor)[1], expires - GRID)


class FixedChoice(random.Random):
    """A random whose C{randint} always gives C{choice}."""

    def __init__(self, choice):
        super().__init__(0)
        self.choice = choice

    def randint(self, a, b):
        return self.choice


class ServiceTests(SynchronousTestCase):
    """Entry paths with coarse entries, built on an in-memory network."""

    def test_coarseEntryPublishedLater(self):
        """
        The entry's sequence is its expiry, on the grid; T publishes it in its window,
        not as the path comes up; a second entry supersedes the first.
        """
        network = MemoryPathNetwork(self, 12, COARSE)
        owner = network.nodes[0]
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        key = routeKey(path.apAddress)
        t = network.byId[path.plan.terminating.nodeId]
        network.settle()
        self.assertEqual(t.dht.stored, [])
        entry = t.paths.entryPathFor(path.apAddress)
        self.assertIsNotNone(entry)
        expires = entry.routingEntry.expires
        self.assertEqual((entry.routingEntry.sequence, expires % GRID), (expires, 0))
        start, end = publicationWindow(expires)
        network.runFor(start - network.clock.seconds() - 1)
        self.assertEqual(t.dht.stored, [])
        network.runFor(end - network.clock.seconds())
        self.assertEqual(t.dht.stored, [(Table.ROUTE, key)])
        second = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        network.settle()
        self.assertGreater(network.byId[second.plan.terminating.nodeId].paths.entryPathFor(path.apAddress).routingEntry.sequence, expires)

    def test_goneBeforeWindow(self):
        """A path taken down before its entry's window opens never has its entry published."""
        network = MemoryPathNetwork(self, 12, COARSE)
        owner = network.nodes[0]
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        t = network.byId[path.plan.terminating.nodeId]
        owner.paths.retire(path)
        network.runFor(HORIZON + GRID)
        self.assertEqual(t.dht.stored, [])

    def test_renewedAtRandomKeptUntilExpiry(self):
        """
        The owner builds the successor in the renewal window the expiry sets, and keeps the old
        path until its entry expires.
        """
        network = MemoryPathNetwork(self, 12, COARSE)
        owner = network.nodes[0]
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        expires = path.retireAt
        self.assertEqual(expires % GRID, 0)
        self.assertLessEqual(path.renewAt, expires - MARGIN - 3 * GRID)
        self.assertGreaterEqual(path.renewAt, expires - MARGIN - 4 * GRID)
        network.runFor(path.renewAt + 30 - network.clock.seconds())
        self.assertNotIn(path, owner.paths.paths)
        self.assertEqual(len(owner.paths.paths), 1)
        self.assertFalse(path.gone)
        network.run(path.whenGone())
        self.assertGreaterEqual(network.clock.seconds(), expires)

    def test_keptPathGoesWithTheService(self):
        """A path kept for its entry after its successor was built is closed when the service stops."""
        network = MemoryPathNetwork(self, 12, COARSE)
        owner = network.nodes[0]
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        network.runFor(path.renewAt + 30 - network.clock.seconds())
        self.assertFalse(path.gone)
        owner.paths.stopService()
        network.settle()
        self.assertTrue(path.gone)

    def test_exitRenewalJittered(self):
        """Exit paths are renewed at a random moment of the renew_ahead seconds before renew_ahead."""
        network = MemoryPathNetwork(self, 12, COARSE)
        owner = network.nodes[0]
        moments = set()
        for _ in range(4):
            path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.EXIT, SHAPE)))
            ahead = path.builtAt + COARSE.lifetime - path.renewAt
            self.assertGreaterEqual(ahead, COARSE.renewAhead)
            self.assertLessEqual(ahead, 2 * COARSE.renewAhead)
            moments.add(round(ahead, 3))
            owner.paths.retire(path)
        self.assertGreater(len(moments), 1)


class GivesUp(SetupParticipant):
    """A hostile node that fails every setup it takes part in, while C{hostile}."""

    hostile = True

    def frameReceived(self, payload):
        if self.hostile:
            self.giveUp("it fails what it sees")
        else:
            super().frameReceived(payload)


class FailedBuildTests(SynchronousTestCase):
    def test_failedBuildsLeaveNoTrace(self):
        """
        An x0 sees the owner's address, and is kept for the attempts after one that failed:
        it can fail a whole build. The owner's next entry tells nothing of it (its sequence is
        its expiry); were the sequence a count of entries made, the AP-address's next entry
        would skip one number per attempt, and show whoever watches the database which
        AP-address that address owns.
        """
        network = MemoryPathNetwork(self, 14, COARSE, participants={5: GivesUp})
        owner = network.nodes[0]
        owner.random.lead = [network.nodes[5].nodeId, network.nodes[7].nodeId]
        self.assertRaises(PathFailed, network.run, Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        self.patch(GivesUp, "hostile", False)
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))
        network.settle()
        entry = network.byId[path.plan.terminating.nodeId].paths.entryPathFor(path.apAddress).routingEntry
        self.assertEqual(entry.sequence, entry.expires)


class SignedEntryFloorTests(SynchronousTestCase):
    """
    An owner's entries outrank one another by sequence (their expiry), and the highest names
    the entry nodes lookups keep (L{phantom.netdb.records.RouteSet.of}). An entry signed for
    an attempt that failed can still be out: its T had it from round 2, and a hostile T
    publishes it. Were a later entry's sequence lower (its coarse expiry drew the earlier
    grid point), lookups would take the failed attempt's list for the newest and leave the
    path that was built out.
    """

    def test_retryNeverBelowAFailedAttempt(self):
        """A retry's entry is never below the failed attempt's: lookups keep the path that was built."""
        network = MemoryPathNetwork(self, 16, COARSE, participants={5: GivesUp})
        owner = network.nodes[0]
        # T of the failed attempt is not kept (as when it is found gone): the retry has another.
        owner.paths.keepEnds = 1
        signed = []
        create = RoutingEntry.create
        self.patch(RoutingEntry, "create", lambda *args: signed.append(create(*args)) or signed[-1])
        choices = [1, 0]
        self.patch(service, "coarseExpiry", lambda now, rng: coarseExpiry(now, FixedChoice(choices.pop(0) if choices else 0)))
        owner.random.lead = [network.nodes[7].nodeId, network.nodes[5].nodeId]
        candidates = [node.record for node in network.nodes[1:]]
        path = network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE, candidates)))
        owner.random.lead = None
        self.assertEqual(len(path.failures), 1)
        failed = signed[0]
        self.assertEqual(failed.entryNode, network.nodes[5].nodeId)
        self.assertNotEqual(path.plan.terminating.nodeId, failed.entryNode)
        [built] = signed[1:]
        self.assertEqual(built.entryNode, path.plan.terminating.nodeId)
        # The hostile T of the failed attempt publishes the entry it got, the path's T its own.
        for entry in (failed, built):
            network.database.store.put(Table.ROUTE, entry.key, entry.encoded)
        found = network.run(Deferred.fromCoroutine(owner.dht.findRecord(Table.ROUTE, failed.key)))
        self.assertIn(path.plan.terminating.nodeId, {node.nodeId for node in found.entryNodes})
        self.assertGreaterEqual(built.sequence, failed.sequence)


    def test_restartNeverBelow(self):
        """
        A restarted owner never signs an entry below one it signed before (the highest is kept
        in its data directory): the entries of its paths from before the restart, still out and
        naming nodes whose paths went with it, would hide the entry nodes of its new paths.
        """
        floorFile = self.mktemp()
        network = MemoryPathNetwork(self, 16, COARSE)
        owner = network.nodes[0]
        choices = [1, 0]
        self.patch(service, "coarseExpiry", lambda now, rng: coarseExpiry(now, FixedChoice(choices.pop(0) if choices else 0)))

        def start():
            owner.paths.stopService()
            owner.paths = PathService(
                owner.identity, owner.links, owner.dht, network.clock, COARSE, owner.random, entryFloor=EntryFloor(floorFile)
            )
            owner.paths.startService()
            return network.run(Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)))

        before = start()
        after = start()
        self.assertGreaterEqual(after.retireAt, before.retireAt)
        self.assertEqual(EntryFloor(floorFile).highest, after.retireAt)


class EntryFloorTests(SynchronousTestCase):
    """The highest sequence signed, kept in a file."""

    @given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=8))
    def test_neverLower(self, sequences):
        """Whatever comes, what is handed out never goes down, and a new floor on the file starts where the last one stopped."""
        floorFile = self.mktemp()
        floor = EntryFloor(floorFile)
        handed = [floor.raiseTo(sequence) for sequence in sequences]
        self.assertEqual(handed, sorted(handed))
        self.assertTrue(all(out >= sequence for out, sequence in zip(handed, sequences)))
        self.assertEqual(EntryFloor(floorFile).highest, max(handed, default=0))

    def test_badFile(self):
        """A file that holds no number is logged and taken as none; the next entry writes it anew."""
        floorFile = self.mktemp()
        with open(floorFile, "wb") as f:
            f.write(b"\x00garbage\n")
        logs = LogCollector(self, "phantom.path")
        floor = EntryFloor(floorFile)
        self.assertEqual(floor.highest, 0)
        [line] = logs.lines
        self.assertIn("holds no entry sequence", line)
        self.assertEqual(floor.raiseTo(1_800_003_600), 1_800_003_600)
        self.assertEqual(EntryFloor(floorFile).highest, 1_800_003_600)


class RemovedEntryNodeTests(SynchronousTestCase):
    """
    An entry path that goes takes its entry node out of lookups of the AP-address (issue 13):
    its successor's entry names the owner's entry nodes without it. Before, the lost path's
    entry stayed until it expired, and lookups kept naming a dead entry node.
    """

    def twoEntryPaths(self, settings):
        network = MemoryPathNetwork(self, 16, settings)
        owner = network.nodes[0]
        lost = network.buildPath(owner, PathKind.ENTRY, network.nodes[1:3])
        kept = network.buildPath(owner, PathKind.ENTRY, network.nodes[3:5])
        return network, owner, lost, kept

    def entryNodes(self, network, owner, apAddress):
        found = network.run(Deferred.fromCoroutine(owner.dht.findRecord(Table.ROUTE, routeKey(apAddress))))
        return {node.nodeId for node in found.entryNodes}

    def lose(self, network, owner, path):
        """T of C{path} dies; its owner builds the path's successor."""
        t = network.byId[path.plan.terminating.nodeId]
        t.paths.stopService()
        network.links.disconnect(t.links)
        network.database.offline.add(t.nodeId)
        network.run(path.whenGone())
        network.run(owner.paths.replacing[PathKind.ENTRY])
        return t

    def test_removedOnceReplaced(self):
        """Entries published at once: the successor's entry, out as soon as it is built, drops the lost entry node."""
        network, owner, lost, kept = self.twoEntryPaths(PathSettings(roundTimeout=5.0, coarseEntries=False))
        network.settle()
        ap = lost.apAddress
        self.assertEqual(self.entryNodes(network, owner, ap), {lost.plan.terminating.nodeId, kept.plan.terminating.nodeId})
        t = self.lose(network, owner, lost)
        network.settle()
        [successor] = [path for path in owner.paths.paths if path is not kept]
        self.assertEqual(self.entryNodes(network, owner, ap), {successor.plan.terminating.nodeId, kept.plan.terminating.nodeId})
        self.assertNotIn(t.nodeId, self.entryNodes(network, owner, ap))

    def test_removedWithinTheSuccessorsWindow(self):
        """
        Coarse entries: the lost entry node leaves lookups when the successor's entry is
        published, in its window (at most MARGIN + 3 GRID after the successor's build), well
        before the lost entry expires.
        """
        network, owner, lost, kept = self.twoEntryPaths(COARSE)
        network.runFor(HORIZON + GRID)
        ap = lost.apAddress
        self.assertEqual(self.entryNodes(network, owner, ap), {lost.plan.terminating.nodeId, kept.plan.terminating.nodeId})
        t = self.lose(network, owner, lost)
        lostExpires = lost.retireAt
        network.runFor(MARGIN + 3 * GRID)
        self.assertLess(network.clock.seconds(), lostExpires)
        nodes = self.entryNodes(network, owner, ap)
        self.assertNotIn(t.nodeId, nodes)
        # The other path may have been renewed meanwhile: the entry nodes are those of paths that are up.
        up = {path.plan.terminating.nodeId for path in owner.paths.paths + [kept] if not path.gone}
        self.assertTrue(nodes)
        self.assertLessEqual(nodes, up)

    def test_concurrentBuildsNameEachOther(self):
        """Two entry paths built at once name each other's T: neither entry makes the other stale."""
        network = MemoryPathNetwork(self, 16, PathSettings(roundTimeout=5.0, coarseEntries=False))
        owner = network.nodes[0]
        builds = [Deferred.fromCoroutine(owner.paths.build(PathKind.ENTRY, SHAPE)) for _ in range(2)]
        paths = [network.run(d) for d in builds]
        network.settle()
        self.assertEqual(self.entryNodes(network, owner, paths[0].apAddress), {path.plan.terminating.nodeId for path in paths})

    def test_neverOlderThanASibling(self):
        """
        The sequence of an owner's new entry (its expiry) is never below that of another of its
        entry paths: were it, lookups would take the sibling's list of entry nodes, which does
        not name the new path's node, for the newest, and leave the new path out.
        """
        network = MemoryPathNetwork(self, 16, COARSE)
        owner = network.nodes[0]
        sibling = network.buildPath(owner, PathKind.ENTRY, network.nodes[1:3])
        sibling.retireAt = coarseExpiry(network.clock.seconds(), random.Random(0)) + 4 * GRID
        path = network.buildPath(owner, PathKind.ENTRY, network.nodes[3:5])
        entry = network.byId[path.plan.terminating.nodeId].paths.entryPathFor(path.apAddress).routingEntry
        self.assertEqual(entry.sequence, sibling.retireAt)

