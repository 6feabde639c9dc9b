"""Tests of the sans-io Kademlia routing table."""

import random

from hypothesis import given, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.netdb import ID_BITS
from phantom.netdb.routing import QUESTIONABLE_AFTER, RoutingTable, distance, idAsInt

OWN = bytes(range(32))
OWN_NUMBER = idAsInt(OWN)


def asId(number):
    return number.to_bytes(32, "big")


def contactFor(number, host="10.0.0.1", port=7402):
    return Contact(host, port, asId(number))


def sharedPrefix(nodeId, other=OWN):
    """The bucket index by definition: how many leading bits two ids share."""
    bits = f"{idAsInt(nodeId):0256b}", f"{idAsInt(other):0256b}"
    return next((i for i, (a, b) in enumerate(zip(*bits)) if a != b), ID_BITS)


def inBucket(index, low=0):
    """An id sharing exactly C{index} leading bits with L{OWN}; C{low} sets its last bits."""
    free = ID_BITS - 1 - index
    return (OWN_NUMBER ^ (1 << free)) >> free << free | low % (1 << free)


def tableWith(numbers, clock=None, **kwargs):
    table = RoutingTable(OWN, clock or Clock(), random.Random(1), **kwargs)
    for number in numbers:
        table.seen(contactFor(number))
    return table


def ids(table):
    return [idAsInt(contact.nodeId) for contact in table]


# Ids near ours fill the near buckets, which uniformly random ids almost never reach.
nodeNumbers = st.builds(
    lambda shift, low: OWN_NUMBER ^ (low >> shift),
    st.integers(0, ID_BITS - 1),
    st.integers(1, 2**ID_BITS - 1),
).filter(lambda number: number != OWN_NUMBER)
targets = st.one_of(nodeNumbers, st.just(OWN_NUMBER), st.integers(0, 2**ID_BITS - 1))


class ClosestTests(SynchronousTestCase):
    """C{closest} is exactly a sort of the known contacts by XOR distance."""

    @given(
        st.lists(nodeNumbers, max_size=120),
        targets,
        st.integers(0, 40),
        st.integers(1, 8),
        st.data(),
    )
    def test_matchesBruteForce(self, numbers, target, count, k, data):
        """The C{count} known contacts closest to any target, closest first, excluded ones left out."""
        table = tableWith(numbers, k=k)
        known = list(table)
        excluded = data.draw(st.sets(st.sampled_from([c.nodeId for c in known]))) if known else set()
        expected = sorted(
            (c for c in known if c.nodeId not in excluded),
            key=lambda c: distance(c.nodeId, asId(target)),
        )[:count]
        self.assertEqual(table.closest(asId(target), count, exclude=excluded), expected)
        measured = table.closestMeasured(asId(target), count, exclude=excluded)
        self.assertEqual(measured, [(distance(c.nodeId, asId(target)), c) for c in expected])

    @given(st.lists(nodeNumbers, max_size=120), targets, st.integers(0, 40), st.integers(1, 8))
    def test_withReplacementsMatchesBruteForce(self, numbers, target, count, k):
        """
        Counting replacements, the C{count} closest of every contact seen (a cache large
        enough to keep every one), closest first.
        """
        table = tableWith(numbers, k=k, replacementSize=len(numbers) + 1)
        seen = {asId(number) for number in numbers}
        expected = sorted(seen, key=lambda nodeId: distance(nodeId, asId(target)))[:count]
        found = table.closest(asId(target), count, replacements=True)
        self.assertEqual([contact.nodeId for contact in found], expected)
        measured = table.closestMeasured(asId(target), count, replacements=True)
        self.assertEqual(measured, [(distance(c.nodeId, asId(target)), c) for c in found])

    def test_defaultCountIsK(self):
        """Without a count, C{closest} returns k contacts."""
        table = tableWith(inBucket(index) for index in range(30))
        self.assertEqual(len(table.closest(OWN)), 20)

    def test_badTarget(self):
        """A target that is not 32 bytes is refused."""
        self.assertRaises(ValueError, tableWith([]).closest, b"\x00" * 31)


class ReplacementsInClosestTests(SynchronousTestCase):
    """Lookups may start from replacements too."""

    def test_replacementsCountWhenAsked(self):
        """A full bucket's replacement is among the closest only when replacements are asked for."""
        a, b = inBucket(0, 1), inBucket(0, 2)
        table = tableWith([a, b], k=1)
        self.assertEqual(ids(table), [a])
        self.assertEqual([idAsInt(c.nodeId) for c in table.closest(asId(b), 2)], [a])
        self.assertEqual({idAsInt(c.nodeId) for c in table.closest(asId(b), 2, replacements=True)}, {a, b})
        self.assertEqual([idAsInt(c.nodeId) for c in table.closest(asId(b), 1, replacements=True)], [b])


class PlacementTests(SynchronousTestCase):
    """Contacts go to the bucket of their shared prefix with our id; ours and malformed ones never."""

    @given(st.lists(nodeNumbers, max_size=40, unique=True))
    def test_bucketIsSharedPrefix(self, numbers):
        """Each bucket of the summary holds the contacts whose id shares its index's prefix with ours."""
        table = tableWith(numbers, k=1000)
        counts = {}
        for number in numbers:
            index = sharedPrefix(asId(number))
            counts[index] = counts.get(index, 0) + 1
        self.assertEqual({row["index"]: row["size"] for row in table.summary()}, counts)
        self.assertEqual(len(table), len(numbers))

    def test_extremeBuckets(self):
        """The id differing in the first bit goes to bucket 0, the one differing in the last to 255."""
        table = tableWith([OWN_NUMBER ^ (1 << 255), OWN_NUMBER ^ 1])
        self.assertEqual([row["index"] for row in table.summary()], [0, 255])

    def test_ownIdNeverStored(self):
        """Our own id is ignored when seen or failed, and never returned."""
        table = tableWith([])
        self.assertIsNone(table.seen(Contact("10.0.0.9", 1, OWN)))
        table.failed(Contact("10.0.0.9", 1, OWN))
        self.assertEqual((len(table), table.closest(OWN)), (0, []))

    def test_malformedIdRefused(self):
        """Contacts without a 32-byte node id, and a malformed own id, raise ValueError."""
        table = tableWith([])
        for nodeId in (None, b"", b"\x01" * 31, b"\x01" * 33, "ab" * 32):
            self.assertRaises(ValueError, table.seen, Contact("10.0.0.1", 1, nodeId))
            self.assertRaises(ValueError, table.failed, Contact("10.0.0.1", 1, nodeId))
        self.assertRaises(ValueError, RoutingTable, b"\x00" * 31, Clock())
        self.assertEqual(len(table), 0)

    def test_addressChange(self):
        """A known id seen at a new address replaces the old entry, in place of a second one."""
        table = tableWith([inBucket(3)])
        moved = contactFor(inBucket(3), host="192.0.2.7", port=9000)
        self.assertIsNone(table.seen(moved))
        self.assertEqual(list(table), [moved])
        self.assertEqual(table.closest(moved.nodeId), [moved])

    def test_replacementAddressChange(self):
        """A replacement seen at a new address is promoted with the new address."""
        table = tableWith([inBucket(0, 1), inBucket(0, 2)], k=1, questionableAfter=0)
        moved = contactFor(inBucket(0, 2), host="192.0.2.7")
        table.seen(moved)
        table.failed(contactFor(inBucket(0, 1)))
        self.assertEqual(list(table), [moved])


class EvictionTests(SynchronousTestCase):
    """Least-recently-seen eviction: a full bucket pings its oldest contact before replacing it."""

    def setUp(self):
        self.a, self.b, self.c, self.d, self.e, self.f = (inBucket(0, low) for low in range(1, 7))
        self.clock = Clock()
        self.table = tableWith([self.a, self.b, self.c], clock=self.clock, k=3)
        self.clock.advance(QUESTIONABLE_AFTER)

    def replacements(self):
        [row] = self.table.summary()
        return row["replacements"]

    def test_seenAgainMovesToTail(self):
        """A contact seen again becomes the most recently seen."""
        self.table.seen(contactFor(self.a))
        self.assertEqual(ids(self.table), [self.b, self.c, self.a])

    def test_fullBucketAsksForPing(self):
        """A newcomer for a full bucket is kept as a replacement; the oldest contact is to be pinged."""
        self.assertEqual(self.table.seen(contactFor(self.d)), contactFor(self.a))
        self.assertEqual((ids(self.table), self.replacements()), ([self.a, self.b, self.c], 1))

    def test_freshOldestNotPinged(self):
        """A full bucket whose oldest contact was heard from lately asks for no ping."""
        self.table.seen(contactFor(self.a))
        self.table.seen(contactFor(self.b))
        self.table.seen(contactFor(self.c))
        self.assertIsNone(self.table.seen(contactFor(self.d)))
        self.assertEqual((ids(self.table), self.replacements()), ([self.a, self.b, self.c], 1))
        self.clock.advance(QUESTIONABLE_AFTER)
        self.assertEqual(self.table.seen(contactFor(self.e)), contactFor(self.a))

    def test_onePingAtATime(self):
        """While a ping is pending, further newcomers become replacements without another ping."""
        self.table.seen(contactFor(self.d))
        self.assertIsNone(self.table.seen(contactFor(self.e)))
        self.assertEqual(self.replacements(), 2)

    def test_oldestAnswers(self):
        """
        An oldest contact that answers moves to the tail and stays; the newcomer stays a
        replacement; the next newcomer asks for the next oldest to be pinged.
        """
        self.table.seen(contactFor(self.d))
        self.assertIsNone(self.table.seen(contactFor(self.a)))
        self.assertEqual((ids(self.table), self.replacements()), ([self.b, self.c, self.a], 1))
        self.assertEqual(self.table.seen(contactFor(self.e)), contactFor(self.b))

    def test_oldestFails(self):
        """An oldest contact that fails its ping is evicted at once; the freshest replacement takes its place."""
        self.table.seen(contactFor(self.d))
        self.table.seen(contactFor(self.e))
        self.table.failed(contactFor(self.a))
        self.assertEqual((ids(self.table), self.replacements()), ([self.b, self.c, self.e], 1))
        self.assertEqual(self.table.seen(contactFor(self.f)), contactFor(self.b))

    def test_replacementCacheBounded(self):
        """The replacement cache keeps the freshest newcomers, no more than its size."""
        table = tableWith([self.a], k=1, replacementSize=2, failureThreshold=1)
        for newcomer in (self.b, self.c, self.d, self.e):
            table.seen(contactFor(newcomer))
        self.assertEqual(table.summary()[0]["replacements"], 2)
        promoted = []
        for _ in range(3):
            table.failed(next(iter(table)))
            promoted.append(ids(table))
        self.assertEqual(promoted, [[self.e], [self.d], []])

    def test_replacementSeenAgainIsFreshest(self):
        """A replacement seen again becomes the freshest one, the first promoted."""
        self.table.seen(contactFor(self.d))
        self.table.seen(contactFor(self.e))
        self.table.seen(contactFor(self.d))
        self.table.failed(contactFor(self.a))
        self.assertEqual(ids(self.table), [self.b, self.c, self.d])


class FailureTests(SynchronousTestCase):
    """A contact that fails repeatedly is dropped; any answer forgives it."""

    def setUp(self):
        self.a, self.b, self.c = (inBucket(5, low) for low in range(1, 4))

    def test_droppedAfterThreshold(self):
        """The third failure in a row drops a contact; the replacement takes its place."""
        table = tableWith([self.a, self.b], k=1, failureThreshold=3)
        table.seen(contactFor(self.a))  # answers the ping: b stays a replacement
        for _ in range(2):
            table.failed(contactFor(self.a))
        self.assertEqual(ids(table), [self.a])
        table.failed(contactFor(self.a))
        self.assertEqual(ids(table), [self.b])

    def test_answerResetsCount(self):
        """An answer between failures starts the count again."""
        table = tableWith([self.a], failureThreshold=3)
        for _ in range(2):
            table.failed(contactFor(self.a))
        table.seen(contactFor(self.a))
        for _ in range(2):
            table.failed(contactFor(self.a))
        self.assertEqual(ids(table), [self.a])
        table.failed(contactFor(self.a))
        self.assertEqual(ids(table), [])

    def test_droppedWithoutReplacement(self):
        """With no replacement, a dropped contact leaves room for the next newcomer."""
        table = tableWith([self.a, self.b], k=2, failureThreshold=1)
        table.failed(contactFor(self.b))
        self.assertEqual(ids(table), [self.a])
        self.assertIsNone(table.seen(contactFor(self.c)))
        self.assertEqual(ids(table), [self.a, self.c])

    def test_failedReplacementForgotten(self):
        """A replacement that fails is never promoted; an unknown contact's failure changes nothing."""
        table = tableWith([self.a, self.b], k=1, questionableAfter=0)
        table.failed(contactFor(self.b))
        table.failed(contactFor(self.c))
        self.assertEqual(table.summary()[0]["replacements"], 0)
        table.failed(contactFor(self.a))  # the pinged oldest: evicted, nobody to promote
        self.assertEqual(len(table), 0)


class RefreshTests(SynchronousTestCase):
    """Buckets nobody touched for the refresh interval get a random id to look up."""

    def setUp(self):
        self.clock = Clock()
        self.table = RoutingTable(OWN, self.clock, random.Random(3))
        for index in (0, 1, 3):
            self.table.seen(contactFor(inBucket(index)))

    def test_onlyStaleBuckets(self):
        """
        A bucket touched by a seen contact or a lookup within the interval is left alone; the
        stale ones up to the nearest non-empty bucket, empty or not, are refreshed.
        """
        self.clock.advance(1000)
        self.table.seen(contactFor(inBucket(1)))
        self.table.lookedUp(asId(inBucket(3, 12345)))
        self.assertEqual(self.table.refreshTargets(3599, 3600), [])
        targets = self.table.refreshTargets(4599, 3600)
        self.assertEqual([sharedPrefix(target) for target in targets], [0, 2])
        self.assertEqual(len(self.table.refreshTargets(4600, 3600)), 4)

    def test_lastTouchedInSummary(self):
        """The summary says when each bucket was last touched."""
        self.clock.advance(50)
        self.table.seen(contactFor(inBucket(3, 1)))
        self.assertEqual([(row["index"], row["lastTouched"]) for row in self.table.summary()], [(0, 0), (1, 0), (3, 50)])

    def test_ownLookupTouchesNothing(self):
        """A lookup of our own id touches no bucket."""
        self.clock.advance(10)
        self.table.lookedUp(OWN)
        self.assertEqual([row["lastTouched"] for row in self.table.summary()], [0, 0, 0])

    @given(st.lists(st.integers(0, ID_BITS - 1), min_size=1, max_size=10), st.integers(0, 2**32))
    def test_targetsInTheirBuckets(self, indexes, seed):
        """Each refresh target shares exactly its bucket's prefix with our id, and targets are random."""
        table = RoutingTable(OWN, Clock(), random.Random(seed))
        for index in indexes:
            table.seen(contactFor(inBucket(index)))
        targets = table.refreshTargets(3600)
        self.assertEqual([sharedPrefix(target) for target in targets], list(range(max(indexes) + 1)))
        self.assertNotEqual(targets, RoutingTable(OWN, Clock(), random.Random(seed + 1)).refreshTargets(3600))

    def test_deterministic(self):
        """The same random source gives the same targets."""
        again = RoutingTable(OWN, Clock(), random.Random(3))
        for index in (0, 1, 3):
            again.seen(contactFor(inBucket(index)))
        self.assertEqual(self.table.refreshTargets(3600), again.refreshTargets(3600))

    def test_emptyTable(self):
        """An empty table has nothing to refresh."""
        self.assertEqual(RoutingTable(OWN, Clock()).refreshTargets(10**6), [])


class ViewTests(SynchronousTestCase):
    """Length, iteration and summary."""

    def test_views(self):
        """Length and iteration count contacts, not replacements; the summary counts both per bucket."""
        numbers = [inBucket(2, low) for low in range(1, 5)] + [inBucket(7)]
        table = tableWith(numbers, k=3)
        self.assertEqual(len(table), 4)
        self.assertEqual(ids(table), numbers[:3] + numbers[4:])
        self.assertEqual(
            table.summary(),
            [
                {"index": 2, "size": 3, "replacements": 1, "lastTouched": 0},
                {"index": 7, "size": 1, "replacements": 0, "lastTouched": 0},
            ],
        )
