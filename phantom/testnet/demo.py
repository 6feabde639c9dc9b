"""
``phantom-testnet demo``: on a running netns testnet, two unmodified programs talk across
AP-addresses: ping6 from one node to another's AP-address, and a TCP transfer between them
checked by SHA-256, over the entry and exit paths the nodes built by themselves at start.
"""

import json
import sys

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from phantom.control.client import ControlClient
from phantom.testnet.manifest import TestnetError
from phantom.testnet.netns import NETNS, namespaceOf

BUILD_TIMEOUT = 120.0
DEMO_PORT = 5001
POLL_INTERVAL = 0.5


class _Collect(ProcessProtocol):
    """Collects a probe's output; C{lines} fires with its JSON lines once it has exited."""

    def __init__(self, onLine=None):
        self.output = b""
        self.errors = b""
        self.done = Deferred()
        self._onLine = onLine

    def outReceived(self, data):
        self.output += data
        if self._onLine is not None and b"\n" in data:
            self._onLine()

    def errReceived(self, data):
        self.errors += data

    def processEnded(self, reason):
        self.done.callback([json.loads(line) for line in self.output.decode().splitlines() if line.strip()])


def _probe(reactor, manifest, node, *args, onLine=None):
    """Run L{phantom.testnet.probe} in C{node}'s namespace; the Deferred fires with its JSON lines."""
    collect = _Collect(onLine)
    command = [sys.executable, "-m", "phantom.testnet.netns", namespaceOf(manifest, node), sys.executable, "-m", "phantom.testnet.probe", *map(str, args)]
    reactor.spawnProcess(collect, command[0], command, env=None)
    return collect.done, collect


async def keptPath(reactor, control, kind, timeout=BUILD_TIMEOUT):
    """
    Wait until the node behind C{control} has built the path of C{kind} it keeps.

    @return: its status and the path (as L{ControlClient.pathList} gives it).
    @raise TestnetError: none within C{timeout} seconds.
    """
    deadline = reactor.seconds() + timeout
    while True:
        status = await control.status()
        paths = [path for path in await control.pathList() if path["kind"] == kind]
        if paths:
            return status, paths[0]
        if reactor.seconds() >= deadline:
            kept = [kept for kept in status["kept_paths"] if kept["kind"] == kind]
            why = f": {kept[0]['last_error']}" if kept and kept[0]["last_error"] else ""
            raise TestnetError(f"no {kind} path after {timeout:g} s{why}")
        await deferLater(reactor, POLL_INTERVAL, lambda: None)


async def runDemo(reactor, manifest, mib=10.0, server=None, client=None):
    """
    @param server: the node whose AP-address is reached (node 2 if not given).
    @param client: the node that reaches it (the last if not given).
    @return: a JSON-ready summary: the two nodes and AP-addresses, the X-nodes of their paths,
        how long the demo waited for them, ping round trips, and the transfer's size, time and
        whether its checksums matched.
    @raise TestnetError: the testnet is not in netns mode, or a step failed.
    """
    if manifest.mode != NETNS:
        raise TestnetError("the demo needs a netns testnet (phantom-testnet up --mode netns)")
    nodes = manifest.nodes
    if len(nodes) < 2:
        raise TestnetError("the demo needs at least 2 nodes")
    server, client = server or nodes[1], client or nodes[-1]
    serverControl, clientControl = ControlClient.forNode(reactor, server.dataDir), ControlClient.forNode(reactor, client.dataDir)
    started = reactor.seconds()
    serverStatus, entry = await keptPath(reactor, serverControl, "entry")
    clientStatus, exit = await keptPath(reactor, clientControl, "exit")
    waited = reactor.seconds() - started
    serverAp = serverStatus["ap_address"]
    [clientExit, *_] = (await clientControl.tunStatus())["exit_addresses"]
    pinged = await pingFrom(reactor, manifest, client, serverAp)
    transferred = await transfer(reactor, manifest, client, server, serverAp, mib)
    tun = await clientControl.tunStatus()
    return {
        "client_tun_counts": tun["counts"],
        "paths_waited_seconds": waited,
        "server": {"node": server.name, "ap_address": serverAp, "entry_nodes": entry["nodes"]},
        "client": {"node": client.name, "ap_address": clientStatus["ap_address"], "exit_address": clientExit, "exit_nodes": exit["nodes"]},
        "ping": pinged,
        "transfer": transferred,
    }


async def transfer(reactor, manifest, client, server, serverAp, mib, port=DEMO_PORT, whileSending=None):
    """
    Send C{mib} MiB over TCP from C{client}'s namespace to C{serverAp}:C{port} in C{server}'s.

    @param whileSending: called, without arguments, once the sender has connected.
    @return: bytes, seconds, MiB/s, whether the checksums match, the source address the
        server saw (C{from}), and the addresses the sender's connection ran between
        (C{sender_local}, C{sender_peer}).
    @raise TestnetError: the transfer failed (the sink is stopped).
    """
    listening = Deferred()
    sunk, sink = _probe(reactor, manifest, server, "sink", serverAp, port, onLine=lambda: listening.called or listening.callback(None))
    await listening
    connected = []

    def onLine():
        if not connected:
            connected.append(True)
            if whileSending is not None:
                whileSending()

    sending, sender = _probe(reactor, manifest, client, "send", serverAp, port, mib, onLine=onLine)
    lines = await sending
    if len(lines) < 2:
        if sink.transport.pid is not None:
            sink.transport.signalProcess("KILL")
        await sunk
        raise TestnetError(f"the transfer to {serverAp} failed: {sender.errors.decode(errors='replace').strip()[-300:]}")
    sent = lines[-1]
    [_, received] = await sunk
    return {
        "bytes": sent["bytes"],
        "seconds": sent["seconds"],
        "mib_per_second": sent["bytes"] / (1 << 20) / sent["seconds"],
        "checksum_matches": sent["sha256"] == received["sha256"] and sent["bytes"] == received["bytes"],
        "from": received["from"],
        "sender_local": sent["local"],
        "sender_peer": sent["peer"],
    }


async def pingFrom(reactor, manifest, node, address, count=3):
    """
    ICMPv6 echoes from C{node}'s namespace to C{address}.

    @return: the probe's answer: C{replies} and C{rtt_ms}.
    """
    done, collect = _probe(reactor, manifest, node, "ping", address, count)
    lines = await done
    if not lines:
        raise TestnetError(f"ping6 to {address} failed: {collect.errors.decode(errors='replace').strip()[-300:]}")
    return lines[0]


def renderDemo(result):
    """The demo's summary for the terminal."""
    ping, transfer = result["ping"], result["transfer"]
    rtts = ", ".join(f"{rtt:.1f}" for rtt in ping["rtt_ms"])
    return "\n".join(
        [
            f"{result['client']['node']} ({result['client']['ap_address']}) -> {result['server']['node']} ({result['server']['ap_address']})",
            f"ping6: {ping['replies']} replies, round trips {rtts} ms",
            f"TCP: {transfer['bytes'] / (1 << 20):.0f} MiB in {transfer['seconds']:.2f} s ({transfer['mib_per_second']:.1f} MiB/s), "
            + ("checksums match" if transfer["checksum_matches"] else "CHECKSUMS DIFFER"),
            f"the server saw the client as {transfer['from']}"
            + (" (its exit AP, not its published AP-address)" if transfer["from"] == result["client"]["exit_address"] else ""),
        ]
    )
