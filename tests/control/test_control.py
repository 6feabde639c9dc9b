"""
The control socket and C{phantomctl}, end to end: real nodes in this process, C{phantomctl}
as a process. The fast tests are in L{tests.control.test_client} and L{tests.control.test_cli}.
"""

import hashlib
import ipaddress
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols import amp
from twisted.trial.unittest import TestCase

from phantom.address import formatAddress
from phantom.config import resolveConfig
from phantom.control import CONTROL_SOCKET
from phantom.control.commands import Status
from phantom.node import PhantomNode
from phantom.wire.dht import Table
from tests.link.helpers import freePort
from tests.path.helpers import PublishedRoutes

PHANTOMCTL = os.path.join(os.path.dirname(sys.executable), "phantomctl")


def shortDirectory(testCase):
    """A data directory short enough for a unix socket path, removed after the test."""
    path = tempfile.mkdtemp(prefix="ph-", dir="/tmp")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def startNode(testCase, address, bootstrap=None, **options):
    """
    Start a whole node in this process on C{address}, with its module API on a free port there
    and C{options} for L{resolveConfig}; it stops when the test ends.
    """
    config = resolveConfig(
        dataDir=shortDirectory(testCase),
        port=str(freePort(address)),
        listenAddress=address,
        bootstrap=bootstrap,
        apiAddress=f"{address}:{freePort(address)}",
        **options,
    )
    # Every node on 127.0.0.0/16, and entries wanted at once: as a testnet's configuration says.
    config = replace(config, path=replace(config.path, diversity="off", coarseEntries=False))
    node = PhantomNode(config, reactor)
    node.privilegedStartService()
    node.startService()
    testCase.addCleanup(node.stopService)
    return node


class ControlTests(TestCase):
    """C{phantomctl status} tells what the node is doing."""

    async def test_status(self):
        """The Status command answers the node id, address, uptime, links and peers."""
        first = startNode(self, "127.0.0.21")
        second = startNode(self, "127.0.0.22", bootstrap=first.address)
        await second.dht.joined
        self.assertTrue(len(first.dht.table) and len(second.dht.table) and second.links.peers())
        protocol = await connectProtocol(
            UNIXClientEndpoint(reactor, os.path.join(second.config.dataDir, CONTROL_SOCKET)), amp.AMP()
        )
        self.addCleanup(protocol.transport.loseConnection)
        status = await protocol.callRemote(Status)
        self.assertEqual(status["node_id"], second.nodeId.hex())
        self.assertEqual(status["listening"], second.address)
        self.assertGreaterEqual(status["uptime"], 0)
        self.assertEqual(status["links"], 1)
        [peer] = status["peers"]
        self.assertEqual((peer["node_id"], peer["address"], peer["outbound"]), (first.nodeId.hex(), first.address, 1))

    async def test_phantomctl(self):
        """The phantomctl command prints the status as text and as JSON."""
        first = startNode(self, "127.0.0.23")
        second = startNode(self, "127.0.0.24", bootstrap=first.address)
        await second.dht.joined
        self.assertTrue(len(first.dht.table))
        out, err, code = await getProcessOutputAndValue(
            PHANTOMCTL, ["--node", first.config.dataDir, "status", "--json"], env=os.environ
        )
        self.assertEqual(code, 0, err)
        status = json.loads(out)
        self.assertEqual(status["node_id"], first.nodeId.hex())
        self.assertEqual([p["node_id"] for p in status["peers"]], [second.nodeId.hex()])
        out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", first.config.dataDir, "status"], env=os.environ)
        self.assertEqual(code, 0, err)
        self.assertIn(first.nodeId.hex(), out.decode())
        self.assertIn("peers      1", out.decode())

    async def test_dhtPutGetAndPeers(self):
        """phantomctl dht put on one node and dht get on another; peers shows the routing table."""
        first = startNode(self, "127.0.0.26")
        second = startNode(self, "127.0.0.27", bootstrap=first.address)
        await second.dht.joined

        async def phantomctl(node, *args, expect=0):
            out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", node.config.dataDir, *args], env=os.environ)
            self.assertEqual(code, expect, err)
            return out.decode()

        stored = json.loads(await phantomctl(first, "dht", "put", "some key", "some value", "--ttl", "60", "--json"))
        self.assertEqual((stored["key"], stored["replicas"]), (hashlib.sha256(b"some key").hexdigest(), 1))
        found = json.loads(await phantomctl(second, "dht", "get", "--json", "some key"))
        self.assertEqual((found["found"], found["value"]), (True, "some value"))
        self.assertEqual(await phantomctl(second, "dht", "get", "some key"), "some value\n")
        missing = json.loads(await phantomctl(second, "dht", "get", "ab" * 32, "--json", expect=1))
        self.assertIn("nothing found", await phantomctl(second, "dht", "get", "ab" * 32, expect=1))
        self.assertEqual((missing["found"], missing["key"]), (False, "ab" * 32))
        peers = json.loads(await phantomctl(second, "peers", "--json"))
        self.assertEqual([c["node_id"] for c in peers["contacts"]], [first.nodeId.hex()])
        self.assertGreaterEqual(peers["lookups"], 1)
        self.assertIn("contacts   1 in 1 buckets", await phantomctl(second, "peers"))

    async def test_pathBuildListAndRouteLookup(self):
        """
        phantomctl path build on one node, path list, route lookup of its AP-address on another,
        and tunnel open from a third to that AP-address.
        """
        first = startNode(self, "127.0.0.60")
        others = [startNode(self, f"127.0.0.{61 + i}", bootstrap=first.address) for i in range(7)]
        for node in others:
            await node.dht.joined
        published = PublishedRoutes(node.dht for node in [first] + others)

        async def phantomctl(node, *args, expect=0):
            out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", node.config.dataDir, *args], env=os.environ)
            self.assertEqual(code, expect, err)
            return out.decode() if expect == 0 else err.decode()

        built = json.loads(await phantomctl(others[0], "path", "build", "--kind", "entry", "--x", "2", "--y", "3", "--json"))
        self.assertEqual((built["kind"], len(built["nodes"])), ("entry", 2))
        self.assertEqual(set(built["phases"]), {"plan", "round1", "round2", "link"})
        listed = json.loads(await phantomctl(others[0], "path", "list", "--json"))
        self.assertEqual([p["ap_address"] for p in listed["paths"]], [built["ap_address"]])
        await published.whenStored(bytes(ipaddress.IPv6Address(built["ap_address"]).packed))
        self.assertTrue(any(node.dht.store.records(Table.ROUTE) for node in [first] + others))
        route = json.loads(await phantomctl(others[5], "route", "lookup", built["ap_address"], "--json"))
        self.assertTrue(route["found"])
        self.assertEqual([n["node_id"] for n in route["entry_nodes"]], [built["nodes"][-1]])
        self.assertIn("not an AP-address", await phantomctl(others[5], "route", "lookup", "nonsense", expect=2))
        self.assertIn("not an AP-address", await phantomctl(others[5], "tunnel", "open", "2001:db8::1", expect=2))
        self.assertIn("two X-nodes", await phantomctl(others[0], "path", "build", "--x", "1", "--y", "2", expect=1))

        # A tunnel from another node's exit path to the entry path's AP-address, echoed by default.
        await phantomctl(others[3], "path", "build", "--kind", "exit", "--x", "2", "--y", "3")
        opened = json.loads(await phantomctl(others[3], "tunnel", "open", built["ap_address"], "--json"))
        self.assertEqual(opened["peer"], built["ap_address"])
        self.assertGreater(opened["rtt_seconds"], 0)
        self.assertIn("end-to-end TLS verified", await phantomctl(others[3], "tunnel", "open", built["ap_address"]))
        listed = json.loads(await phantomctl(others[3], "tunnel", "list", "--json"))
        self.assertEqual(listed["ap_address"], formatAddress(others[3].apAddress))
        unknown = formatAddress(b"\xfd" + bytes(15))
        self.assertIn("the exit node closed it", await phantomctl(others[3], "tunnel", "open", unknown, expect=1))

    async def test_noNode(self):
        """Asking a directory where no node runs fails with a message and exit code 1."""
        out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", shortDirectory(self), "status"], env=os.environ)
        self.assertEqual(code, 1)
        self.assertIn(b"no node answers", err)

    def test_controlSocketPrivate(self):
        """The control socket is accessible by the node's owner only."""
        node = startNode(self, "127.0.0.25")
        mode = os.stat(os.path.join(node.config.dataDir, CONTROL_SOCKET)).st_mode & 0o777
        self.assertEqual(mode, 0o600)

