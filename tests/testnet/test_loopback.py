"""
Tests of the loopback testnet: its pure parts (layout, manifest, command lines, logs), its
process handling on harmless stand-in processes, and real testnets of C{twistd phantom} daemons
brought up and down through the C{phantom-testnet} command line.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from phantom.control import CONTROL_SOCKET
from phantom.control.server import MAX_UNIX_PATH
from phantom.testnet.cli import Options
from phantom.testnet.loopback import (
    LOG_FILE,
    LOOPBACK,
    MANIFEST,
    MAX_NODES,
    PID_FILE,
    ITestnet,
    LoopbackTestnet,
    Manifest,
    TestnetError,
    announcedNodeId,
    commandLineOf,
    lastLogMessage,
    loopbackAddress,
    manifestPath,
    nodeDataDirOf,
    nodeProcesses,
    planLoopback,
    signalNode,
    stopNodes,
    twistdCommandLine,
)

NODE_ID = "ab" * 32


def shortTemporaryDirectory(testCase):
    """
    A new directory under /tmp with a short path (control sockets live below it), removed on
    cleanup unless a process still uses it (then its manifest is kept for C{phantom-testnet down}).
    """
    directory = tempfile.mkdtemp(prefix="tn", dir="/tmp")

    def remove():
        if not processesMentioning(directory):
            shutil.rmtree(directory, ignore_errors=True)

    testCase.addCleanup(remove)
    return directory


def processesMentioning(text):
    """
    @return: the pids of every process whose command line contains C{text}, found without the
        code under test.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def isRunning(pid):
    """@return: whether process C{pid} exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


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


def randomPort():
    """A port in 20000-60000, away from the default 7402 of a developer's own testnet."""
    return random.randint(20000, 60000)


class PlanTests(SynchronousTestCase):
    """L{planLoopback} lays out nodes: addresses, names, files, bootstrap contacts, limits."""

    def test_addresses(self):
        """Node 1 is on 127.0.0.2, node I on 127.0.0.(I+1), every node on the same port."""
        manifest = planLoopback("/tmp/tn", 12, 23456)
        self.assertEqual([node.address for node in manifest.nodes], [f"127.0.0.{i}" for i in range(2, 14)])
        self.assertEqual({node.port for node in manifest.nodes}, {23456})
        self.assertEqual([node.index for node in manifest.nodes], list(range(1, 13)))
        self.assertEqual(loopbackAddress(250), "127.0.0.251")

    def test_files(self):
        """Each node has its own data directory in the testnet directory, with its log and pidfile in it."""
        manifest = planLoopback("/tmp/tn", 3)
        node = manifest.nodes[2]
        self.assertEqual(
            (node.name, node.dataDir, node.logFile, node.pidFile),
            ("node03", "/tmp/tn/node03", f"/tmp/tn/node03/{LOG_FILE}", f"/tmp/tn/node03/{PID_FILE}"),
        )
        self.assertEqual((manifest.mode, manifest.directory, manifest.port), (LOOPBACK, "/tmp/tn", 7402))
        self.assertEqual(manifest.path, f"/tmp/tn/{MANIFEST}")

    def test_relativeDirectory(self):
        """A relative directory is made absolute, so the nodes' paths do not depend on where they run."""
        manifest = planLoopback("tn", 1)
        self.assertEqual(manifest.nodes[0].dataDir, os.path.join(os.getcwd(), "tn", "node01"))

    def test_namesSortWithManyNodes(self):
        """With 100 nodes or more, names have three digits, so they sort in node order."""
        names = [node.name for node in planLoopback("/tmp/tn", 120).nodes]
        self.assertEqual(names[0], "node001")
        self.assertEqual(names, sorted(names))

    def test_bootstrap(self):
        """Node 1 bootstraps from nobody; every other node from node 1."""
        nodes = planLoopback("/tmp/tn", 4, 23456).nodes
        self.assertEqual(nodes[0].bootstrap, ())
        self.assertEqual({node.bootstrap for node in nodes[1:]}, {("127.0.0.2:23456",)})

    def test_nodeCount(self):
        """1 to 250 nodes are fine; fewer or more are refused with a message naming the limits."""
        self.assertEqual(len(planLoopback("/tmp/tn", 1).nodes), 1)
        self.assertEqual(planLoopback("/tmp/tn", MAX_NODES).nodes[-1].address, "127.0.0.251")
        for count in (0, -1, MAX_NODES + 1):
            error = self.assertRaises(TestnetError, planLoopback, "/tmp/tn", count)
            self.assertIn(f"1 to {MAX_NODES}", str(error))

    def test_port(self):
        """Port 1 leaves no room for the API port below it; ports above 65535 do not exist."""
        for port in (0, 1, 65536):
            self.assertRaises(TestnetError, planLoopback, "/tmp/tn", 2, port)

    def test_directoryTooLong(self):
        """A directory whose control socket paths would exceed the unix socket limit is refused."""
        longest = "/tmp/" + "d" * (MAX_UNIX_PATH - len("/tmp/") - len(f"/node01/{CONTROL_SOCKET}"))
        planLoopback(longest, 1)
        error = self.assertRaises(TestnetError, planLoopback, longest + "d", 1)
        self.assertIn("shorter directory", str(error))


class InterfaceTests(SynchronousTestCase):
    """The loopback mode is an L{ITestnet}, as the command line expects of every mode."""

    def test_provides(self):
        testnet = LoopbackTestnet.plan(reactor, "/tmp/tn", 2)
        self.assertTrue(verifyObject(ITestnet, testnet))
        self.assertEqual(testnet.manifest.mode, testnet.mode)


class ManifestTests(SynchronousTestCase):
    """A L{Manifest} survives JSON and the disk unchanged; anything else is refused clearly."""

    def test_jsonRoundTrip(self):
        manifest = planLoopback("/tmp/tn", 5, 23456)
        self.assertEqual(Manifest.fromJSON(json.loads(json.dumps(manifest.toJSON()))), manifest)

    def test_fileRoundTrip(self):
        directory = os.path.join(shortTemporaryDirectory(self), "tn")
        manifest = planLoopback(directory, 3)
        manifest.write()
        self.assertEqual(Manifest.read(directory), manifest)
        self.assertEqual(os.listdir(directory), [MANIFEST])

    def test_missing(self):
        directory = self.mktemp()
        error = self.assertRaises(TestnetError, Manifest.read, directory)
        self.assertIn(f"no testnet in {directory}", str(error))

    def test_malformed(self):
        """Bad JSON, another version, or a node entry lacking a field: each is a L{TestnetError}."""
        directory = shortTemporaryDirectory(self)
        good = planLoopback(directory, 2).toJSON()
        lacking = json.loads(json.dumps(good))
        del lacking["nodes"][1]["pidfile"]
        wrongType = json.loads(json.dumps(good))
        wrongType["nodes"][0]["port"] = "7402"
        for content in ("{not json", json.dumps({**good, "version": 99}), json.dumps(lacking), json.dumps(wrongType)):
            with open(manifestPath(directory), "w") as f:
                f.write(content)
            error = self.assertRaises(TestnetError, Manifest.read, directory)
            self.assertIn(manifestPath(directory), str(error))


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
            ],
        )  # fmt: skip

    def test_otherNode(self):
        node = planLoopback("/tmp/tn", 3, 23456).nodes[2]
        commandLine = twistdCommandLine(node, "/venv/bin/twistd", python="/venv/bin/python")
        self.assertEqual(commandLine[-2:], ["--bootstrap", "127.0.0.2:23456"])
        self.assertIn("127.0.0.4", commandLine)

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


async def runCommand(*arguments):
    """
    Run C{phantom-testnet ARGUMENTS} through its real entry point, in a child process.

    @return: (stdout, stderr, exit code), the outputs as text.
    """
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "phantom.testnet.cli", *arguments], env=os.environ, reactor=reactor
    )
    return out.decode(), err.decode(), code


class SystemTests(TestCase):
    """
    Real testnets: C{twistd phantom} daemons on loopback addresses, started, inspected and
    stopped through the C{phantom-testnet} command line.
    """

    timeout = 90

    def setUp(self):
        self.directory = shortTemporaryDirectory(self)
        self.port = randomPort()
        self.addCleanup(self.stopEverything)

    async def stopEverything(self):
        """Stop whatever the test left running, even when an assertion failed."""
        if os.path.exists(manifestPath(self.directory)):
            await LoopbackTestnet(Manifest.read(self.directory), reactor).down()

    def assertNothingLeft(self):
        """No process mentions the testnet directory, waiting out zombies not yet reaped."""
        left = [pid for pid in processesMentioning(self.directory) if isRunning(pid)]
        self.assertEqual(left, [], f"processes left: {[commandLineOf(pid) for pid in left]}")

    async def status(self):
        out, err, code = await runCommand("status", "--dir", self.directory, "--json")
        self.assertEqual(code, 0, err)
        return json.loads(out)

    async def test_upStatusDown(self):
        """
        C{up} starts 12 nodes that each have a peer; C{status} says so, and then notices a node
        that died; another C{up} in the same directory is refused without harm; C{down} leaves
        no process, and can be repeated.
        """
        out, err, code = await runCommand("up", "--nodes", "12", "--dir", self.directory, "--port", str(self.port))
        self.assertEqual(code, 0, err)
        self.assertIn("12 of 12 nodes alive", out)

        status = await self.status()
        nodes = status["nodes"]
        self.assertEqual(len(nodes), 12)
        self.assertEqual([node["alive"] for node in nodes], [True] * 12)
        self.assertEqual([node["peers"] >= 1 for node in nodes], [True] * 12)
        self.assertEqual(nodes[0]["peers"], 11)
        self.assertEqual(len({node["node_id"] for node in nodes}), 12)
        self.assertEqual({node["port"] for node in nodes}, {self.port})
        self.assertEqual(nodes[11]["address"], "127.0.0.13")
        for node in nodes:
            with open(f"/proc/{node['pid']}/cmdline", "rb") as f:
                self.assertIn(f"--data-dir\0{node['data_dir']}\0".encode(), f.read())

        again = LoopbackTestnet.plan(reactor, self.directory, 3, self.port)
        error = await self.assertFailure(Deferred.fromCoroutine(again.up()), TestnetError)
        self.assertIn("run already", str(error))

        os.kill(nodes[11]["pid"], signal.SIGKILL)
        status = await self.status()
        self.assertEqual(sum(node["alive"] for node in status["nodes"]), 11)
        dead = status["nodes"][11]
        self.assertEqual((dead["alive"], dead["peers"], dead["node_id"]), (False, None, nodes[11]["node_id"]))

        out, err, code = await runCommand("down", "--dir", self.directory)
        self.assertEqual(code, 0, err)
        self.assertIn("stopped 11 node processes", out)
        self.assertNothingLeft()
        out, err, code = await runCommand("down", "--dir", self.directory)
        self.assertEqual(code, 0, err)
        self.assertIn("no node", out)

    async def test_failedUp(self):
        """
        When a node cannot listen, C{up} says which and why, exits 1 and stops every node it
        started; C{down} afterwards finds nothing left to stop.
        """
        occupier = socket.socket()
        self.addCleanup(occupier.close)
        occupier.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        occupier.bind(("127.0.0.5", self.port))
        occupier.listen()

        out, err, code = await runCommand("up", "--nodes", "6", "--dir", self.directory, "--port", str(self.port))
        self.assertEqual(code, 1, err)
        self.assertIn(f"node04 (127.0.0.5:{self.port}) did not start", err)
        self.assertIn("Address already in use", err)
        self.assertNothingLeft()

        status = await self.status()
        self.assertEqual([node["alive"] for node in status["nodes"]], [False] * 6)
        out, err, code = await runCommand("down", "--dir", self.directory)
        self.assertEqual(code, 0, err)
        self.assertNothingLeft()

    async def test_timeout(self):
        """
        C{up} that runs out of time (a node alone has no peer) fails with a message naming the
        nodes without peers, and stops them.
        """
        testnet = LoopbackTestnet.plan(reactor, self.directory, 1, self.port)
        error = await self.assertFailure(Deferred.fromCoroutine(testnet.up(timeout=3)), TestnetError)
        self.assertIn("after 3 s, these nodes have no peer: node01", str(error))
        self.assertNothingLeft()


class UsageTests(TestCase):
    """The command line refuses what it cannot do: exit code 2 for usage, 1 for failures."""

    def test_usage(self):
        """A missing --nodes, --dir or command, an unknown mode, or a bad timeout is a usage error."""
        for arguments in (
            ["up", "--dir", "/tmp/tn-never"],
            ["up", "--nodes", "3"],
            ["up", "--nodes", "three", "--dir", "/tmp/tn-never"],
            ["up", "--nodes", "3", "--dir", "/tmp/tn-never", "--mode", "vm"],
            ["up", "--nodes", "3", "--dir", "/tmp/tn-never", "--timeout", "0"],
            ["status"],
            ["down"],
            [],
        ):
            self.assertRaises(usage.UsageError, Options().parseOptions, arguments)

    async def test_usageExitCode(self):
        out, err, code = await runCommand("up", "--dir", "/tmp/tn-never")
        self.assertEqual(code, 2)
        self.assertIn("phantom-testnet: --nodes is needed", err)

    async def test_tooManyNodes(self):
        """Too many nodes is refused before anything is written."""
        out, err, code = await runCommand("up", "--nodes", "251", "--dir", "/tmp/tn-never")
        self.assertEqual((code, err.strip()), (1, "phantom-testnet: a loopback testnet has 1 to 250 nodes, not 251"))
        self.assertFalse(os.path.exists("/tmp/tn-never"))

    async def test_noTestnet(self):
        """C{status} and C{down} of a directory without a manifest say so and exit 1."""
        directory = shortTemporaryDirectory(self)
        for command in ("status", "down"):
            out, err, code = await runCommand(command, "--dir", directory)
            self.assertEqual(code, 1)
            self.assertIn(f"no testnet in {directory}", err)
