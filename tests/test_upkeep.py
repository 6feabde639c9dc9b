"""Periodic upkeep: a failing step is logged and runs again; nothing stops the rounds."""

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.upkeep import Upkeep
from tests.link.helpers import LogCollector


class UpkeepTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.calls = 0
        self.logs = LogCollector(self, "phantom.upkeep")

    def startUpkeep(self, step):
        upkeep = Upkeep(10, step, self.clock, "testing")
        upkeep.startService()
        self.addCleanup(lambda: upkeep.running and upkeep.stopService())
        return upkeep

    def test_roundsRunOnTheClock(self):
        """The step runs at once, then every interval."""
        upkeep = self.startUpkeep(lambda: setattr(self, "calls", self.calls + 1))
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual((self.calls, upkeep.failures), (3, 0))

    def test_raisingStepRunsAgain(self):
        """A step that raises is logged, once per failed round, and the next round runs."""

        def step():
            self.calls += 1
            if self.calls < 3:
                raise OSError("disk full")

        upkeep = self.startUpkeep(step)
        self.clock.advance(10)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual((self.calls, upkeep.failures), (4, 2))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        self.assertEqual([line for level, line in self.logs.events if level == "critical"], ["testing failed; it runs again in 10 s"] * 2)
        self.assertTrue(upkeep.running)

    def test_failedDeferredRunsAgain(self):
        """A step whose Deferred fails is logged and the next round runs."""
        results = [fail(RuntimeError("no peers")), succeed(None)]

        def step():
            self.calls += 1
            return results.pop(0) if results else succeed(None)

        upkeep = self.startUpkeep(step)
        self.clock.advance(10)
        self.assertEqual((self.calls, upkeep.failures), (2, 1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
