"""
The hostile-load benchmark: its statistic, and a small run against a real node, as a user runs it.

Latencies depend on the machine and its load, so the run checks the result's shape, that every
probe was answered, and the bounds that do not: what the node holds while 200 connections never
start TLS, and that every descriptor comes back after each attack.
"""

import json

from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import BENCHMARKS, hostile
from phantom.config import LinkLimits
from tests.bench.helpers import runBench

PER_ATTACK = {"probe_p99_ms", "answered", "rss_growth_mib", "peak_fds", "fds_after", "node_cpu_s"}


class RegistrationTests(SynchronousTestCase):
    def test_registered(self):
        """The benchmark is on the command line as C{hostile}."""
        self.assertEqual(BENCHMARKS["hostile"], "bench.hostile")

    def test_percentile(self):
        """Nearest rank."""
        self.assertEqual(hostile.percentile(list(range(1, 101)), 99), 99)
        self.assertEqual(hostile.percentile([3.0], 99), 3.0)


class HostileBenchmarkTests(TestCase):
    """C{python -m bench hostile --json} at a small scale."""

    timeout = 300

    async def test_smallRun(self):
        """
        Every attack has its six figures, against its baseline; every probe is answered, the
        descriptors come back after each attack, and 200 connections that never start TLS,
        from two addresses, hold no more than the node's per-address cap on connections
        without their OPEN frame (on a node without caps they held 200).
        """
        out, err, status = await runBench(
            self,
            "hostile", "--json", "--seconds", "1", "--interval", "0.1", "--connects", "200", "--api-connections", "150"
        )
        self.assertEqual(status, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(set(result), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(result["name"], "hostile")
        expected = {f"{attack}_{figure}" for attack in hostile.ATTACKS for figure in PER_ATTACK}
        for part in ("figures", "baseline", "ratios"):
            self.assertEqual(set(result[part]), expected, part)
        figures, baseline = result["figures"], result["baseline"]
        for attack in hostile.ATTACKS:
            self.assertEqual(figures[f"{attack}_answered"], 1.0, attack)
            self.assertLessEqual(figures[f"{attack}_fds_after"], baseline[f"{attack}_fds_after"], attack)
        held = figures["no_tls_connects_peak_fds"] - baseline["no_tls_connects_peak_fds"]
        self.assertLessEqual(held, 2 * LinkLimits.maxHandshakesPerAddress + 8)
