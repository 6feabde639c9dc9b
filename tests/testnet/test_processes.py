"""
Tests of L{phantom.testnet.processes}: node command lines and recognising them, reading node
logs, and finding and stopping node processes on harmless stand-in processes.
"""

import os
import signal
import subprocess
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.config import resolveConfig
from phantom.testnet.loopback import planLoopback
from phantom.testnet.nodeconfig import writeNodeConfig
from phantom.testnet.processes import (
    announcedNodeId,
    commandLineOf,
    lastLogMessage,
    nodeDataDirOf,
    nodeProcesses,
    queryStatus,
    signalNode,
    stopNodes,
    twistdCommandLine,
)
from phantom.control.server import ControlService
from tests.control.helpers import NODE_ID as NODE_ID_BYTES, FakeNode
from tests.testnet.helpers import isRunning, shortTemporaryDirectory

NODE_ID = "ab" * 32


def standIn(testCase, dataDir, ignoreTerm=False):
    """
    Start a harmless process whose command line reads like C{twistd ... phantom --data-dir
    DATADIR}, and wait until it runs (until then, /proc may show no command line); it is
    killed on cleanup.

    @param ignoreTerm: whether it ignores SIGTERM.
    @return: the C{subprocess.Popen}.
    """
    program = "import signal, sys, time\n"
    if ignoreTerm:
        program += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    program += "print('running', flush=True)\ntime.sleep(60)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", program, "twistd", "phantom", "--data-dir", dataDir], stdout=subprocess.PIPE
    )

    def stop():
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()

    testCase.addCleanup(stop)
    process.stdout.readline()
    return process


class CommandLineTests(SynchronousTestCase):
    """The twistd command line of each node, and recognising node processes by theirs."""

    def test_bootstrapNode(self):
        node = planLoopback("/tmp/tn", 3, 23456).nodes[0]
        self.assertEqual(
            twistdCommandLine(node, "/venv/bin/twistd", python="/venv/bin/python"),
            [
                "/venv/bin/python", "/venv/bin/twistd",
                "--pidfile", "/tmp/tn/node01/twistd.pid",
                "--logfile", "/tmp/tn/node01/node.log",
                "phantom",
                "--port", "23456",
                "--listen-address", "127.0.0.2",
                "--data-dir", "/tmp/tn/node01",
                "--api-address", "127.0.0.2:23455",
                "--config", "/tmp/tn/node01/phantom.conf",
            ],
        )  # fmt: skip

    def test_otherNode(self):
        node = planLoopback("/tmp/tn", 3, 23456).nodes[2]
        commandLine = twistdCommandLine(node, "/venv/bin/twistd", python="/venv/bin/python")
        self.assertEqual(commandLine[-2:], ["--bootstrap", "127.0.0.2:23456"])
        self.assertIn("127.0.0.4", commandLine)

    def test_nodeConfig(self):
        """
        Every node is started with a configuration that turns the X-node diversity rule off, as
        a testnet on one /16 must, and publishes routing entries at once.
        """
        node = planLoopback(shortTemporaryDirectory(self), 3, 23456).nodes[1]
        os.makedirs(node.dataDir)
        config = resolveConfig(configFile=writeNodeConfig(node.dataDir, 3))
        self.assertEqual((config.path.diversity, config.path.coarseEntries), ("off", False))

    def test_recognised(self):
        """The data directory of each node is read back from the command line that starts it."""
        for node in planLoopback("/tmp/tn", 3).nodes:
            self.assertEqual(nodeDataDirOf(twistdCommandLine(node, "/venv/bin/twistd")), node.dataDir)
        self.assertEqual(nodeDataDirOf(["twistd", "-n", "phantom", "--data-dir=/x"]), "/x")

    def test_othersNotRecognised(self):
        """The testnet's own command, phantomctl, another twistd plugin: none is a node."""
        for commandLine in (
            [sys.executable, "-m", "phantom.testnet.cli", "down", "--dir", "/tmp/tn"],
            ["/venv/bin/phantomctl", "--node", "/tmp/tn/node01", "status"],
            ["/venv/bin/twistd", "web", "--path", "/tmp/tn/node01", "--data-dir", "/tmp/tn/node01"],
            ["/venv/bin/twistd", "phantom"],
            [],
        ):
            self.assertIsNone(nodeDataDirOf(commandLine), commandLine)


class LogTests(SynchronousTestCase):
    """Reading a node's log: its announcement, and its last message (why it failed)."""

    def setUp(self):
        self.path = self.mktemp()
        with open(self.path, "w") as f:
            f.write(
                "2026-01-01T00:00:00+0000 [-] Factory starting\n"
                f"2026-01-01T00:00:00+0000 [phantom.node.PhantomNode#info] phantom node {NODE_ID} "
                "listening on 127.0.0.2:7402\n"
            )
        self.offset = os.path.getsize(self.path)
        with open(self.path, "a") as f:
            f.write("2026-01-01T00:00:01+0000 [stderr#error] CannotListenError: Address already in use.\n\n")

    def test_announcement(self):
        self.assertEqual(announcedNodeId(self.path), NODE_ID)
        self.assertIsNone(announcedNodeId(self.path, self.offset))
        self.assertIsNone(announcedNodeId(self.path + ".missing"))

    def test_lastMessage(self):
        self.assertEqual(lastLogMessage(self.path, self.offset), "CannotListenError: Address already in use.")
        self.assertIsNone(lastLogMessage(self.path + ".missing"))

    def test_rotated(self):
        """An offset beyond the end (the log was rotated) reads the log from its start."""
        self.assertEqual(announcedNodeId(self.path, 10**6), NODE_ID)


class ProcessTests(TestCase):
    """Finding and stopping node processes, on stand-ins that only look like nodes."""

    def setUp(self):
        self.nodes = planLoopback(shortTemporaryDirectory(self), 2).nodes

    def test_commandLineOf(self):
        """A process's command line is read from /proc; a process that does not exist has none."""
        process = standIn(self, "/x")
        self.assertEqual(commandLineOf(process.pid)[0], sys.executable)
        self.assertEqual(commandLineOf(process.pid)[-2:], ["--data-dir", "/x"])
        self.assertIsNone(commandLineOf(2**22 + 1))

    def test_found(self):
        """Processes are found by the data directory in their command line, and only those."""
        first = standIn(self, self.nodes[0].dataDir)
        standIn(self, self.nodes[0].dataDir + "x")
        found = nodeProcesses(self.nodes)
        self.assertEqual(found, {self.nodes[0]: [first.pid], self.nodes[1]: []})

    def test_signalOnlyTheNode(self):
        """A process that does not run the node is never signalled, whatever its pid."""
        other = standIn(self, self.nodes[1].dataDir)
        self.assertFalse(signalNode(other.pid, self.nodes[0], signal.SIGTERM))
        self.assertFalse(signalNode(os.getpid(), self.nodes[0], signal.SIGTERM))
        self.assertTrue(isRunning(other.pid))
        self.assertTrue(signalNode(other.pid, self.nodes[1], signal.SIGTERM))
        self.assertEqual(other.wait(), -signal.SIGTERM)

    async def test_stop(self):
        """Every process of the nodes is stopped; a process of another data directory is untouched."""
        mine = [standIn(self, node.dataDir) for node in self.nodes]
        theirs = standIn(self, "/tmp/somebody-else/node01")
        stopped = await Deferred.fromCoroutine(stopNodes(reactor, self.nodes))
        self.assertEqual(stopped, 2)
        self.assertEqual([process.wait() for process in mine], [-signal.SIGTERM] * 2)
        self.assertTrue(isRunning(theirs.pid))

    async def test_stopKillsStubbornProcesses(self):
        """A process that ignores SIGTERM is killed after the timeout."""
        stubborn = standIn(self, self.nodes[0].dataDir, ignoreTerm=True)
        stopped = await Deferred.fromCoroutine(stopNodes(reactor, self.nodes, timeout=0.5))
        self.assertEqual(stopped, 1)
        self.assertEqual(stubborn.wait(), -signal.SIGKILL)

    async def test_stopRemovesStalePidFiles(self):
        """With nothing running, a pidfile left by a killed node is removed; stopping twice is fine."""
        os.makedirs(self.nodes[0].dataDir)
        with open(self.nodes[0].pidFile, "w") as f:
            f.write(str(os.getpid()))
        for _ in range(2):
            self.assertEqual(await Deferred.fromCoroutine(stopNodes(reactor, self.nodes)), 0)
        self.assertFalse(os.path.exists(self.nodes[0].pidFile))


class QueryStatusTests(TestCase):
    """L{queryStatus} asks a node's control socket, and tells when nobody answers."""

    async def test_answered(self):
        """A node answers its status: as the control client gives it."""
        directory = shortTemporaryDirectory(self)
        service = ControlService(FakeNode(reactor), directory, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        status = await queryStatus(reactor, directory)
        self.assertEqual((status["node_id"], status["peers"]), (NODE_ID_BYTES.hex(), []))

    async def test_nobody(self):
        """Where no node listens, the status is C{None}."""
        self.assertIsNone(await queryStatus(reactor, shortTemporaryDirectory(self)))
