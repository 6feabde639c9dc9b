"""The phantomctl benchmark at its smallest: one run of each way against a real node."""

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from bench import BENCHMARKS, ctl


class Options:
    rounds = 1


class CtlBenchTests(SynchronousTestCase):
    """python -m bench ctl."""

    def test_result(self):
        """One round gives the figure and its baseline, both CPU seconds."""
        result = self.successResultOf(ctl.measure(reactor, Options()))
        self.assertEqual(BENCHMARKS["ctl"], "bench.ctl")
        self.assertEqual(set(result.figures), {"status_cpu_s"})
        self.assertGreater(result.figures["status_cpu_s"], 0)
        self.assertGreater(result.baseline["status_cpu_s"], 0)
