"""
The Docker files: what can be checked without a Docker engine, the compose file with every
compose tool there is (v1 and v2), and C{make compose-demo} for real where an engine answers.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase, TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.path.join(ROOT, "docker")


def composeCommands():
    """The compose tools installed here that run: C{docker compose} (v2), C{docker-compose} (v1)."""
    found = []
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        if subprocess.run(command + ["version"], capture_output=True).returncode == 0:
            found.append(command)
    return found


def whyNoEngine():
    """Why C{make compose-demo} cannot run here, or C{None}."""
    if not composeCommands():
        return "neither docker compose nor docker-compose is installed"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no Docker engine answers ({(probe.stderr.strip().splitlines() or ['docker info failed'])[-1]})"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun for the containers' tun devices"
    return None


class DockerFilesTests(SynchronousTestCase):
    def read(self, name):
        with open(os.path.join(DOCKER, name)) as f:
            return f.read()

    def test_dockerfile(self):
        """
        The plugin cache is made at build time; the node runs as a user of its own with
        CAP_NET_ADMIN only; no pidfile; the health check is the cheap one.
        """
        dockerfile = self.read("Dockerfile")
        self.assertIn("getPlugins(IPlugin)", dockerfile)
        self.assertIn('HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["python3", "/usr/local/bin/phantom-healthcheck"]', dockerfile)
        entrypoint = self.read("entrypoint.sh")
        self.assertIn("setpriv --reuid phantom --regid phantom --init-groups --inh-caps +net_admin --ambient-caps +net_admin", entrypoint)
        self.assertIn("twistd -n --pidfile= phantom", entrypoint)
        self.assertIn("--tun phantom0", entrypoint)
        for name in ("entrypoint.sh", "healthcheck.py", "compose-demo.sh"):
            self.assertTrue(os.access(os.path.join(DOCKER, name), os.X_OK), name)

    def test_healthcheckBoxes(self):
        """The health check reads the keys of a whole AMP box, and waits for more of a partial one."""
        sys.path.insert(0, DOCKER)
        self.addCleanup(sys.path.remove, DOCKER)
        import healthcheck

        self.assertEqual(healthcheck.keys(healthcheck.box([(b"_answer", b"1"), (b"node_id", b"ab")])), [b"_answer", b"node_id"])
        for cut in range(1, 12):
            self.assertIsNone(healthcheck.keys(healthcheck.box([(b"_answer", b"1")])[:-cut]))

    def test_scriptsAreValidShell(self):
        """The entrypoint and the compose demo parse as POSIX shell."""
        sh = shutil.which("sh")
        if sh is None:
            raise self.skipTest("no sh")
        for name in ("entrypoint.sh", "compose-demo.sh"):
            subprocess.run([sh, "-n", os.path.join(DOCKER, name)], check=True)

    def test_composeConfig(self):
        """Every compose tool installed here (v1 and v2) accepts the compose file, with the project name from -p."""
        commands = composeCommands()
        if not commands:
            raise self.skipTest("neither docker-compose nor docker compose is installed here: the compose file is not validated")
        for command in commands:
            result = subprocess.run(
                command + ["-p", "phantomcheck", "-f", os.path.join(DOCKER, "compose.yml"), "config"], capture_output=True, text=True
            )
            self.assertEqual(result.returncode, 0, f"{' '.join(command)}: {result.stderr}")
            self.assertIn("PHANTOM_BOOTSTRAP: bootstrap:7402", result.stdout)
            self.assertIn("y = 4", result.stdout)


class HealthCheckTests(TestCase):
    async def test_answered(self):
        """The health check passes against a node's control socket (which answers Status), and fails where none listens."""
        from twisted.internet import reactor
        from twisted.internet.utils import getProcessValue

        from phantom.control.server import ControlService
        from tests.control.helpers import FakeNode

        directory = tempfile.mkdtemp(prefix="hc", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        script = os.path.join(DOCKER, "healthcheck.py")
        self.assertEqual(await getProcessValue(sys.executable, [script, os.path.join(directory, "control.sock")], env=os.environ), 1)
        control = ControlService(FakeNode(reactor), directory, reactor)
        control.startService()
        self.addCleanup(control.stopService)
        self.assertEqual(await getProcessValue(sys.executable, [script, control.path], env=os.environ), 0)


class ComposeDemoTests(SynchronousTestCase):
    """C{make compose-demo}, for real, where a Docker engine answers."""

    skip = whyNoEngine()

    def test_composeDemo(self):
        """The compose testnet comes up healthy, carries a checksummed transfer between two AP-addresses, and goes down."""
        result = subprocess.run(["make", "--no-print-directory", "compose-demo"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("12 of 12 containers healthy", result.stdout)
        self.assertIn("checksums match", result.stdout)
        self.assertIn("(its AP-address)", result.stdout)
