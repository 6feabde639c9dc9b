"""
The anonymity benchmark: how its figures are computed, and each figure held to its goal at a
smaller scale than the benchmark's (issue 12). Before the changes of that issue these bounds
failed: the array size placed the last node for sure (ratio 15), x0 told itself apart by its
late link (accuracy 0.77), and an entry dated its path to a fraction of a second.
"""

import argparse
import json

from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import BENCHMARKS, anonymity
from tests.bench.helpers import runBench


def options(**given):
    values = {"rounds": 3000, "builds": 200, "entries": 30, "nodes": 24, "seed": 1, "only": ""}
    values.update(given)
    return argparse.Namespace(**values)


class ComputationTests(SynchronousTestCase):
    """The statistics the figures are made of."""

    def test_thresholdSeparable(self):
        """Classes a threshold splits are told apart for sure, whichever side is positive."""
        self.assertEqual(anonymity.bestThresholdAccuracy([(1, True), (2, True), (3, False), (4, False)]), 1.0)
        self.assertEqual(anonymity.bestThresholdAccuracy([(1, False), (2, False), (3, True)]), 1.0)

    def test_thresholdAlike(self):
        """Classes with the same values, or a class absent, give a coin's 0.5."""
        self.assertEqual(anonymity.bestThresholdAccuracy([(1, True), (1, False), (2, True), (2, False)]), 0.5)
        self.assertEqual(anonymity.bestThresholdAccuracy([(1, False), (2, False)]), 0.5)

    def test_thresholdBalanced(self):
        """Accuracy is balanced: one positive among many negatives counts as much as they do."""
        samples = [(0, True)] + [(value, False) for value in range(1, 10)] + [(5, True)]
        # t = 0: half the positives, every negative.
        self.assertEqual(anonymity.bestThresholdAccuracy(samples), 0.75)

    def test_narrowestInterval(self):
        """
        The observer learns how far each observable lies from the build time and intersects
        what each allows: a field equal to the build time places it exactly; fields that vary
        independently of it place it no better than their spread.
        """
        exact = [(100.0, {"sequence": 100.0}), (205.0, {"sequence": 205.0})]
        self.assertEqual(anonymity.narrowestInterval(exact), 0.0)
        coarse = [(built, {"expires": (built // 600 + 2) * 600}) for built in range(0, 6000, 7)]
        self.assertGreaterEqual(anonymity.narrowestInterval(coarse), 590)
        both = [(built, {"expires": (built // 600 + 2) * 600, "published": built + 30}) for built in range(0, 6000, 7)]
        self.assertEqual(anonymity.narrowestInterval(both), 0)

    def test_registered(self):
        """The benchmark is on the command line as C{anonymity}."""
        self.assertEqual(BENCHMARKS["anonymity"], "bench.anonymity")


class GoalTests(SynchronousTestCase):
    """Each figure meets its goal (the benchmark's own scale is larger)."""

    def assertMet(self, figure):
        ratio = figure.value / figure.ideal
        self.assertTrue(figure.goal.isMet(ratio), f"{figure.name} = {figure.value:.4g}, ratio {ratio:.3f}, goal {figure.goal}")

    def test_positionPosterior(self):
        """No array size tells a node its position better than 1.25 times the prior 1/N."""
        self.assertMet(anonymity.positionPosterior(options()))

    def test_x0Timing(self):
        """Over 200 builds with WAN latencies, no threshold on the link delay tells x0 apart better than 0.6."""
        self.assertMet(anonymity.x0TimingAdvantage(options()))

    def test_entryTimeResolution(self):
        """A published entry and its publication time place the build in no interval under 600 s."""
        self.assertMet(anonymity.entryTimeResolution(options()))

    def test_clientIdentityLinks(self):
        """No server sees a client's published AP-address, nor one client identity over two exit paths."""
        self.assertMet(anonymity.clientIdentityLinks(options()))


class CommandLineTests(TestCase):
    timeout = 300

    async def test_json(self):
        """C{python -m bench anonymity --json} prints one object with the figures, their ideals and ratios."""
        out, err, status = await runBench(self, "anonymity", "--json", "--rounds", "200", "--builds", "3", "--entries", "2")
        self.assertEqual(status, 0, err)
        result = json.loads(out)
        self.assertEqual(result["name"], "anonymity")
        self.assertEqual(set(result["figures"]), {"position_posterior_max", "x0_timing_advantage", "entry_time_resolution_s", "client_identity_links"})
        self.assertEqual(result["baseline"]["x0_timing_advantage"], 0.5)
