"""
The tunnel benchmark at a small scale: its key-recovery figures, and a run through the command
line as a user runs it.

Nothing here asserts a speed: that depends on the machine and its load. The tests check that
the result has the promised shape and that a search finding the wrong keys fails the run.
"""

import json
import random
from argparse import Namespace

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import BENCHMARKS, tunnel
from tests.bench.test_bench import runBench

FIGURES = {"key_recovery_worst_ms", "key_recovery_mean_ms"}

SMALL = Namespace(recovery_runs=4, recovery_hops=3, recovery_keys=8)


class KeyRecoveryTests(SynchronousTestCase):
    """The key-recovery part measures both searches on the same key sets."""

    def test_figures(self):
        """
        Both figures, positive, the worst case at least the mean; one baseline for both, the
        thesis's search, positive.
        """
        part = tunnel.measureKeyRecovery(SMALL, random.Random(1))
        self.assertEqual(set(part.figures), FIGURES)
        self.assertEqual(set(part.baseline), FIGURES)
        for value in part.figures.values():
            self.assertGreater(value, 0)
        self.assertGreaterEqual(part.figures["key_recovery_worst_ms"], part.figures["key_recovery_mean_ms"])
        [baseline] = set(part.baseline.values())
        self.assertGreater(baseline, 0)
        self.assertIn("3 hops x 8 keys", part.notes)

    def test_wrongKeysFail(self):
        """A search that finds other keys than the hops chose makes the measurement fail."""
        self.patch(tunnel, "recoverKeys", lambda keySets, package, peel, accept: (0,) * len(keySets))
        self.assertRaises(tunnel.RecoveryFailed, tunnel.measureKeyRecovery, SMALL, random.Random(2))

    def test_result(self):
        """C{measure} gives the result named C{tunnel}, with the ratio goal on the worst case."""
        result = self.successResultOf(tunnel.measure(reactor, SMALL))
        self.assertEqual(result.name, "tunnel")
        self.assertEqual(set(result.figures), FIGURES)
        self.assertEqual(set(result.goals), {"key_recovery_worst_ms"})

    def test_registered(self):
        """The benchmark is on the command line as C{tunnel}."""
        self.assertEqual(BENCHMARKS["tunnel"], "bench.tunnel")


class TunnelBenchmarkTests(TestCase):
    """C{python -m bench tunnel --json} at a small scale, in its own process."""

    timeout = 120

    async def test_jsonShape(self):
        """One JSON object: both figures in figures, baseline and ratios, all positive."""
        out, err, status = await runBench(
            "tunnel", "--json", "--recovery-runs", "3", "--recovery-hops", "3", "--recovery-keys", "8"
        )
        self.assertEqual(status, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(set(result), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(result["name"], "tunnel")
        for part in ("figures", "baseline", "ratios"):
            self.assertEqual(set(result[part]), FIGURES, part)
            for name, value in result[part].items():
                self.assertGreater(value, 0, f"{part} {name}")
        for name in FIGURES:
            self.assertAlmostEqual(result["ratios"][name], result["figures"][name] / result["baseline"][name])
