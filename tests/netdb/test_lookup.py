"""Tests of the sans-io iterative lookup, alone and on a simulated network in memory."""

import heapq
import random

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.netdb.lookup import Lookup

K = 20
ALPHA = 3


def asId(number):
    return number.to_bytes(32, "big")


def contactFor(number):
    return Contact("10.0.0.1", 7402, asId(number))


def numberOf(contact):
    return int.from_bytes(contact.nodeId, "big")


def closestTo(target, numbers, count=K):
    return heapq.nsmallest(count, numbers, key=lambda number: number ^ target)


class Network:
    """
    Node ids in memory, each node with a routing table computed by brute force.

    A node knows its C{k} closest live nodes and, for each of its buckets (ids sharing the same
    prefix length with it), up to C{k} nodes of that bucket. A bucket with room holds every
    live node of its range; a full bucket holds a random sample of its range, dead nodes
    included: the far entries a real table has not yet found to be dead. Neighbours notice a
    dead node first, as a real table does through its failed requests and pings.

    @ivar numbers: every node id, as an integer.
    @ivar dead: the ids of the nodes that never answer.
    @ivar live: the other ids.
    """

    def __init__(self, size, seed, deadFraction=0.0, k=K):
        rng = random.Random(seed)
        self.k = k
        self.numbers = [rng.getrandbits(256) for _ in range(size)]
        self.dead = set(rng.sample(self.numbers, int(size * deadFraction)))
        self.live = [number for number in self.numbers if number not in self.dead]
        self.known = {}
        for node in self.numbers:
            buckets = {}
            for other in self.numbers:
                if other != node:
                    buckets.setdefault((node ^ other).bit_length(), []).append(other)
            known = set(closestTo(node, [n for n in self.live if n != node], k))
            for members in buckets.values():
                rng.shuffle(members)
                liveMembers = [n for n in members if n not in self.dead]
                known.update(members[:k] if len(liveMembers) > k else liveMembers)
            self.known[node] = list(known)

    def findNode(self, node, target):
        """What a node answers to FIND_NODE: the k closest to C{target} it knows."""
        return [contactFor(n) for n in closestTo(target, self.known[node], self.k)]

    def closestLive(self, target, exclude):
        return closestTo(target, [n for n in self.live if n != exclude], self.k)


NETWORK = Network(500, seed=1)
FAILING_NETWORK = Network(500, seed=2, deadFraction=0.25)


class Driver:
    """
    Runs a lookup against a L{Network}, answering its requests in a random order, and checks
    the rules at every step: at most alpha requests in flight, no contact asked twice, only
    contacts among the k closest known that have not failed asked.

    @ivar answers: a callable C{(node, target)} answering one request to a live node: a list
        of L{Contact}s, or C{("value", value)}.
    @ivar accept: says whether a returned value is valid.
    """

    def __init__(self, testCase, network, origin, rng, answers=None, accept=lambda value: True):
        self.testCase = testCase
        self.network = network
        self.origin = origin
        self.rng = rng
        self.answers = answers or network.findNode
        self.accept = accept
        self.asked = []
        self.answeredWithout = []

    def start(self, target, findValue=False, k=K, alpha=ALPHA):
        self.target = target
        self.k = k
        self.alpha = alpha
        self.known = set(closestTo(target, self.network.known[self.origin], k))
        self.failed = set()
        return Lookup(asId(target), [contactFor(n) for n in self.known], asId(self.origin), k, alpha, findValue)

    def run(self, lookup):
        inFlight = []
        while True:
            candidates = set(closestTo(self.target, self.known - self.failed - {self.origin}, self.k))
            queries = [numberOf(contact) for contact in lookup.nextQueries()]
            self.testCase.assertLessEqual(set(queries), candidates)
            self.testCase.assertFalse(set(queries) & set(self.asked))
            self.asked += queries
            inFlight += queries
            self.testCase.assertEqual(lookup.inFlight, len(inFlight))
            self.testCase.assertLessEqual(len(inFlight), self.alpha)
            if lookup.done or not inFlight:
                break
            node = inFlight.pop(self.rng.randrange(len(inFlight)))
            self.answer(lookup, node)
        self.testCase.assertTrue(lookup.done)
        self.testCase.assertEqual(lookup.requests, len(self.asked))
        return lookup

    def answer(self, lookup, node):
        if node in self.network.dead:
            self.failed.add(node)
            lookup.failed(contactFor(node))
            return
        answer = self.answers(node, self.target)
        if isinstance(answer, tuple):
            if self.accept(answer[1]):
                lookup.found(contactFor(node), answer[1])
            else:
                self.failed.add(node)
                lookup.failed(contactFor(node))
            return
        self.answeredWithout.append(node)
        self.known.update(numberOf(contact) for contact in answer)
        lookup.responded(contactFor(node), answer)


def holders(network, key, ranks, value):
    """An answer function: the nodes at C{ranks} by distance from C{key} hold C{value}."""
    ranked = closestTo(key, network.live, len(network.live))
    holding = {ranked[rank] for rank in ranks}

    def answer(node, target):
        if node in holding:
            return ("value", value)
        return network.findNode(node, target)

    return answer, holding


def forgedThenValid(key):
    """
    An answer function: the 4 nodes closest to C{key} return b"forged", the next 16 b"valid".

    @return: the function, the forgers, the valid holders.
    """
    forged, forgers = holders(NETWORK, key, range(0, 4), b"forged")
    valid, holding = holders(NETWORK, key, range(4, K), b"valid")

    def answer(node, target):
        return forged(node, target) if node in forgers else valid(node, target)

    return answer, forgers, holding


nodeIndexes = st.integers(0, 499)
targets = st.integers(0, 2**256 - 1)
seeds = st.integers(0, 2**32)


class SimulatedNetworkTests(SynchronousTestCase):
    """Lookups on a network of 500 nodes find what brute force finds, without wasting requests."""

    @settings(max_examples=60)
    @given(nodeIndexes, targets, seeds)
    def test_findsTheKClosest(self, originIndex, target, seed):
        """FIND_NODE finds exactly the k nodes closest to the target, ours left out."""
        origin = NETWORK.numbers[originIndex]
        driver = Driver(self, NETWORK, origin, random.Random(seed))
        lookup = driver.run(driver.start(target))
        self.assertEqual([numberOf(c) for c in lookup.result], NETWORK.closestLive(target, origin))
        self.assertLessEqual(lookup.requests, 2 * K)

    @settings(max_examples=20)
    @given(nodeIndexes, seeds)
    def test_ownIdLookup(self, originIndex, seed):
        """Looking up our own id finds our k closest neighbours, never ourselves."""
        origin = NETWORK.numbers[originIndex]
        driver = Driver(self, NETWORK, origin, random.Random(seed))
        lookup = driver.run(driver.start(origin))
        self.assertEqual([numberOf(c) for c in lookup.result], NETWORK.closestLive(origin, origin))
        self.assertNotIn(origin, driver.asked)

    @settings(max_examples=60)
    @given(st.sampled_from(FAILING_NETWORK.live), targets, seeds)
    def test_failuresTolerated(self, origin, target, seed):
        """With a quarter of the nodes dead, the lookup finds the k closest live nodes."""
        driver = Driver(self, FAILING_NETWORK, origin, random.Random(seed))
        lookup = driver.run(driver.start(target))
        self.assertEqual([numberOf(c) for c in lookup.result], FAILING_NETWORK.closestLive(target, origin))

    def test_failuresHappen(self):
        """The failing network makes lookups meet dead nodes, so the test above tests something."""
        rng = random.Random(4)
        failures = 0
        for _ in range(20):
            driver = Driver(self, FAILING_NETWORK, rng.choice(FAILING_NETWORK.live), rng)
            driver.run(driver.start(rng.getrandbits(256)))
            failures += len(driver.failed)
        self.assertGreater(failures, 20)

    @settings(max_examples=40)
    @given(nodeIndexes, targets, seeds, st.integers(1, 5), st.integers(1, 10))
    def test_otherWidths(self, originIndex, target, seed, alpha, k):
        """Other values of k and alpha keep the rules and find the k closest."""
        origin = NETWORK.numbers[originIndex]
        driver = Driver(self, NETWORK, origin, random.Random(seed))
        lookup = driver.run(driver.start(target, k=k, alpha=alpha))
        self.assertEqual([numberOf(c) for c in lookup.result], NETWORK.closestLive(target, origin)[:k])

    @settings(max_examples=40)
    @given(nodeIndexes, targets, seeds)
    def test_findValueStopsEarly(self, originIndex, target, seed):
        """
        FIND_VALUE ends as soon as a holder answers, sooner than FIND_NODE, and names the
        closest node that answered without the value.
        """
        origin = NETWORK.numbers[originIndex]
        answer, holding = holders(NETWORK, target, range(2, K), b"value")
        driver = Driver(self, NETWORK, origin, random.Random(seed), answer)
        lookup = driver.run(driver.start(target, findValue=True))
        self.assertEqual(lookup.value, b"value")
        self.assertIn(numberOf(lookup.valueSource), holding)
        self.assertLess(lookup.requests, K)
        without = lookup.closestWithoutValue
        if driver.answeredWithout:
            self.assertEqual(numberOf(without), min(driver.answeredWithout, key=lambda n: n ^ target))
            self.assertNotIn(numberOf(without), holding)
        else:
            self.assertIsNone(without)

    @settings(max_examples=40)
    @given(nodeIndexes, targets, seeds)
    def test_rejectedValue(self, originIndex, target, seed):
        """
        A value the caller rejects does not end the lookup: it goes on to a valid value, and the
        nodes that returned an invalid one are not in the result.
        """
        origin = NETWORK.numbers[originIndex]
        answer, forgers, holding = forgedThenValid(target)
        driver = Driver(self, NETWORK, origin, random.Random(seed), answer, lambda value: value == b"valid")
        lookup = driver.run(driver.start(target, findValue=True))
        self.assertEqual(lookup.value, b"valid")
        self.assertIn(numberOf(lookup.valueSource), holding)
        self.assertFalse({numberOf(c) for c in lookup.result} & forgers)

    def test_rejectionsHappen(self):
        """The forgers of the test above are met, so it tests something."""
        rng = random.Random(5)
        rejected = 0
        for _ in range(20):
            target = rng.getrandbits(256)
            answer, _, _ = forgedThenValid(target)
            driver = Driver(self, NETWORK, rng.choice(NETWORK.numbers), rng, answer, lambda value: value == b"valid")
            driver.run(driver.start(target, findValue=True))
            rejected += len(driver.failed)
        self.assertGreater(rejected, 5)

    @settings(max_examples=20)
    @given(nodeIndexes, targets, seeds)
    def test_onlyInvalidValues(self, originIndex, target, seed):
        """When every value found is rejected, FIND_VALUE ends like FIND_NODE, without the liars."""
        origin = NETWORK.numbers[originIndex]
        answer, forgers = holders(NETWORK, target, range(0, 4), b"forged")
        driver = Driver(self, NETWORK, origin, random.Random(seed), answer, lambda value: False)
        lookup = driver.run(driver.start(target, findValue=True))
        honest = [n for n in NETWORK.closestLive(target, origin) if n not in forgers]
        self.assertTrue(driver.failed)
        self.assertIsNone(lookup.value)
        self.assertEqual([numberOf(c) for c in lookup.result][: len(honest)], honest)
        self.assertEqual(numberOf(lookup.closestWithoutValue), numberOf(lookup.result[0]))


def makeLookup(numbers, k=3, alpha=2, findValue=False, own=0):
    return Lookup(asId(1 << 255), [contactFor(n) for n in numbers], asId(own), k, alpha, findValue)


FAR = 1 << 255
"""Ids below are near the target C{1 << 255} when their top bit is set, far when it is not."""


class LookupRulesTests(SynchronousTestCase):
    """The state machine by hand: what it asks, what it refuses, when it stops."""

    def test_alphaInFlight(self):
        """No more than alpha requests leave until one has an outcome, closest first."""
        lookup = makeLookup([FAR | 5, FAR | 1, FAR | 3, FAR | 2])
        self.assertEqual([numberOf(c) for c in lookup.nextQueries()], [FAR | 1, FAR | 2])
        self.assertEqual(lookup.nextQueries(), [])
        lookup.responded(contactFor(FAR | 1), [])
        self.assertEqual([numberOf(c) for c in lookup.nextQueries()], [FAR | 3])
        self.assertEqual((lookup.inFlight, lookup.requests), (2, 3))

    def test_onlyTheKClosest(self):
        """A contact pushed out of the k closest by nearer ones is never asked."""
        lookup = makeLookup([5, 6, 7, 8], k=2, alpha=1)
        [first] = lookup.nextQueries()
        lookup.responded(first, [contactFor(FAR | 1), contactFor(FAR | 2)])
        asked = []
        while not lookup.done:
            [query] = lookup.nextQueries()
            asked.append(numberOf(query))
            lookup.responded(query, [])
        self.assertEqual(asked, [FAR | 1, FAR | 2])
        self.assertEqual([numberOf(c) for c in lookup.result], [FAR | 1, FAR | 2])
        self.assertEqual(lookup.requests, 3)

    @given(st.lists(st.integers(1, 2**256 - 1), max_size=30, unique=True), st.integers(1, 5))
    def test_measuredStart(self, numbers, alpha):
        """A lookup started from C{(distance, contact)} pairs asks and ends as one started from the contacts."""
        target = asId(FAR)
        contacts = [contactFor(n) for n in numbers]
        measured = sorted(((n ^ FAR, c) for n, c in zip(numbers, contacts)), key=lambda pair: pair[0])
        plain = Lookup(target, contacts, asId(0), 3, alpha)
        fromMeasured = Lookup(target, measured, asId(0), 3, alpha, measured=True)
        while not plain.done:
            queries = plain.nextQueries()
            self.assertEqual(fromMeasured.nextQueries(), queries)
            for query in queries:
                plain.responded(query, [])
                fromMeasured.responded(query, [])
        self.assertTrue(fromMeasured.done)
        self.assertEqual(fromMeasured.result, plain.result)

    def test_duplicatesAndOwnIdSkipped(self):
        """Contacts heard of twice are asked once; our own id is never asked."""
        own = FAR | 1
        lookup = makeLookup([FAR | 2, FAR | 2, own], own=own, k=5, alpha=5)
        [query] = lookup.nextQueries()
        lookup.responded(query, [contactFor(FAR | 2), contactFor(own), contactFor(FAR | 3)])
        [query] = lookup.nextQueries()
        self.assertEqual(numberOf(query), FAR | 3)
        lookup.responded(query, [contactFor(FAR | 2)])
        self.assertTrue(lookup.done)
        self.assertEqual([numberOf(c) for c in lookup.result], [FAR | 2, FAR | 3])

    def test_firstAddressKept(self):
        """A contact heard of again at another address keeps the first address."""
        lookup = makeLookup([FAR | 2, 9], alpha=1)
        [query] = lookup.nextQueries()
        lookup.responded(query, [Contact("192.0.2.1", 1, asId(9))])
        [query] = lookup.nextQueries()
        self.assertEqual(query, contactFor(9))

    def test_failedNeverInResult(self):
        """A failed contact is not in the result; the next closest takes its place."""
        lookup = makeLookup([FAR | 1, FAR | 2, FAR | 3, FAR | 4], k=2, alpha=2)
        first, second = lookup.nextQueries()
        lookup.failed(first)
        lookup.responded(second, [])
        self.assertFalse(lookup.done)
        [third] = lookup.nextQueries()
        self.assertEqual(numberOf(third), FAR | 3)
        lookup.responded(third, [])
        self.assertTrue(lookup.done)
        self.assertEqual([numberOf(c) for c in lookup.result], [FAR | 2, FAR | 3])

    def test_waitsForTheKClosest(self):
        """The lookup is not done while one of the k closest has a request in flight."""
        lookup = makeLookup([FAR | 1, FAR | 2], k=2, alpha=2)
        first, second = lookup.nextQueries()
        lookup.responded(second, [])
        self.assertFalse(lookup.done)
        lookup.responded(first, [])
        self.assertTrue(lookup.done)

    def test_collectingGoesOnAfterAValue(self):
        """A collecting FIND_VALUE asks on after the first value, until the k closest have answered, and keeps every value."""
        lookup = Lookup(asId(1 << 255), [contactFor(n) for n in (FAR | 1, FAR | 2, FAR | 3)], asId(0), 3, 1, findValue=True, collect=True)
        [first] = lookup.nextQueries()
        lookup.found(first, "old")
        self.assertFalse(lookup.done)
        [second] = lookup.nextQueries()
        lookup.responded(second, [])
        [third] = lookup.nextQueries()
        lookup.found(third, "new")
        self.assertTrue(lookup.done)
        self.assertEqual([(numberOf(contact), value) for contact, value in lookup.values], [(FAR | 1, "old"), (FAR | 3, "new")])
        self.assertEqual((lookup.value, numberOf(lookup.closestWithoutValue)), ("old", FAR | 2))

    def test_nothingToAsk(self):
        """Without contacts, or when all fail, the lookup is done with an empty result."""
        self.assertEqual((makeLookup([]).done, makeLookup([]).result), (True, []))
        lookup = makeLookup([FAR | 1, FAR | 2])
        for contact in lookup.nextQueries():
            lookup.failed(contact)
        self.assertEqual((lookup.done, lookup.result, lookup.closestWithoutValue), (True, [], None))

    def test_outcomeWithoutRequestRefused(self):
        """An outcome for a contact that has no request in flight raises ValueError."""
        lookup = makeLookup([FAR | 1, FAR | 2, FAR | 3], alpha=1, findValue=True)
        [query] = lookup.nextQueries()
        for report in (lambda c: lookup.responded(c, []), lookup.failed, lambda c: lookup.found(c, b"v")):
            self.assertRaises(ValueError, report, contactFor(FAR | 2))
            self.assertRaises(ValueError, report, contactFor(12345))
        lookup.responded(query, [])
        self.assertRaises(ValueError, lookup.failed, query)

    def test_malformedContactRefused(self):
        """A returned contact without a 32-byte id raises ValueError; the answer is not recorded."""
        lookup = makeLookup([FAR | 1])
        [query] = lookup.nextQueries()
        self.assertRaises(ValueError, lookup.responded, query, [contactFor(FAR | 2), Contact("10.0.0.1", 1)])
        self.assertEqual(lookup.inFlight, 1)
        lookup.responded(query, [contactFor(FAR | 2)])
        self.assertEqual([numberOf(c) for c in lookup.nextQueries()], [FAR | 2])

    def test_malformedStartRefused(self):
        """A malformed target or starting contact raises ValueError."""
        self.assertRaises(ValueError, Lookup, b"\x00" * 31, [], asId(0))
        self.assertRaises(ValueError, Lookup, asId(1), [Contact("10.0.0.1", 1)], asId(0))

    def test_findNodeFindsNoValue(self):
        """C{found} on a FIND_NODE lookup raises ValueError."""
        lookup = makeLookup([FAR | 1])
        [query] = lookup.nextQueries()
        self.assertRaises(ValueError, lookup.found, query, b"v")

    def test_outcomesAfterDoneIgnored(self):
        """Once a value is found, the outcomes of requests still in flight change nothing."""
        lookup = makeLookup([FAR | 1, FAR | 2, FAR | 3], findValue=True)
        first, second = lookup.nextQueries()
        lookup.found(second, b"v")
        lookup.responded(first, [contactFor(FAR)])
        lookup.failed(first)
        self.assertEqual(lookup.nextQueries(), [])
        self.assertEqual((lookup.value, lookup.valueSource, lookup.result), (b"v", second, [second]))
        self.assertIsNone(lookup.closestWithoutValue)

    def test_closestWithoutValue(self):
        """The closest contact that answered without the value, even when a closer one holds it."""
        lookup = makeLookup([FAR | 1, FAR | 2, FAR | 3], alpha=3, findValue=True)
        first, second, third = lookup.nextQueries()
        lookup.responded(third, [])
        lookup.responded(second, [])
        lookup.found(first, b"v")
        self.assertEqual(lookup.closestWithoutValue, second)
        self.assertEqual(lookup.result, [first, second, third])
