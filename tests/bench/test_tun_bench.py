"""
The tun benchmark: a tiny run on a real netns testnet and the raw tunnel beside it. Nothing here
asserts a speed: the test checks the figures' shape, and that no namespace is left behind.
"""

import json
import os
import shutil
import tempfile

from twisted.trial.unittest import TestCase

from bench import BENCHMARKS
from phantom.testnet.netns import tagOf, whyNotAvailable
from tests.bench.helpers import runBench
from tests.testnet.helpers import runCommand


class TunBenchmarkTests(TestCase):
    skip = whyNotAvailable()
    timeout = 300

    def test_registered(self):
        self.assertEqual(BENCHMARKS["tun"], "bench.tun")

    async def test_tinyRun(self):
        """
        A small run prints both figures and their baseline, positive, and leaves none of its
        namespaces behind (those of this run's testnet: other testnets may come and go meanwhile).
        """
        from pyroute2 import netns

        directory = tempfile.mkdtemp(prefix="bt", dir="/tmp")  # short: control sockets live in it
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        # If the bench is stopped before it takes its testnet down, the daemons are not in its session.
        self.addCleanup(runCommand, "down", "--dir", directory)
        ours = f"ph{tagOf(directory)}"
        out, err, code = await runBench(
            self,
            "tun", "--json", "--nodes", "8", "--mib", "1", "--rounds", "1", "--pings", "3", "--directory", directory
        )
        self.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        result = json.loads(out)
        self.assertEqual(set(result["figures"]), {"tcp_throughput_mib_s", "ping_rtt_ms"})
        self.assertEqual(set(result["baseline"]), set(result["figures"]))
        for value in list(result["figures"].values()) + list(result["baseline"].values()):
            self.assertGreater(value, 0)
        self.assertEqual([name for name in netns.listnetns() if name.startswith(ours)], [])
        self.assertTrue(os.path.exists(os.path.join(directory, "testnet.json")), os.listdir(directory))
