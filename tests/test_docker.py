"""The Docker files: what can be checked without a Docker engine, and the compose file where a compose tool exists."""

import os
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from phantom.config import resolveConfig

DOCKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docker")


class DockerFilesTests(SynchronousTestCase):
    def read(self, name):
        with open(os.path.join(DOCKER, name)) as f:
            return f.read()

    def test_dockerfile(self):
        """The plugin cache is made at build time; the node drops to a user of its own; no pidfile."""
        dockerfile = self.read("Dockerfile")
        self.assertIn("getPlugins(IPlugin)", dockerfile)
        self.assertIn("HEALTHCHECK", dockerfile)
        entrypoint = self.read("entrypoint.sh")
        self.assertIn("--pidfile= --uid phantom --gid phantom phantom", entrypoint)
        self.assertIn("--tun phantom0", entrypoint)
        self.assertTrue(os.access(os.path.join(DOCKER, "entrypoint.sh"), os.X_OK))

    def test_testnetConfig(self):
        """
        The compose network is one /48: its nodes get a configuration that turns the X-node
        diversity rule off (issue 12, finding 5); the image alone keeps it on.
        """
        config = resolveConfig(configFile=os.path.join(DOCKER, "testnet.ini"))
        self.assertEqual((config.path.diversity, config.path.coarseEntries), ("off", False))
        self.assertIn("COPY docker/testnet.ini /etc/phantom/testnet.ini", self.read("Dockerfile"))
        self.assertEqual(self.read("compose.yml").count("PHANTOM_CONFIG: /etc/phantom/testnet.ini"), 2)
        self.assertIn('--config "$PHANTOM_CONFIG"', self.read("entrypoint.sh"))

    def test_entrypointIsValidShell(self):
        """The entrypoint parses as POSIX shell."""
        sh = shutil.which("sh")
        if sh is None:
            raise self.skipTest("no sh")
        subprocess.run([sh, "-n", os.path.join(DOCKER, "entrypoint.sh")], check=True)

    def test_composeConfig(self):
        """C{docker compose config} (or C{docker-compose config}) accepts the compose file."""
        for command in (["docker-compose"], ["docker", "compose"]):
            if shutil.which(command[0]) is None:
                continue
            probe = subprocess.run(command + ["version"], capture_output=True)
            if probe.returncode != 0:
                continue
            result = subprocess.run(command + ["-f", os.path.join(DOCKER, "compose.yml"), "config", "--quiet"], capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stderr)
            return
        raise self.skipTest("neither docker-compose nor docker compose is installed here: the compose file is not validated")
