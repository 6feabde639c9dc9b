"""contrib/phantom.service passes systemd-analyze verify, with and without the --tun capabilities."""

import os
import re
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(ROOT, "contrib", "phantom.service")
ANALYZE = shutil.which("systemd-analyze")


class ServiceFileTests(SynchronousTestCase):
    """The systemd unit."""

    def setUp(self):
        with open(UNIT) as f:
            self.unit = f.read()

    def verify(self, text):
        # verify checks that ExecStart's program exists: this virtualenv's twistd stands in.
        directory = self.mktemp()
        os.mkdir(directory)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        with open(os.path.join(directory, "phantom.service"), "w") as f:
            f.write(text.replace("/opt/phantom/bin/twistd", twistd))
        done = subprocess.run([ANALYZE, "verify", "./phantom.service"], cwd=directory, capture_output=True, text=True, timeout=60)
        self.assertEqual((done.returncode, done.stderr.strip()), (0, ""))

    def test_verify(self):
        """As shipped: no capability at all."""
        if ANALYZE is None:
            raise self.skipTest("no systemd-analyze here")
        self.verify(self.unit)

    def test_verifyWithTun(self):
        """With the two --tun lines uncommented: CAP_NET_ADMIN, and only it."""
        if ANALYZE is None:
            raise self.skipTest("no systemd-analyze here")
        withTun = re.sub(r"^#((CapabilityBoundingSet|AmbientCapabilities)=CAP_NET_ADMIN)$", r"\1", self.unit, flags=re.M)
        self.assertEqual(withTun.count("\nAmbientCapabilities=CAP_NET_ADMIN"), 1)
        self.verify(withTun)

    def test_shape(self):
        """twistd in the foreground, as the phantom user, its state directory, the hardening options."""
        for line in ("User=phantom", "StateDirectory=phantom", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
            self.assertIn(f"\n{line}\n", self.unit)
        self.assertRegex(self.unit, r"\nExecStart=\S+/twistd -n .*phantom --data-dir /var/lib/phantom")
