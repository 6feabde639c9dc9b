"""
The benchmark command line and report, and the link benchmark run at a tiny scale.

Nothing here asserts a speed: figures depend on the machine and its load. The tests check that
the benchmark runs through its real code path and reports what the contract promises.
"""

import io
import json
import os
import signal
import sys

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

import bench
from bench.__main__ import main
from bench.report import BenchmarkResult, RatioGoal, renderJSON, renderTable
from tests.bench.helpers import SessionChild, runBench, runInOwnSession, sessionMembers
from tests.bench.timesout import PARENT
from tests.testnet.helpers import isRunning


class SessionTests(TestCase):
    """A bench test's child programs, and theirs, end with the test, however it ends."""

    timeout = 120

    def pidsFile(self):
        path = os.path.abspath(self.mktemp())
        return path, dict(os.environ, PIDS_FILE=path)

    async def test_stopEndsTheSession(self):
        """L{SessionChild.stop} ends a child that would run for minutes, and the child it started."""
        path, env = self.pidsFile()
        child = SessionChild(["-c", PARENT], env=env)
        self.addCleanup(child.stop)
        while not os.path.exists(path) or not open(path).read():
            await deferLater(reactor, 0.05, lambda: None)
        parent, grandchild = map(int, open(path).read().split())
        self.assertEqual(child.session, parent)
        self.assertEqual(sorted(sessionMembers(child.session)), sorted([parent, grandchild]))
        await child.stop(grace=5)
        self.assertFalse(isRunning(parent) or isRunning(grandchild))
        self.assertEqual(sessionMembers(child.session), [])
        out, err, status = await child.finished
        self.assertNotEqual(status, 0)

    async def test_timedOutTestLeavesNothing(self):
        """
        A test that times out while its child runs (L{tests.bench.timesout}, in a trial of its
        own) fails as timed out, and its cleanup ends the child and the child's child.
        """
        path, env = self.pidsFile()
        out, err, status = await runInOwnSession(self, "-m", "twisted.trial", "tests.bench.timesout", env=env)
        output = out.decode(errors="replace")
        self.assertNotEqual(status, 0, output)
        self.assertIn("still running at 3", output)
        parent, grandchild = map(int, open(path).read().split())
        self.assertFalse(isRunning(parent), output)
        self.assertFalse(isRunning(grandchild), output)


class ReportTests(SynchronousTestCase):
    """A result carries figures and baseline under the same names and derives the ratios."""

    def makeResult(self):
        return BenchmarkResult(
            name="example",
            figures={"throughput_mib_s": 90.0, "rtt_1k_ms": 0.3},
            baseline={"throughput_mib_s": 100.0, "rtt_1k_ms": 0.2},
            subject="ours",
            baselineName="theirs",
            goals={"throughput_mib_s": RatioGoal(0.9, atLeast=True), "rtt_1k_ms": RatioGoal(1.2, atLeast=False)},
        )

    def test_ratios(self):
        """Each ratio is the figure divided by the baseline of the same name."""
        ratios = self.makeResult().ratios
        self.assertAlmostEqual(ratios["throughput_mib_s"], 0.9)
        self.assertAlmostEqual(ratios["rtt_1k_ms"], 1.5)

    def test_json(self):
        """The JSON rendering is one object with exactly the four promised keys."""
        rendered = json.loads(renderJSON(self.makeResult()))
        self.assertEqual(set(rendered), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(rendered["name"], "example")
        self.assertEqual(rendered["baseline"], {"throughput_mib_s": 100.0, "rtt_1k_ms": 0.2})

    def test_table(self):
        """The table names both sides and says for each figure whether its goal is met."""
        lines = renderTable(self.makeResult()).splitlines()
        self.assertIn("ours against theirs", lines[0])
        [throughput] = [line for line in lines if line.startswith("throughput_mib_s")]
        [latency] = [line for line in lines if line.startswith("rtt_1k_ms")]
        self.assertTrue(throughput.endswith(">= 0.90     met"), throughput)
        self.assertTrue(latency.endswith("<= 1.20  MISSED"), latency)

    def test_namesMustMatch(self):
        """Figures without a baseline of the same name are refused."""
        self.assertRaises(ValueError, BenchmarkResult, name="x", figures={"a_s": 1.0}, baseline={"b_s": 1.0})


class CommandLineTests(SynchronousTestCase):
    """Usage errors exit with status 2 and list the benchmarks."""

    def runMain(self, *arguments):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        error = self.assertRaises(SystemExit, main, list(arguments))
        return error.code, stderr.getvalue()

    def test_unknownName(self):
        """An unknown benchmark name is a usage error naming every benchmark."""
        status, message = self.runMain("nosuchbenchmark")
        self.assertEqual(status, 2)
        self.assertIn("nosuchbenchmark", message)
        for name in bench.BENCHMARKS:
            self.assertIn(repr(name), message)

    def test_missingName(self):
        """Without a name the usage lists every benchmark."""
        status, message = self.runMain()
        self.assertEqual(status, 2)
        for name in bench.BENCHMARKS:
            self.assertIn(name, message)


class StopTests(TestCase):
    """C{python -m bench} stopped by a signal."""

    timeout = 60

    async def test_stoppedBenchmarkCleansUp(self):
        """
        SIGTERM cancels the measurement under way, and the process exits (status 1, saying it
        was stopped) only once the measurement's cleanup has run.
        """
        path = os.path.abspath(self.mktemp())
        child = SessionChild(["-m", "tests.bench.stoppable"], env=dict(os.environ, STATE_FILE=path))
        self.addCleanup(child.stop)
        while not os.path.exists(path):
            await deferLater(reactor, 0.05, lambda: None)
        os.kill(child.session, signal.SIGTERM)
        out, err, status = await child.finished
        with open(path) as states:
            self.assertEqual(states.read().split(), ["started", "cleaned"])
        self.assertEqual(status, 1)
        self.assertIn(b"stopped before it finished", err)


class LinkBenchmarkTests(TestCase):
    """C{python -m bench link --json} at a tiny scale, in its own process as a user runs it."""

    timeout = 120

    async def test_jsonShape(self):
        """
        One JSON object: both figures in figures, baseline and ratios, all positive, each ratio
        the figure divided by its baseline.
        """
        out, err, status = await runBench(self, "link", "--json", "--rounds", "2", "--mib", "2", "--trips", "20")
        self.assertEqual(status, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(set(result), {"name", "figures", "baseline", "ratios"})
        self.assertEqual(result["name"], "link")
        names = {"throughput_mib_s", "rtt_1k_ms", "record_cpu_us_small", "record_cpu_us_16k"}
        for part in ("figures", "baseline", "ratios"):
            self.assertEqual(set(result[part]), names, part)
            for name, value in result[part].items():
                self.assertGreater(value, 0, f"{part} {name}")
        for name in names:
            self.assertAlmostEqual(result["ratios"][name], result["figures"][name] / result["baseline"][name])
