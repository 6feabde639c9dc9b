"""
The path benchmark: its figures, and a tiny run on a real loopback testnet through the real
code path.

Nothing here asserts a speed or a success rate: those depend on the machine and its load. The
tests check that the result has the promised shape and that the testnet is gone afterwards.
"""

import json
import math
import os
import re

from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import BENCHMARKS, path
from tests.bench.helpers import runBench

REQUIRED = {"build_3x12_p50_s", "build_3x12_p95_s", "build_3x5_p50_s", "build_3x5_p95_s", "build_success_rate"}
"""The figures the issue asks for."""

RATES = {"build_success_rate", "build_3x12_success_rate", "build_3x5_success_rate"}


def answer(plan, round1, round2, link):
    """A node's answer to a build, as C{phantomctl path build --json} prints it."""
    phases = {"plan": plan, "round1": round1, "round2": round2, "link": link}
    return {"kind": "exit", "ap_address": "", "nodes": [], "phases": phases, "seconds": sum(phases.values())}


class FigureTests(SynchronousTestCase):
    """The figures come from the builds' outcomes, the baseline from the calibration."""

    def test_figures(self):
        """
        Per shape: median and nearest-rank p95 of the successful builds' end-to-end times,
        success over builds asked for, the median of each phase the node reported; overall
        success over all builds.
        """
        big, small = path.Builds(), path.Builds()
        big.succeeded(1.0, answer(0.7, 0.2, 0.05, 0.01))
        big.succeeded(3.0, answer(2.0, 0.5, 0.3, 0.02))
        big.failed("the node could not: no exit path")
        small.succeeded(0.5, answer(0.1, 0.1, 0.1, 0.1))
        figures = path.computeFigures({(3, 12): big, (3, 5): small})
        self.assertEqual(figures["build_3x12_p50_s"], 2.0)
        self.assertEqual(figures["build_3x12_p95_s"], 3.0)
        self.assertEqual(figures["build_3x5_p50_s"], 0.5)
        self.assertEqual(figures["build_success_rate"], 0.75)
        self.assertAlmostEqual(figures["build_3x12_success_rate"], 2 / 3)
        self.assertEqual(figures["build_3x5_success_rate"], 1.0)
        self.assertAlmostEqual(figures["plan_3x12_p50_s"], 1.35)
        self.assertAlmostEqual(figures["link_3x5_p50_s"], 0.1)

    def test_noSuccess(self):
        """A shape without a successful build has times that are not numbers, and rate 0."""
        big, small = path.Builds(), path.Builds()
        big.failed("no")
        small.succeeded(0.5, answer(0.1, 0.1, 0.1, 0.1))
        figures = path.computeFigures({(3, 12): big, (3, 5): small})
        self.assertTrue(math.isnan(figures["build_3x12_p50_s"]))
        self.assertTrue(math.isnan(figures["plan_3x12_p50_s"]))
        self.assertEqual(figures["build_3x12_success_rate"], 0.0)
        self.assertEqual(figures["build_success_rate"], 0.5)

    def test_baseline(self):
        """Every time is against the calibration, every rate against 1.0."""
        baseline = path.baselineFor({"build_3x12_p50_s": 1.0, "build_success_rate": 0.5, "plan_3x5_p50_s": 0.1}, 0.003)
        self.assertEqual(baseline, {"build_3x12_p50_s": 0.003, "build_success_rate": 1.0, "plan_3x5_p50_s": 0.003})

    def test_spreadTrips(self):
        """The calibration trips are spread over the gaps before, between and after the rounds."""
        spread = path.spreadTrips(50, 30)
        self.assertEqual(len(spread), 31)
        self.assertEqual(sum(spread), 50)
        self.assertEqual(set(spread), {1, 2})
        self.assertEqual(path.spreadTrips(3, 2), [1, 1, 1])
        self.assertEqual(path.spreadTrips(1, 4), [1, 0, 0, 0, 0])

    def test_registered(self):
        """The benchmark is on the command line as C{path}."""
        self.assertEqual(BENCHMARKS["path"], "bench.path")


def processesMentioning(text):
    """@return: the pids of processes whose command line contains C{text}."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                commandLine = f.read()
        except OSError:
            continue
        if text.encode() in commandLine:
            pids.append(int(entry))
    return pids


class PathBenchmarkTests(TestCase):
    """C{python -m bench path --json} on a tiny testnet, in its own process as a user runs it."""

    timeout = 400  # about 20 s when every build succeeds; a failing build may take its node's timeouts

    async def test_jsonShape(self):
        """
        One JSON object: the five figures the issue asks for in figures, baseline and ratios,
        each ratio the figure divided by its baseline; rates between 0 and 1 against 1.0; times
        positive (not a number only for a shape of which no build succeeded), p50 at most p95,
        against one positive calibration time. Afterwards the testnet's directory is gone and
        no process of it is left.

        17 nodes: a (3, 12) path needs 15 nodes besides its owner.
        """
        out, err, status = await runBench(self, "path", "--json", "--nodes", "17", "--builds", "2", "--trips", "10")
        stderr = err.decode(errors="replace")
        self.assertEqual(status, 0, stderr)
        result = json.loads(out)
        self.assertEqual(set(result), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(result["name"], "path")
        names = set(result["figures"])
        self.assertTrue(REQUIRED <= names, sorted(REQUIRED - names))
        for part in ("baseline", "ratios"):
            self.assertEqual(set(result[part]), names, part)

        figures, baseline = result["figures"], result["baseline"]
        for name in RATES:
            self.assertTrue(0 <= figures[name] <= 1, name)
            self.assertEqual(baseline[name], 1.0, name)
        [calibration] = {value for name, value in baseline.items() if name not in RATES}
        self.assertGreater(calibration, 0)
        for name, value in figures.items():
            if name in RATES:
                continue
            shape = name.split("_")[1]
            if figures[f"build_{shape}_success_rate"] == 0:
                self.assertTrue(math.isnan(value), name)
            elif name.startswith("build_"):
                self.assertGreater(value, 0, name)
            else:
                # A phase may take no measurable time (x0's link can be there before it is sought).
                self.assertGreaterEqual(value, 0, name)
        for shape in ("3x12", "3x5"):
            if figures[f"build_{shape}_success_rate"] > 0:
                self.assertLessEqual(figures[f"build_{shape}_p50_s"], figures[f"build_{shape}_p95_s"])
        for name in names:
            if math.isnan(figures[name]):
                self.assertTrue(math.isnan(result["ratios"][name]), name)
            else:
                self.assertAlmostEqual(result["ratios"][name], figures[name] / baseline[name])

        [directory] = re.findall(r"starting 17 nodes on \S+ port \d+ in (\S+)", stderr)
        self.assertFalse(os.path.exists(directory), directory)
        self.assertEqual(processesMentioning(directory), [])
