"""
A testnet in network namespaces: each node in its own namespace with a tun device; ping6 and a
10 MiB TCP transfer between two AP-addresses, through tunnels, by unmodified programs, which
connect out from their node's exit AP and are answered from its published AP-address.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from phantom.config import PathSettings
from phantom.control.client import ControlClient, ControlError
from phantom.path.retry import KEEP_ENDS
from phantom.testnet.cli import statusJSON
from phantom.testnet.demo import BUILD_TIMEOUT, pingFrom, runDemo, transfer
from phantom.testnet.manifest import TestnetError
from phantom.testnet.netns import NetnsTestnet, whyNotAvailable


class NetnsTestnetTests(TestCase):
    skip = whyNotAvailable()
    timeout = 300

    async def test_pingAndTransferBetweenApAddresses(self):
        """
        Twelve nodes come up in their namespaces; the status names each namespace and
        AP-address; right after up, with no path built by hand, ping6 from one AP-address to
        another is answered, between any two nodes; 10 MiB arrive with the checksum they left
        with, from the sender's exit AP, never its published AP-address. An X-node of the
        sender's exit path dies: the path is replaced, and a new connection comes from another
        exit AP. A connection the other way, to the sender's published AP-address, is answered
        from that address. Down removes every namespace.
        """
        directory = os.path.join("/tmp", f"pt{os.getpid() % 100000}")
        testnet = NetnsTestnet.plan(reactor, directory, 12, port=7412)
        self.addCleanup(lambda: testnet.down())
        await testnet.up(timeout=120)
        states = await testnet.status()
        status = statusJSON(testnet.manifest, states, testnet.describeNode)
        self.assertEqual(status["alive"], 12)
        namespaces = {node["namespace"] for node in status["nodes"]}
        self.assertEqual(len(namespaces), 12)
        self.assertTrue(all(node["ap_addresses"][0].startswith("fd") for node in status["nodes"]))

        # Any two nodes, not only the demo's pair, right after up and with no path built by hand.
        nodes = testnet.manifest.nodes
        other = await runDemo(reactor, testnet.manifest, mib=1, server=nodes[4], client=nodes[8])
        self.assertEqual(other["ping"]["replies"], 3)
        self.assertTrue(other["transfer"]["checksum_matches"], json.dumps(other))

        result = await runDemo(reactor, testnet.manifest, mib=10)
        self.assertEqual(result["ping"]["replies"], 3)
        self.assertTrue(result["transfer"]["checksum_matches"], json.dumps(result))
        self.assertEqual(result["transfer"]["bytes"], 10 * 1024 * 1024)
        clientAp, firstExit = result["client"]["ap_address"], result["client"]["exit_address"]
        self.assertNotEqual(firstExit, clientAp)
        self.assertEqual(result["transfer"]["from"], firstExit)
        self.assertEqual(result["transfer"]["sender_local"], firstExit)
        counts = result["client_tun_counts"]
        self.assertGreaterEqual(counts["device in"], 10 * 1024 * 1024 // 65000)
        self.assertGreater(counts["tunnel in"], 10)

        # An X-node of the client's exit path dies: the path is replaced, and the next
        # connection comes from the exit AP of the new path.
        byId = {state.nodeId: state for state in states}
        nodes = {node.name: node for node in testnet.manifest.nodes}
        client, server = nodes[result["client"]["node"]], nodes[result["server"]["node"]]
        clientControl, serverControl = ControlClient.forNode(reactor, client.dataDir), ControlClient.forNode(reactor, server.dataDir)
        # Never the two ends; rather a node the entry path does not use too.
        ends = {state.nodeId for state in states if state.node in (client, server)}
        candidates = sorted(
            (nodeId in result["server"]["entry_nodes"], nodeId) for nodeId in result["client"]["exit_nodes"] if nodeId not in ends
        )
        os.kill(byId[candidates[0][1]].pid, signal.SIGKILL)
        exits = []

        async def exitReplaced():
            exits[:] = (await clientControl.tunStatus())["exit_addresses"]
            return exits[0] != firstExit

        await eventually(exitReplaced, timeout=60)
        # The killed node may have been on the server's entry path too, which is then down until
        # it is rebuilt (after up to [path] rebuild_jitter): the connection is tried again a while.
        for attempt in range(8):
            try:
                again = await transfer(reactor, testnet.manifest, client, server, result["server"]["ap_address"], 1, port=5002 + attempt)
                break
            except TestnetError:
                if attempt == 7:
                    raise
                await deferLater(reactor, 5, lambda: None)
        self.assertTrue(again["checksum_matches"], json.dumps(again))
        self.assertEqual(again["from"], exits[0])
        self.assertNotIn(again["from"], (firstExit, clientAp))

        # The other way: the server, from its own exit path, reaches the client's published
        # AP-address (over an entry path of the client's), and is answered from it.
        # The killed node's record outlives it, and a failed attempt keeps its x0 and T for up to
        # six attempts (phantom.path.retry), unless the owner knows the end is gone: its database
        # found the node not answering. The server's may not have asked the killed node anything
        # yet, and then builds fail until the kept end has failed KEEP_ENDS attempts: no more.
        builds = math.ceil(KEEP_ENDS / PathSettings().attempts) + 1
        for control, kind in ((clientControl, "entry"), (serverControl, "exit")):
            for attempt in range(builds):
                try:
                    await control.pathBuild(kind, 2, 3, BUILD_TIMEOUT)
                    break
                except ControlError:
                    if attempt == builds - 1:
                        raise
        # The server has an exit path of its keeper's and the one just built: either may carry it.
        serverExits = (await serverControl.tunStatus())["exit_addresses"]
        pinged = await pingFrom(reactor, testnet.manifest, server, clientAp)
        self.assertEqual(pinged["replies"], 3)
        inbound = await transfer(reactor, testnet.manifest, server, client, clientAp, 1, port=5003)
        self.assertTrue(inbound["checksum_matches"], json.dumps(inbound))
        self.assertIn(inbound["from"], serverExits)
        self.assertEqual((inbound["sender_local"], inbound["sender_peer"]), (inbound["from"], clientAp))

        await testnet.down()
        from pyroute2 import netns

        self.assertFalse([name for name in netns.listnetns() if name in namespaces])


async def eventually(check, timeout, step=0.5):
    """Ask C{await check()} every C{step} seconds until it is true; fail after C{timeout} seconds."""
    waited = 0.0
    while not await check():
        if waited > timeout:
            raise AssertionError(f"not so after {timeout:g} s")
        await deferLater(reactor, step, lambda: None)
        waited += step


def whyNoFirewall():
    """Why the firewall test cannot run here, or C{None}."""
    why = whyNotAvailable()
    if why is not None:
        return why
    if shutil.which("iptables", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        return "no iptables command to set up a firewall that drops forwarded packets"
    if not os.path.exists("/proc/sys/net/bridge"):
        return "no br_netfilter in this kernel: bridged packets never meet the firewall"
    return None


class FirewalledHostTests(TestCase):
    """A netns testnet brought up from a namespace whose firewall drops forwarded packets."""

    skip = whyNoFirewall()
    timeout = 300

    def command(self, *command, check=True):
        return subprocess.run(command, check=check, capture_output=True, text=True)

    async def test_forwardPolicyDrop(self):
        """
        As on a host that runs Docker (FORWARD policy DROP, br_netfilter calling iptables for
        bridged packets), started from such a namespace the testnet comes up, and ping6 and a
        TCP transfer between two AP-addresses work, without a change to that firewall.
        """
        from pyroute2 import NetNS, netns

        outer = f"phfw{os.getpid() % 100000}"
        netns.create(outer)
        self.addCleanup(netns.remove, outer)
        with NetNS(outer) as ns:
            [loopback] = ns.link_lookup(ifname="lo")
            ns.link("set", index=loopback, state="up")
        iptables = shutil.which("iptables", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        self.command("ip", "netns", "exec", outer, iptables, "-P", "FORWARD", "DROP")
        self.command("ip", "netns", "exec", outer, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables")
        before = self.command("ip", "netns", "exec", outer, iptables, "-S").stdout

        directory = os.path.join("/tmp", f"pf{os.getpid() % 100000}")
        inOuter = [sys.executable, "-m", "phantom.testnet.netns", outer, sys.executable, "-m", "phantom.testnet.cli"]
        self.addCleanup(lambda: subprocess.run(inOuter + ["down", "--dir", directory], capture_output=True))
        up = self.command(*inOuter, "up", "--mode", "netns", "--nodes", "6", "--dir", directory, "--port", "7413", "--timeout", "90", check=False)
        self.assertEqual(up.returncode, 0, up.stderr)
        demo = self.command(*inOuter, "demo", "--dir", directory, "--mib", "2", "--json", check=False)
        self.assertEqual(demo.returncode, 0, demo.stderr)
        result = json.loads(demo.stdout)
        self.assertEqual(result["ping"]["replies"], 3)
        self.assertTrue(result["transfer"]["checksum_matches"])
        self.assertEqual(self.command("ip", "netns", "exec", outer, iptables, "-S").stdout, before)
        down = self.command(*inOuter, "down", "--dir", directory, check=False)
        self.assertEqual(down.returncode, 0, down.stderr)
