"""
Tests of the loopback mode: laying out nodes on loopback addresses, and real testnets of
C{twistd phantom} daemons brought up and down through the C{phantom-testnet} command line.
"""

import json
import os
import random
import signal
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from phantom.control import CONTROL_SOCKET
from phantom.control import MAX_UNIX_PATH
from phantom.testnet.interfaces import ITestnet
from phantom.testnet.loopback import LOOPBACK, MAX_NODES, LoopbackTestnet, ephemeralPorts, loopbackAddress, planLoopback, sharedPort
from phantom.testnet.manifest import LOG_FILE, MANIFEST, PID_FILE, Manifest, TestnetError, manifestPath
from phantom.testnet.processes import commandLineOf
from tests.testnet.helpers import isRunning, processesMentioning, runCommand, shortTemporaryDirectory


def randomPort():
    """A port away from the default 7402 of a developer's own testnet, and from others' (L{sharedPort})."""
    return sharedPort()


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


class SharedPortTests(SynchronousTestCase):
    """Testnets side by side take ports no outgoing connection of the other can hold."""

    def test_belowTheEphemeralRange(self):
        """The port and the API port below it lie under the kernel's ephemeral ports, from 20000 up."""
        for seed in range(200):
            port = sharedPort(random.Random(seed), lambda: (32768, 60999))
            self.assertTrue(20000 < port < 32768, port)

    def test_aboveALowRange(self):
        """Where the ephemeral range starts low, the port lies above it."""
        for seed in range(200):
            self.assertTrue(40002 <= sharedPort(random.Random(seed), lambda: (1024, 40000)) < 65536)

    def test_thisSystem(self):
        """The range is read from the kernel; a missing or garbled file gives Linux's default."""
        first, last = ephemeralPorts()
        self.assertLessEqual(first, last)
        self.assertEqual(ephemeralPorts("/nonexistent"), (32768, 60999))


class InterfaceTests(SynchronousTestCase):
    """The loopback mode is an L{ITestnet}, as the command line expects of every mode."""

    def test_provides(self):
        testnet = LoopbackTestnet.plan(reactor, "/tmp/tn", 2)
        self.assertTrue(verifyObject(ITestnet, testnet))
        self.assertEqual(testnet.manifest.mode, testnet.mode)


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
        # Long enough for a node to start on a loaded machine: the peer stage is what runs out.
        testnet = LoopbackTestnet.plan(reactor, self.directory, 1, self.port)
        error = await self.assertFailure(Deferred.fromCoroutine(testnet.up(timeout=20)), TestnetError)
        self.assertIn("after 20 s, these nodes have no peer: node01", str(error))
        self.assertNothingLeft()

    async def test_startTimeout(self):
        """
        C{up} whose nodes do not start in time (a twistd that never returns) fails with a message
        naming those still starting, and stops them.
        """
        hanging = os.path.join(self.directory, "twistd")
        with open(hanging, "w") as script:
            script.write("import time\ntime.sleep(600)\n")
        testnet = LoopbackTestnet(planLoopback(self.directory, 2, self.port), reactor, twistd=hanging)
        error = await self.assertFailure(Deferred.fromCoroutine(testnet.up(timeout=1)), TestnetError)
        self.assertIn("did not all start within 1 s (still starting: node01, node02)", str(error))
        self.assertNothingLeft()
