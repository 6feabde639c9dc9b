"""The pool of node records sampled ahead of path builds."""

import random
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.path.pool import NodePool


@dataclass(frozen=True)
class Sampled:
    """The two things the pool reads of a node record."""

    nodeId: bytes
    expires: float


class Sampler:
    """Hands out fresh records on each call; a call can be held open or made to fail."""

    def __init__(self, clock, lifetime=3600.0):
        self.clock = clock
        self.lifetime = lifetime
        self.calls = 0
        self.pending = None
        self.failing = False
        self.counter = 0

    def __call__(self, count, exclude):
        self.calls += 1
        if self.failing:
            return failed(RuntimeError("the network is gone"))
        records = []
        for _ in range(count):
            self.counter += 1
            records.append(Sampled(self.counter.to_bytes(32, "big"), self.clock.seconds() + self.lifetime))
        if self.pending is not None:
            self.pending.append(records)
            d = Deferred()
            self.pending.append(d)
            return d
        return succeeded(records)


async def succeeded(value):
    return value


async def failed(error):
    raise error


def result(testCase, coroutine):
    return testCase.successResultOf(Deferred.fromCoroutine(coroutine))


class NodePoolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sampler = Sampler(self.clock)
        self.pool = NodePool(self.sampler, self.clock, random.Random(1), size=10, refreshInterval=300.0)

    def test_startSamplesNowAndEveryInterval(self):
        """Starting samples at once; every C{refreshInterval} a fresh sample replaces the pool."""
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.assertEqual(self.sampler.calls, 1)
        first = set(self.pool.records)
        self.assertEqual(len(first), 10)
        self.clock.advance(300)
        self.assertEqual(self.sampler.calls, 2)
        self.assertEqual(len(self.pool.records), 10)
        self.assertFalse(first & set(self.pool.records))

    def test_drawIsRandomDistinctAndExcludes(self):
        """A draw gives distinct records from the pool, none excluded, not always the same ones."""
        self.successResultOf(self.pool.refresh())
        excluded = set(list(self.pool.records)[:3])
        draws = [result(self, self.pool.draw(5, exclude=excluded)) for _ in range(20)]
        for drawn in draws:
            ids = [record.nodeId for record in drawn]
            self.assertEqual(len(set(ids)), 5)
            self.assertFalse(excluded & set(ids))
            self.assertTrue(set(ids) <= set(self.pool.records))
        self.assertGreater(len({tuple(record.nodeId for record in drawn) for drawn in draws}), 1)
        self.assertEqual(self.sampler.calls, 1)

    def test_tooFewSamplesFirst(self):
        """A draw the pool cannot serve waits for a fresh sample."""
        self.sampler.pending = []
        d = Deferred.fromCoroutine(self.pool.draw(4))
        self.assertNoResult(d)
        records, waiting = self.sampler.pending
        waiting.callback(records)
        self.assertEqual(len(self.successResultOf(d)), 4)

    def test_enoughIsEnough(self):
        """A draw that finds at least C{atLeast} records takes what there is without sampling."""
        self.successResultOf(self.pool.refresh())
        drawn = result(self, self.pool.draw(15, atLeast=8))
        self.assertEqual(len(drawn), 10)
        self.assertEqual(self.sampler.calls, 1)
        result(self, self.pool.draw(15))
        self.assertEqual(self.sampler.calls, 2)

    def test_refreshesJoin(self):
        """Refreshes asked for while a sample runs share it."""
        self.sampler.pending = []
        first, second = self.pool.refresh(), self.pool.refresh()
        self.assertEqual(self.sampler.calls, 1)
        records, waiting = self.sampler.pending
        waiting.callback(records)
        self.assertEqual(self.successResultOf(first), 10)
        self.assertEqual(self.successResultOf(second), 10)

    def test_expiredAndDiscardedNotDrawn(self):
        """Records past their expiry and nodes that failed a build are never drawn."""
        self.sampler.lifetime = 100
        self.successResultOf(self.pool.refresh())
        gone = list(self.pool.records)[:2]
        self.pool.discard(gone)
        drawn = result(self, self.pool.draw(8))
        self.assertFalse(set(gone) & {record.nodeId for record in drawn})
        self.clock.advance(100)
        self.sampler.lifetime = 1000
        drawn = result(self, self.pool.draw(8))
        self.assertTrue(all(record.expires > self.clock.seconds() for record in drawn))
        self.assertEqual(self.sampler.calls, 2)

    def test_failedSampleKeepsRecords(self):
        """A sample that fails is logged; the records held stay."""
        self.successResultOf(self.pool.refresh())
        held = dict(self.pool.records)
        self.sampler.failing = True
        self.assertEqual(self.successResultOf(self.pool.refresh()), 10)
        self.assertEqual(self.pool.records, held)
        self.assertEqual(len(result(self, self.pool.draw(20))), 10)
