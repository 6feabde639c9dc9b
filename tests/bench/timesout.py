"""
Not collected by the suite: a bench-like test that times out, run by
L{tests.bench.test_bench.SessionTests} in a trial of its own, to show that its cleanup ends the
child it started and the child's own child. C{PIDS_FILE} in the environment names the file the
child writes both pids to.
"""

from twisted.trial.unittest import TestCase

from tests.bench.helpers import runInOwnSession

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["PIDS_FILE"], "w") as pids:
    pids.write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""


class TimesOut(TestCase):
    timeout = 3

    async def test_hangs(self):
        await runInOwnSession(self, "-c", PARENT)
