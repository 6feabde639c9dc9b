"""
Startup mistakes under a real ``twistd -n phantom``: each ends the process with exit code 1 and
one line naming the fix, never a traceback; and two nodes on one host start with default options.
"""

import os
import shutil
import socket
import subprocess

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.config import configSchema
from tests.control.test_control import shortDirectory
from tests.link.helpers import freePort, freshLoopbackAddress
from tests.system.test_node import TWISTD, NodeProcess, startNodeProcess

SETPRIV = shutil.which("setpriv")


def runTwistd(args, prefix=(), timeout=30):
    """Run C{twistd -n phantom ARGS}; @return: (exit code, the lines it printed)."""
    argv = [*prefix, TWISTD, "-n", "--pidfile=", "--logfile=-", "phantom", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=os.environ)
    return done.returncode, (done.stdout + done.stderr).splitlines()


class StartupMistakeTests(SynchronousTestCase):
    """One test per mistake: exit code 1, one line that names the fix, no traceback."""

    def setUp(self):
        self.address = freshLoopbackAddress()

    def assertOneLine(self, args, *expected, prefix=()):
        code, lines = runTwistd(args, prefix)
        output = "\n".join(lines)
        self.assertEqual(code, 1, output)
        self.assertNotIn("Traceback", output)
        errors = [line for line in lines if "phantom: " in line]
        self.assertEqual(len(errors), 1, output)
        for text in expected:
            self.assertIn(text, errors[0])
        return errors[0]

    def node(self, *extra, dataDir=None, port=None):
        return [
            "--port", str(port or freePort(self.address)), "--listen-address", self.address,
            "--data-dir", dataDir or shortDirectory(self), *extra,
        ]

    def occupied(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((self.address, 0))
        listener.listen()
        return listener.getsockname()[1]

    def test_tlsPortInUse(self):
        """The TLS port in use: give another --port."""
        self.assertOneLine(self.node(port=self.occupied()), "Address already in use", "--port")

    def test_daemonTlsPortInUse(self):
        """Daemonized (no -n), the launcher exits 1 at once, and the log has the one line."""
        directory = shortDirectory(self)
        log = os.path.join(directory, "node.log")
        argv = [TWISTD, f"--pidfile={directory}/twistd.pid", f"--logfile={log}", "phantom", *self.node(port=self.occupied(), dataDir=directory)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertNotIn("Traceback", done.stdout + done.stderr)
        with open(log) as f:
            logged = f.read()
        self.assertNotIn("Traceback", logged)
        self.assertEqual(len([line for line in logged.splitlines() if "Address already in use" in line]), 1, logged)

    def test_apiPortInUse(self):
        """The module API's port in use: give another --api-address."""
        self.assertOneLine(self.node("--api-address", f"{self.address}:{self.occupied()}"), "Address already in use", "--api-address")

    def test_metricsPortInUse(self):
        """The metrics port in use: give another --metrics-address."""
        self.assertOneLine(self.node("--metrics-address", f"{self.address}:{self.occupied()}"), "Address already in use", "--metrics-address")

    def test_dataDirIsFile(self):
        """--data-dir naming a file."""
        path = os.path.join(shortDirectory(self), "file")
        open(path, "w").close()
        self.assertOneLine(self.node(dataDir=path), "is a file", "--data-dir")

    def test_unwritableDataDir(self):
        """A data dir this user cannot write (run as nobody where the test runs as root)."""
        parent = shortDirectory(self)
        if os.geteuid() == 0:
            if SETPRIV is None:
                raise self.skipTest("root, and no setpriv to become another user")
            prefix = [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups"]
        else:
            prefix = []
            os.chmod(parent, 0o500)
            self.addCleanup(os.chmod, parent, 0o700)
        self.assertOneLine(self.node(dataDir=os.path.join(parent, "node")), "not writable", "--data-dir", prefix=prefix)

    def test_tunWithoutCapability(self):
        """--tun without CAP_NET_ADMIN: the line says so (from whyNoTunDevice)."""
        if os.geteuid() == 0:
            if SETPRIV is None:
                raise self.skipTest("root, and no setpriv to drop CAP_NET_ADMIN")
            prefix = [SETPRIV, "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
        else:
            prefix = []
        self.assertOneLine(self.node("--tun", "phtest0"), "CAP_NET_ADMIN", "--tun", prefix=prefix)

    def test_badConfigFile(self):
        """An unknown key in the config file."""
        path = os.path.join(shortDirectory(self), "phantom.ini")
        with open(path, "w") as f:
            f.write("[dht]\np2p_adress = 127.0.0.1:7402\n")
        self.assertOneLine(self.node("--config", path), path, "p2p_adress", "valid keys")


    def test_unwritableLogFile(self):
        """A JSON lines log file that cannot be opened."""
        path = os.path.join(shortDirectory(self), "phantom.ini")
        with open(path, "w") as f:
            f.write("[phantom]\nlog_json = /nonexistent/log.json\n")
        self.assertOneLine(self.node("--config", path), "/nonexistent/log.json", "log_json")


class SecondNodeTests(TestCase):
    """A second node on the same data directory, and two nodes side by side."""

    timeout = 60

    def kill(self, node):
        if not node.ended.called:
            node.transport.signalProcess("KILL")
        return node.ended

    async def test_sameDataDir(self):
        """A second node on a running node's data directory stops at once, naming the fix."""
        address = freshLoopbackAddress()
        dataDir = shortDirectory(self)
        first = startNodeProcess(self, dataDir, freePort(address), address)
        await first.ready
        second = NodeProcess()
        args = [
            TWISTD, "-n", "--pidfile=", "--logfile=-", "phantom", "--port", str(freePort(address)),
            "--listen-address", address, "--data-dir", dataDir,
        ]
        reactor.spawnProcess(second, TWISTD, args, env=os.environ)
        second.ready.addErrback(lambda _: None)
        self.assertEqual(await second.ended, "exit 1")
        output = second.output.decode()
        self.assertNotIn("Traceback", output)
        self.assertEqual(len([line for line in output.splitlines() if "another node is running" in line]), 1, output)
        first.transport.signalProcess("TERM")
        await first.ended

    async def test_twoNodesDefaultOptions(self):
        """
        Two nodes on one host, each with only its own data directory and port, both start: the
        module API listens only when --api-address is given.
        """
        address = freshLoopbackAddress()
        nodes = []
        for _ in range(2):
            node = NodeProcess()
            args = [
                TWISTD, "-n", "--pidfile=", "--logfile=-", "phantom", "--port", str(freePort(address)),
                "--listen-address", address, "--data-dir", shortDirectory(self),
            ]
            node.transport = reactor.spawnProcess(node, TWISTD, args, env=os.environ)
            self.addCleanup(self.kill, node)
            nodes.append(node)
        for node in nodes:
            await node.ready
            self.assertNotIn(b"DHT module API listening", node.output)
        for node in nodes:
            node.transport.signalProcess("TERM")
            self.assertEqual(await node.ended, "signal 15")


class PrintConfigTests(SynchronousTestCase):
    """twistd phantom --print-config, as an operator runs it."""

    def test_valid(self):
        """Exit 0; every key of the schema, with its source; nothing started."""
        path = os.path.join(shortDirectory(self), "phantom.ini")
        with open(path, "w") as f:
            f.write("[link]\nidle_timeout = 45\n")
        done = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "phantom", "--config", path, "--port", "7999", "--print-config"],
            capture_output=True, text=True, timeout=30, env=os.environ,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("idle_timeout = 45", done.stdout)
        self.assertIn(f"; file {path}", done.stdout)
        self.assertRegex(done.stdout, r"p2p_address = 0\.0\.0\.0:7999 +; command line")
        self.assertEqual(len([line for line in done.stdout.splitlines() if " = " in line]), len(configSchema()))

    def test_invalid(self):
        """Exit 1 and one line when the configuration is invalid."""
        code, lines = runTwistd(["--listen-address", "nowhere", "--print-config"])
        self.assertEqual(code, 1)
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", lines[0])
