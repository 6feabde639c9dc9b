"""The test helpers' own clock: deadlines that a loaded machine does not bring forward."""

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.link.helpers import LogCollector, OwnTimeClock, ownTimeClock, secondsWaitedForCpu


class Waited:
    """A stand-in for the scheduler's figure of seconds waited for a CPU."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self):
        return self.seconds


class OwnTimeClockTests(TestCase):
    def setUp(self):
        self.wall = Clock()
        self.wall.advance(1000.0)
        self.waited = Waited()
        self.clock = OwnTimeClock(self.wall, self.waited, tick=0.01)
        self.clock.start()
        self.addCleanup(self.clock.stop)

    def test_followsTheWallClock(self):
        """With no time waited for a CPU, the clock keeps the wall clock's time and runs its calls."""
        fired = []
        self.clock.callLater(2.0, fired.append, "due")
        self.assertEqual(self.clock.seconds(), 1000.0)
        self.wall.pump([0.01] * 199)
        self.assertEqual(fired, [])
        self.wall.pump([0.01] * 2)
        self.assertEqual(fired, ["due"])
        self.assertAlmostEqual(self.clock.seconds(), 1002.01)

    def test_waitingForACpuDoesNotCount(self):
        """
        Wall time the process spent waiting for a CPU does not pass on the clock: a deadline of
        2 s is 2 s of the process running or sleeping, however long other processes held the CPUs.
        """
        fired = []
        self.clock.callLater(2.0, fired.append, "due")
        for _ in range(300):
            self.waited.seconds += 0.0075  # three quarters of every tick lost to other processes
            self.wall.advance(0.01)
        self.assertEqual(fired, [])
        self.assertAlmostEqual(self.clock.seconds(), 1000.75)
        for _ in range(600):
            self.waited.seconds += 0.0075
            self.wall.advance(0.01)
        self.assertEqual(fired, ["due"])

    def test_dueCallsAtOnce(self):
        """A call due now runs on the reactor's next turn, not at the next tick."""
        fired = []
        self.clock.callLater(0, fired.append, "now")
        self.wall.advance(0)
        self.assertEqual(fired, ["now"])

    def test_raisingCallLogged(self):
        """A call that raises is logged, as the reactor would, and later calls still run."""
        logs = LogCollector(self, namespace="tests.link.helpers")
        fired = []
        self.clock.callLater(0.01, lambda: 1 / 0)
        self.clock.callLater(0.02, fired.append, "after")
        self.wall.pump([0.01] * 3)
        self.assertEqual(fired, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(len(logs.having("a timed call raised", level="critical")), 1)

    def test_stop(self):
        """A stopped clock leaves nothing on the reactor and no longer moves."""
        self.clock.callLater(0, lambda: None)
        self.clock.stop()
        self.assertEqual(self.wall.getDelayedCalls(), [])
        self.wall.advance(5)
        self.assertEqual(self.clock.seconds(), 1000.0)

    def test_wallClockWhereUntold(self):
        """Where the system does not say how long the process waited, the clock is the wall clock."""
        clock = OwnTimeClock(self.wall, lambda: None)
        clock.start()
        self.addCleanup(clock.stop)
        self.wall.advance(0.5)
        self.assertEqual(clock.seconds(), 1000.5)

    def test_thisSystem(self):
        """On Linux the scheduler's figure is read; the test's clock is one, stopped at cleanup."""
        waited = secondsWaitedForCpu()
        if waited is None:
            raise self.skipTest("no scheduler statistics here")
        self.assertGreaterEqual(waited, 0.0)
        self.assertIsNone(secondsWaitedForCpu("/nonexistent/schedstat"))
        self.assertIs(ownTimeClock(self), ownTimeClock(self))
