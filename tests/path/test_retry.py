"""
What a build keeps after a failed attempt: the ends (x0 and T) for a few attempts, nothing else
of the circle (L{phantom.path.retry.Retries}), and L{planPath} around kept ends.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.path.interfaces import PathKind
from phantom.path.plan import NotEnoughNodes, PathShape
from phantom.path.retry import MAX_KEEP_ENDS, Retries, keepEndsFor
from tests.path.helpers import MemoryPathNetwork
from tests.path.test_plan import planFor, record

SHAPE = PathShape(2, 3)


class RetriesTests(SynchronousTestCase):
    def test_endsKeptThenDropped(self):
        """
        After a failure the ends are kept and the rest excluded; after C{keepEnds} failures in
        a row with the same ends, they are excluded too; a success forgets them.
        """
        retries = Retries(keepEnds=3)
        candidates = [record(n) for n in range(80)]
        excluded = set()
        ends = None
        for failure in range(1, 4):
            plan = planFor(failure, candidates=candidates, exclude=excluded, ends=retries.ends)
            if ends is not None:
                self.assertEqual((plan.adjacent, plan.terminating), ends)
            dropped = retries.failed(plan)
            excluded.update(dropped)
            ends = (plan.adjacent, plan.terminating)
            circle = [hop.record.nodeId for hop in plan.circle]
            if failure < 3:
                self.assertEqual(retries.ends, ends)
                self.assertEqual(set(dropped), set(circle) - {r.nodeId for r in ends})
            else:
                self.assertIsNone(retries.ends)
                self.assertEqual(set(dropped), set(circle))
        plan = planFor(9, exclude=set(), ends=None)
        retries.failed(plan)
        self.assertIsNotNone(retries.ends)
        retries.succeeded()
        self.assertIsNone(retries.ends)

    def test_oldRule(self):
        """With C{keepEnds} 1, every node of a failed circle is excluded at once."""
        retries = Retries(keepEnds=1)
        plan = planFor(1)
        self.assertEqual(set(retries.failed(plan)), {hop.record.nodeId for hop in plan.circle})
        self.assertIsNone(retries.ends)
        self.assertRaises(ValueError, Retries, 0)


    def attemptsKept(self, retries, shape):
        """@return: how many failed attempts in a row one pair of ends is kept for C{shape}."""
        candidates = [record(n) for n in range(400)]
        excluded = set()
        for attempt in range(1, 100):
            plan = planFor(attempt, shape=shape, candidates=candidates, exclude=excluded, ends=retries.ends)
            excluded.update(retries.failed(plan))
            if retries.ends is None:
                return attempt

    def test_honestEndsOutlastAbortingColluders(self):
        """
        A pair of honest ends in a 15-node circle, whose attempts get through only when none of
        the 13 other nodes is an aborting colluder (1 in 4 with 10 % of them), is kept until it
        would have got through with probability 0.95: otherwise each honest pair dropped is one
        more draw for the colluders. (Six attempts dropped 17 % of honest pairs: issue 16.)
        """
        kept = self.attemptsKept(Retries(), PathShape())
        self.assertLessEqual((1 - 0.9**13) ** kept, 0.05, kept)
        self.assertEqual(kept, keepEndsFor(15))

    def test_keptForTheCircle(self):
        """
        Smaller circles keep their ends for fewer attempts, larger ones for more, up to
        L{MAX_KEEP_ENDS}; a given C{keepEnds} is kept to.
        """
        self.assertEqual(self.attemptsKept(Retries(), SHAPE), keepEndsFor(5))
        self.assertLess(keepEndsFor(5), keepEndsFor(15))
        self.assertEqual(keepEndsFor(3, colluders=0.0), 1)
        self.assertEqual(keepEndsFor(100), MAX_KEEP_ENDS)
        self.assertEqual(self.attemptsKept(Retries(keepEnds=4), PathShape()), 4)

    def test_goneEndDroppedOtherKept(self):
        """
        An end known to be gone is dropped at once and excluded; the other end stays kept, and
        keeps counting its failures (it is dropped after C{keepEnds} of them all the same).
        """
        retries = Retries(keepEnds=3)
        candidates = [record(n) for n in range(80)]
        plan = planFor(1, candidates=candidates)
        x0, t = plan.adjacent, plan.terminating
        dropped = retries.failed(plan, gone={t.nodeId})
        self.assertEqual(retries.ends, (x0, None))
        self.assertIn(t.nodeId, dropped)
        self.assertNotIn(x0.nodeId, dropped)
        plan = planFor(2, candidates=candidates, exclude=set(dropped), ends=retries.ends)
        self.assertEqual(plan.adjacent, x0)
        self.assertNotEqual(plan.terminating, t)
        newT = plan.terminating
        retries.failed(plan)
        self.assertEqual(retries.ends, (x0, newT))
        plan = planFor(3, candidates=candidates, ends=retries.ends)
        self.assertIn(x0.nodeId, retries.failed(plan))
        self.assertEqual(retries.ends, (None, newT))

    def test_goneBetweenAttempts(self):
        """A kept end found gone before the next attempt is kept no more; a gone node not kept changes nothing."""
        retries = Retries()
        plan = planFor(1)
        retries.failed(plan)
        retries.gone([record(99).nodeId])
        self.assertEqual(retries.ends, (plan.adjacent, plan.terminating))
        retries.gone([plan.adjacent.nodeId])
        self.assertEqual(retries.ends, (None, plan.terminating))
        self.assertEqual(retries.keptIds, [plan.terminating.nodeId])
        retries.gone([plan.terminating.nodeId])
        self.assertIsNone(retries.ends)


class PlanAroundEndsTests(SynchronousTestCase):
    def test_endsInPlace(self):
        """Kept ends are x0 and T of the new plan, whatever the layout; nobody else is reused."""
        candidates = [record(n) for n in range(40)]
        x0, t = candidates[0], candidates[1]
        for seed in range(30):
            plan = planFor(seed, candidates=candidates, ends=(x0, t))
            self.assertEqual((plan.adjacent, plan.terminating), (x0, t))
            ids = [hop.record.nodeId for hop in plan.circle]
            self.assertEqual(len(set(ids)), 15)

    def test_oneEndInPlace(self):
        """One kept end is x0 or T of the new plan, the other X-nodes chosen anew."""
        candidates = [record(n) for n in range(40)]
        kept = candidates[0]
        for seed in range(20):
            plan = planFor(seed, candidates=candidates, ends=(kept, None))
            self.assertEqual(plan.adjacent, kept)
            self.assertEqual(len({hop.record.nodeId for hop in plan.circle}), 15)
            plan = planFor(seed, candidates=candidates, ends=(None, kept))
            self.assertEqual(plan.terminating, kept)
            self.assertNotEqual(plan.adjacent, kept)

    def test_tooFewAroundEnds(self):
        """Planning around kept ends needs x + y - 2 other nodes."""
        candidates = [record(n) for n in range(15)]
        planFor(1, candidates=candidates[2:], ends=(candidates[0], candidates[1]))
        self.assertRaises(NotEnoughNodes, planFor, 1, PathShape(), candidates=candidates[3:], ends=(candidates[0], candidates[1]))


class DeadEndTests(SynchronousTestCase):
    """
    A kept end whose node died (its record still handed out) is replaced on the next attempt
    once the owner knows it is gone (issue 16): before, it failed every attempt for six.
    """

    def setUp(self):
        self.network = MemoryPathNetwork(self, 16, PathSettings(roundTimeout=3.0, attempts=2, coarseEntries=False))
        self.owner, self.x0, self.t = self.network.nodes[:3]
        self.t.paths.stopService()
        self.network.links.disconnect(self.t.links)

    def firstAttemptThrough(self, x0, t):
        """Build with C{x0} and C{t} as the ends of the first attempt. @return: the Deferred of the path."""
        ys = self.network.random.sample(self.network.nodes[3:], 3)
        self.owner.random.lead = [x0.nodeId, t.nodeId]
        d = Deferred.fromCoroutine(self.owner.paths.build(PathKind.EXIT, SHAPE, [node.record for node in [x0, t] + ys]))
        self.owner.random.lead = None
        return d

    def assertReplaced(self, path):
        self.assertEqual(path.plan.adjacent.nodeId, self.x0.nodeId)
        self.assertNotIn(self.t.nodeId, {hop.record.nodeId for hop in path.plan.circle})

    def test_goneAtTheFailure(self):
        """The owner's database knows T does not answer: the next attempt keeps x0 and not T."""
        self.network.database.unanswering.add(self.t.nodeId)
        path = self.network.run(self.firstAttemptThrough(self.x0, self.t))
        self.assertReplaced(path)
        self.assertEqual(len(path.failures), 1)

    def test_goneBeforeTheNextBuild(self):
        """
        Kept ends outlive a build that gave up; T found gone before the next build is kept no
        more by it.
        """
        self.owner.paths.settings = PathSettings(roundTimeout=3.0, attempts=1, coarseEntries=False)
        self.assertRaises(PathFailed, self.network.run, self.firstAttemptThrough(self.x0, self.t))
        self.network.database.unanswering.add(self.t.nodeId)
        path = self.network.run(Deferred.fromCoroutine(self.owner.paths.build(PathKind.EXIT, SHAPE)))
        self.assertReplaced(path)
