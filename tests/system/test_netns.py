"""
A testnet in network namespaces: each node in its own namespace with a tun device; ping6 and a
10 MiB TCP transfer between two AP-addresses, through tunnels, by unmodified programs.
"""

import json
import os
import signal

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from phantom.testnet.cli import statusJSON
from phantom.testnet.demo import runDemo, transfer
from phantom.testnet.netns import NetnsTestnet, whyNotAvailable


class NetnsTestnetTests(TestCase):
    skip = whyNotAvailable()
    timeout = 300

    async def test_pingAndTransferBetweenApAddresses(self):
        """
        Twelve nodes come up in their namespaces; the status names each namespace and
        AP-address; ping6 from one AP-address to another is answered; 10 MiB arrive with the
        checksum they left with, from the sender's AP-address; 40 MiB arrive intact though an
        X-node of the exit path is killed during the transfer; down removes every namespace.
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

        result = await runDemo(reactor, testnet.manifest, mib=10)
        self.assertEqual(result["ping"]["replies"], 3)
        self.assertTrue(result["transfer"]["checksum_matches"], json.dumps(result))
        self.assertEqual(result["transfer"]["bytes"], 10 * 1024 * 1024)
        self.assertEqual(result["transfer"]["from"], result["client"]["ap_address"])
        counts = result["client_tun_counts"]
        self.assertGreaterEqual(counts["device in"], 10 * 1024 * 1024 // 65000)
        self.assertGreater(counts["tunnel in"], 10)

        # An X-node of the client's exit path dies during a transfer: the path is rebuilt, TCP
        # retransmits through a new tunnel, and everything arrives intact.
        byId = {state.nodeId: state for state in states}
        nodes = {node.name: node for node in testnet.manifest.nodes}
        client, server = nodes[result["client"]["node"]], nodes[result["server"]["node"]]
        # Never the two ends; rather a node the entry path does not use too.
        ends = {state.nodeId for state in states if state.node in (client, server)}
        candidates = sorted(
            (nodeId in result["server"]["entry_nodes"], nodeId) for nodeId in result["client"]["exit_nodes"] if nodeId not in ends
        )
        victim = byId[candidates[0][1]]

        def killVictim():
            reactor.callLater(0.3, os.kill, victim.pid, signal.SIGKILL)

        survived = await transfer(reactor, testnet.manifest, client, server, result["server"]["ap_address"], 40, port=5002, whileSending=killVictim)
        self.assertTrue(survived["checksum_matches"], json.dumps(survived))
        self.assertLess(survived["seconds"], 30)

        await testnet.down()
        from pyroute2 import netns

        self.assertFalse([name for name in netns.listnetns() if name in namespaces])
