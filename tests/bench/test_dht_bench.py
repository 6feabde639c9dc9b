"""
The DHT benchmark: its workload, its figures, and a tiny run through the real code path.

Nothing here asserts a speed or a success rate: those depend on the machine and its load. The
tests check that both sides run the same workload and that the result has the promised shape.
"""

import importlib.util
import json
import math
from argparse import Namespace

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from bench import BENCHMARKS, dht
from tests.bench.helpers import runBench

FIGURES = {
    "get_success_rate",
    "get_p50_ms",
    "get_p95_ms",
    "rpcs_per_lookup",
    "cpu_ms_per_get",
    "requests_per_get",
    "get_cpu_p50_ms",
    "lookup_get_p50_ms",
    "lookup_get_cpu_p50_ms",
}

NO_BASELINE = "the kademlia package (the dht benchmark's baseline) is not installed: pip install kademlia, or make bench"


class WorkloadTests(SynchronousTestCase):
    """Both sides draw the same operations from the same seed."""

    def test_samePlanForSameSeed(self):
        """The plan is a function of the workload alone."""
        workload = dht.Workload(nodes=30, operations=12, warmup=4, seed=7)
        self.assertEqual(workload.plan(), dht.Workload(nodes=30, operations=12, warmup=4, seed=7).plan())
        self.assertNotEqual(workload.plan(), dht.Workload(nodes=30, operations=12, warmup=4, seed=8).plan())

    def test_planShape(self):
        """
        One PUT per key, through a node of the network; each key is read once by the timed
        GETs; keys and values have their sizes and the keys are distinct.
        """
        plan = dht.Workload(nodes=30, operations=12, warmup=4, seed=7).plan()
        self.assertEqual(len(set(plan.keys)), 12)
        self.assertEqual({len(key) for key in plan.keys}, {dht.KEY_SIZE})
        self.assertEqual({len(value) for value in plan.values}, {dht.VALUE_SIZE})
        self.assertEqual(sorted(key for _, key in plan.puts), list(range(12)))
        self.assertEqual(sorted(key for _, key in plan.gets), list(range(12)))
        self.assertEqual(len(plan.warmups), 4)
        for node, key in plan.puts + plan.gets + plan.warmups:
            self.assertTrue(0 <= node < 30 and 0 <= key < 12)


class FigureTests(SynchronousTestCase):
    """The figures come from what a side measured, the same way for both."""

    def test_figures(self):
        """Success over GETs, median and nearest-rank p95, requests over lookups and GETs, CPU per GET and its median."""
        run = dht.Run(
            latenciesMs=[4.0, 1.0, 3.0, 2.0], successes=3, lookups=2, requests=7, joinSeconds=1.0, putSeconds=1.0, cpuSeconds=0.01,
            cpuLatenciesMs=[0.5, 3.0, 1.0, 2.0], lookedUp=[True, False, True, True],
        )
        self.assertEqual(
            run.figures(),
            {
                "get_success_rate": 0.75,
                "get_p50_ms": 2.5,
                "get_p95_ms": 4.0,
                "rpcs_per_lookup": 3.5,
                "cpu_ms_per_get": 2.5,
                "requests_per_get": 1.75,
                "get_cpu_p50_ms": 1.5,
                "lookup_get_p50_ms": 3.0,
                "lookup_get_cpu_p50_ms": 1.0,
            },
        )

    def test_noLookup(self):
        """Without a single lookup, RPCs per lookup is not a number rather than zero."""
        run = dht.Run(latenciesMs=[0.1], successes=1, lookups=0, requests=0, joinSeconds=1.0, putSeconds=1.0, cpuSeconds=0.0, cpuLatenciesMs=[0.1])
        self.assertTrue(math.isnan(run.figures()["rpcs_per_lookup"]))

    def test_percentile(self):
        """Nearest rank: the smallest value with at least that share of values at or below it."""
        values = list(range(1, 101))
        self.assertEqual(dht.percentile(values, 95), 95)
        self.assertEqual(dht.percentile(values, 50), 50)
        self.assertEqual(dht.percentile([7.0], 95), 7.0)


class MissingBaselineTests(SynchronousTestCase):
    """Without the kademlia package the benchmark fails at once, saying how to install it."""

    def test_message(self):
        """The failure names the package and both ways to install it."""
        self.patch(dht, "BASELINE_PACKAGE", "no_such_package_for_the_dht_benchmark")
        failure = self.failureResultOf(
            dht.measure(reactor, Namespace(nodes=2, operations=1, warmup=0, seed=1)), dht.BaselineMissing
        )
        message = failure.getErrorMessage()
        self.assertIn("pip install kademlia", message)
        self.assertIn("make bench", message)

    def test_registered(self):
        """The benchmark is on the command line as C{dht}."""
        self.assertEqual(BENCHMARKS["dht"], "bench.dht")


class DhtBenchmarkTests(TestCase):
    """C{python -m bench dht --json} at a small scale, in its own process as a user runs it."""

    timeout = 300

    def setUp(self):
        if importlib.util.find_spec("kademlia") is None:
            raise SkipTest(NO_BASELINE)

    async def test_jsonShape(self):
        """
        One JSON object: the four figures in figures, baseline and ratios, each ratio the
        figure divided by its baseline; rates between 0 and 1, latencies positive and p50 at
        most p95, and at least one request per lookup.

        40 nodes rather than 10: a value is kept on about 21 nodes, so in a network of 21
        nodes or fewer every GET is answered from the local store and no lookup runs at all.
        """
        out, err, status = await runBench(self, "dht", "--json", "--nodes", "40", "--operations", "20", "--warmup", "5")
        self.assertEqual(status, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(set(result), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(result["name"], "dht")
        for part in ("figures", "baseline", "ratios"):
            self.assertEqual(set(result[part]), FIGURES, part)
        for side in ("figures", "baseline"):
            figures = result[side]
            self.assertTrue(0 <= figures["get_success_rate"] <= 1, side)
            self.assertGreater(figures["get_p50_ms"], 0, side)
            self.assertLessEqual(figures["get_p50_ms"], figures["get_p95_ms"], side)
            self.assertGreaterEqual(figures["rpcs_per_lookup"], 1, side)
        for name in FIGURES:
            self.assertAlmostEqual(result["ratios"][name], result["figures"][name] / result["baseline"][name])
