"""
Nodes that run themselves: a loopback testnet started with defaults, in which every node builds
its entry path at start and any node opens a tunnel to any other's AP-address with no manual
step, again after the owner of an AP-address restarts. The times are measured and printed.

PHANTOM_REACHABLE_NODES sets how many nodes (default 20).
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from phantom.config import PathSettings
from phantom.control.client import ControlClient, ControlError
from phantom.testnet.loopback import LoopbackTestnet
from phantom.testnet.manifest import Manifest, manifestPath
from phantom.testnet.processes import sleep
from tests.testnet.helpers import shortTemporaryDirectory
from tests.testnet.test_loopback import randomPort

NODES = int(os.environ.get("PHANTOM_REACHABLE_NODES", "20"))
REACHABLE_WITHIN = 90.0
"""Seconds after C{up} within which every node must be reachable (and after a restart, the restarted one)."""
POLL = 0.5
UP_TIMEOUT = 120.0


def percentile(values, fraction):
    """The nearest-rank percentile of C{values}."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


class ReachableTests(TestCase):
    timeout = 300

    def setUp(self):
        self.reachedAt = {}
        self.directory = shortTemporaryDirectory(self)
        self.addCleanup(self.stopEverything)

    async def stopEverything(self):
        if os.path.exists(manifestPath(self.directory)):
            await LoopbackTestnet(Manifest.read(self.directory), reactor).down()

    def client(self, node):
        return ControlClient.forNode(reactor, node.dataDir, timeout=10)

    async def opens(self, fromNode, apAddress):
        """Whether a tunnel from C{fromNode} to C{apAddress} opens (and echoes)."""
        try:
            await self.client(fromNode).tunnelOpen(apAddress, timeout=15)
        except ControlError:
            return False
        return True

    async def statusOf(self, node, deadline):
        """C{node}'s status once it answers, or C{None} at C{deadline}."""
        while reactor.seconds() < deadline:
            try:
                return await self.client(node).status()
            except ControlError:
                await sleep(reactor, POLL)
        return None

    async def entryPathBuilt(self, node, deadline):
        """C{node}'s status once it says its entry paths are built, or its last status at C{deadline}."""
        while True:
            status = await self.client(node).status()
            entries = [kept for kept in status["kept_paths"] if kept["kind"] == "entry"]
            if [kept["built"] >= kept["wanted"] for kept in entries] == [True] or reactor.seconds() >= deadline:
                return status
            await sleep(reactor, POLL)

    async def untilReachable(self, fromNode, toNode, deadline):
        """
        Once both nodes answer, try tunnels from C{fromNode} to C{toNode}'s AP-address until one
        opens.

        @return: C{toNode}'s uptime when it did (seconds after its start), or C{None} at C{deadline}.
        """
        if await self.statusOf(fromNode, deadline) is None:
            return None
        status = await self.statusOf(toNode, deadline)
        while status is not None and reactor.seconds() < deadline:
            if await self.opens(fromNode, status["ap_address"]):
                self.reachedAt[toNode] = reactor.seconds()
                return (await self.client(toNode).status())["uptime"]
            await sleep(reactor, POLL)
        return None

    async def test_reachableFromStartAndAfterRestart(self):
        """
        Within a bounded time after C{up} every node has its entry path and a tunnel from
        another node to its AP-address opens; the owner of an AP-address restarted is reachable
        again within a bounded time, with no command.
        """
        testnet = LoopbackTestnet.plan(reactor, self.directory, NODES, randomPort())
        nodes = testnet.manifest.nodes
        # Node 1 tries a tunnel to every node from the moment both answer, while the others start.
        deadline = reactor.seconds() + UP_TIMEOUT + REACHABLE_WITHIN
        reaching = gatherResults([Deferred.fromCoroutine(self.untilReachable(nodes[0], node, deadline)) for node in nodes[1:]])
        await testnet.up(timeout=UP_TIMEOUT)
        upAt = reactor.seconds()
        reached = await reaching
        afterUp = max(self.reachedAt.values()) - upAt
        unreachable = [node.name for node, seconds in zip(nodes[1:], reached) if seconds is None]
        self.assertEqual(unreachable, [], f"not reachable within {REACHABLE_WITHIN:g} s of up")
        self.assertLess(reactor.seconds() - upAt, REACHABLE_WITHIN)
        statuses = await gatherResults([Deferred.fromCoroutine(self.entryPathBuilt(node, deadline)) for node in nodes])
        apAddresses = [status["ap_address"] for status in statuses]
        self.assertEqual(len(set(apAddresses)), NODES)
        self.assertTrue(all(ap.startswith("fd") for ap in apAddresses))
        for status in statuses:
            [entry] = [kept for kept in status["kept_paths"] if kept["kind"] == "entry"]
            self.assertEqual((entry["wanted"], entry["built"]), (PathSettings().entryPaths,) * 2, status)
        self.assertLess(reactor.seconds() - upAt, REACHABLE_WITHIN)
        # Any node to any other: a few pairs that are not neighbours.
        for a, b in ((0, NODES // 2), (NODES - 1, 1), (NODES // 3, NODES - 2)):
            self.assertTrue(await self.opens(nodes[a], apAddresses[b]), f"{nodes[a].name} to {nodes[b].name}")

        # Restart owners of AP-addresses: each is reachable again, with no command, under the
        # same AP-address, and the routing entry it had published is superseded by a newer one.
        agains = []
        for restarted, looker in ((nodes[NODES // 2], nodes[0]), (nodes[3], nodes[-1]), (nodes[-2], nodes[1])):
            apAddress = apAddresses[nodes.index(restarted)]
            before = await self.client(looker).routeLookup(apAddress)
            self.assertTrue(before["found"])
            await testnet.restart(restarted)
            again = await self.untilReachable(looker, restarted, reactor.seconds() + REACHABLE_WITHIN)
            self.assertIsNotNone(again, f"{restarted.name} not reachable within {REACHABLE_WITHIN:g} s of its restart")
            self.assertEqual((await self.client(restarted).status())["ap_address"], apAddress)
            agains.append(again)
            deadline = reactor.seconds() + 30
            while (after := await self.client(looker).routeLookup(apAddress))["sequence"] <= before["sequence"]:
                self.assertLess(reactor.seconds(), deadline, f"the routing entry of {restarted.name} was not superseded: {after}")
                await sleep(reactor, POLL)

        print(
            f"\n{NODES} nodes, {NODES - 1} reached from node 1: reachable {percentile(reached, 0.5):.1f} s (p50), {percentile(reached, 0.95):.1f} s (p95),"
            f" {max(reached):.1f} s (max) after start; all {afterUp:.1f} s after up returned;"
            f" after a restart: " + ", ".join(f"{again:.1f} s" for again in agains)
        )
