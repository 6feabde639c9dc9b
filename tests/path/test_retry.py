"""
What a build keeps after a failed attempt: the ends (x0 and T) for a few attempts, nothing else
of the circle (L{phantom.path.retry.Retries}), and L{planPath} around kept ends.
"""

from twisted.trial.unittest import SynchronousTestCase

from phantom.path.plan import NotEnoughNodes, PathShape
from phantom.path.retry import Retries
from tests.path.test_plan import planFor, record


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

    def test_tooFewAroundEnds(self):
        """Planning around kept ends needs x + y - 2 other nodes."""
        candidates = [record(n) for n in range(15)]
        planFor(1, candidates=candidates[2:], ends=(candidates[0], candidates[1]))
        self.assertRaises(NotEnoughNodes, planFor, 1, PathShape(), candidates=candidates[3:], ends=(candidates[0], candidates[1]))
