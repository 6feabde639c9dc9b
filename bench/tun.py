"""
The tun frontend on a netns testnet: TCP between two AP-addresses and ping6, against the raw tunnel.

A netns testnet of C{--nodes} nodes (default 12; L{phantom.testnet.netns}, so root and
/dev/net/tun are needed) runs as C{twistd phantom --tun} processes, each in its own network
namespace. Node 2 gets an entry path and the last node an exit path (2 X- and 3 Y-nodes each,
so the tunnel has 4 X-nodes), and programs in their namespaces measure:

    - C{tcp_throughput_mib_s}: C{--mib} MiB (default 32) sent over TCP from the last node's
      AP-address to node 2's, through both tun devices; the median of C{--rounds} (default 3),
      each checked by SHA-256.
    - C{ping_rtt_ms}: the median round trip of C{--pings} ICMPv6 echoes (default 20), the first
      one, which opens the tunnel, left out.

The baseline, measured in the same run: the raw tunnel, through the tunnel endpoints of two
loopback-testnet nodes (C{--forward} and C{--serve}, no tun device), as C{python -m bench
tunnel} measures it with the same MiB and rounds: C{tcp_throughput_mib_s} against its bulk
throughput, C{ping_rtt_ms} against its 1 KiB round trip. The issue's goal: the throughput at
least 0.5 times the raw tunnel's.
"""

import argparse
import random
import shutil
import statistics
import tempfile

from twisted.internet.defer import Deferred

from bench.link import _positive
from bench.path import UP_TIMEOUT
from bench.report import BenchmarkResult, RatioGoal
from bench.tunnel import measureNetwork
from phantom.control.client import ControlClient
from phantom.testnet.demo import pingFrom, transfer
from phantom.testnet.netns import NetnsTestnet, whyNotAvailable

FIGURES = ("tcp_throughput_mib_s", "ping_rtt_ms")


def addArguments(parser):
    """Add the options that scale the run (the defaults take about two minutes)."""
    parser.add_argument("--nodes", type=_positive(int), default=12, help="netns testnet nodes (default 12)")
    parser.add_argument("--mib", type=_positive(float), default=32, help="MiB per TCP transfer, and per raw-tunnel bulk round (default 32)")
    parser.add_argument("--rounds", type=_positive(int), default=3, help="transfers on each side; medians are reported (default 3)")
    parser.add_argument("--pings", type=_positive(int), default=20, help="ICMPv6 echoes (default 20)")
    parser.add_argument(
        "--directory",
        help="an empty directory for the testnet (its path names the namespaces: phantom.testnet.netns.tagOf); "
        "default: a fresh one under /tmp, removed afterwards",
    )


def measure(reactor, options):
    """
    @return: a Deferred firing with the L{BenchmarkResult}.
    @raise SystemExit: (errback) no netns testnet can run here.
    """
    return Deferred.fromCoroutine(_measure(reactor, options))


async def _measure(reactor, options):
    why = whyNotAvailable()
    if why is not None:
        raise SystemExit(f"bench tun: {why}")
    figures = await measureTun(reactor, options)
    raw = await measureNetwork(reactor, _rawTunnelOptions(options))
    baseline = {"tcp_throughput_mib_s": raw.figures["throughput_mib_s"], "ping_rtt_ms": raw.figures["rtt_1k_ms"]}
    return BenchmarkResult(
        name="tun",
        figures=figures,
        baseline=baseline,
        subject="tun devices",
        baselineName="raw tunnel",
        notes=(
            f"{options.nodes} netns nodes, paths of 2 X- and 3 Y-nodes; {options.rounds} TCP transfers of {options.mib:g} MiB, "
            f"{options.pings} pings; baseline: bench tunnel's network part (3 + 3 X-nodes), same MiB and rounds"
        ),
        goals={"tcp_throughput_mib_s": RatioGoal(0.5, atLeast=True)},
    )


def _rawTunnelOptions(options):
    return argparse.Namespace(
        nodes=16, mib=options.mib, rounds=options.rounds, trips=200, opens=5, client_starts=5, keep=False
    )


async def measureTun(reactor, options):
    """
    Bring up a netns testnet, measure TCP and ping6 between two AP-addresses, take it down.

    @return: the figures (L{FIGURES}).
    """
    directory = options.directory or tempfile.mkdtemp(prefix="bt", dir="/tmp")
    testnet = NetnsTestnet.plan(reactor, directory, options.nodes, random.SystemRandom().randrange(20000, 60001))
    try:
        await testnet.up(timeout=UP_TIMEOUT)
        nodes = testnet.manifest.nodes
        server, client = nodes[1], nodes[-1]
        entry = await ControlClient.forNode(reactor, server.dataDir).pathBuild("entry", 2, 3)
        await ControlClient.forNode(reactor, client.dataDir).pathBuild("exit", 2, 3)
        serverAp = entry["ap_address"]
        pinged = await pingFrom(reactor, testnet.manifest, client, serverAp, options.pings + 1)
        rates = []
        for round in range(options.rounds):
            moved = await transfer(reactor, testnet.manifest, client, server, serverAp, options.mib, port=5100 + round)
            if not moved["checksum_matches"]:
                raise SystemExit("bench tun: a transfer arrived other than it left")
            rates.append(moved["mib_per_second"])
        return {"tcp_throughput_mib_s": statistics.median(rates), "ping_rtt_ms": statistics.median(pinged["rtt_ms"][1:])}
    finally:
        await testnet.down()
        if not options.directory:
            shutil.rmtree(directory, ignore_errors=True)

