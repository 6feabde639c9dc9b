"""
Routing tunnels: key recovery, tampered cells, and bulk transfer, round trips and setup through 6 hops of node processes, against bare baselines.

The benchmark has three parts; C{--skip-network} runs only the first two.

B{Key recovery.} L{phantom.tunnel.keys.recoverKeys} on an exit path of C{--recovery-hops} hops
(default 4) with C{--recovery-keys} keys each (default 30: 810,000 combinations). The key sets
are made once, as the owner holds them for a path, and one untimed recovery makes their AES
contexts. Each timed recovery is of a fresh exit init block (L{buildExitInit}) under the layers
the hops add on its way back (L{backward} with each hop's chosen key, T's first); the owner
removes them with L{forward}, adjacent hop first, and accepts the result with L{isExitInit}. Of
the C{--recovery-runs} recoveries (default 20) every fourth is of keys the hops chose at random;
in the others every hop chose the last key of its set, the last combination in search order:
the worst case. Every recovery must find the keys chosen, or the benchmark fails. It runs
first, before any other process is started.

Figures:

    - C{key_recovery_worst_ms}: the slowest of the recoveries.
    - C{key_recovery_mean_ms}: their mean.

The baseline of both is the thesis's search (L{naiveRecoverKeys}): nested loops, one AES-CBC call
over the whole block per combination and hop, the fast test in the innermost loop; it runs once,
on a worst-case block, before the recoveries. Much of its time is Python making a CBC context per
call, so the notes (in the table, not the JSON) also give the same nested loops with all the
batched search has but batching (L{firstBlockNestedSearch}: the first AES block only, with kept
contexts), the faster of one run before the recoveries and one after, and its ratio to the worst
case: what batching alone gains. A ratio is a figure over the baseline, the inverse of a
speedup; the goal is a worst case at least 50 times faster than the thesis's search (ratio at
most 0.02). The notes also say whether the issue's absolute goal is met: a worst case of at most
20 ms on this two-core machine.

B{Setup floods} (L{measurePendingFlood}, in memory, with or without C{--skip-network}):
C{pending_flood_survival}, the fraction of 100 honest tunnel setups that succeed while one
neighbour sends 10,000 setup blocks and opens 1,000 ENTRY links a second into the nodes they
pass through, against the same setups with no flood. Goal: at least 0.99 of it.

B{Cells.} On L{bench.cells.CellChain}s, a tunnel's data phase made of the real parts in one
process (both owners' L{phantom.tunnel.transport.OwnerTunnel}s, the six hops' splices with the
converters the machines make, in-process links), C{--tamper-events} times (default 1000) in each
way the middle X-node of one path tampers with the next cell it sends one way (the four places
in turn): a bit flipped, the cell dropped, sent after the next one, a random cell injected
before it, the cell sent twice, or cut in two. Then a chain carries random-sized writes, echoed.

    - C{tags_reaching_far_end}: the events after which the first node that checks cells going
      that way (the exit node or the entry node, where cells leave the path whose hops added
      layers; or the owner) took any later cell as plain (beyond the genuine copy of a
      replayed one), or either owner's protocol got bytes that were not sent, in order. Its
      baseline is the events in all. Goal 0.
    - C{distinct_cell_sizes_on_links}: the distinct lengths of the frames sent on any link of
      the chain. Its baseline is the distinct sizes of the writes, what frames had before
      cells. Goal 1.

The notes also give, for cells of 2, 4, 8 and 16 KiB, what a chain spends: CPU ms per MiB of
bulk transfer, CPU ms per 1 KiB round trip, and the bytes a link carries per byte of a 1 KiB
message.

B{The network.} Nodes as separate processes on loopback: a testnet of C{--nodes} nodes (default
16) started as L{bench.path} starts it (L{phantom.testnet.loopback}: one random port, a fresh
short directory under /tmp, removed afterwards unless C{--keep}), and two owner nodes, also
C{twistd phantom} daemons (L{twistdCommandLine} with options added), on the next two loopback
addresses, bootstrapping into it. The I{server} owner runs with C{--serve 127.0.0.1:S}, passing
every inbound tunnel to a TCP service in this process; once every node's routing table holds
the others (or 20 of them; L{bench.path.waitUntilJoined}) it builds an entry path of L{SHAPE}
(3 X-nodes) on its control socket (L{phantom.control.client.ControlClient}, as C{phantomctl
path build}). Its AP-address is known before it starts, from the routing key made in its data
directory here with L{phantom.identity.loadOrCreateIdentity}, as the node would make it; the
entry path must be for that address. Then the I{client} owner starts, with C{--forward A:P=AP}
(A its own address, P the testnet's port + 1): every connection to that port is carried
through a fresh tunnel to the server's AP-address; it builds an exit path of L{SHAPE}. If that
path has an X-node of the entry path, or the server, among its own, the client is stopped and
started again for another (a node keeps the paths it built), up to C{--client-starts} times in
all (default 5); the notes say when the tunnel's X-nodes are not 6 distinct nodes. A tunnel
over the two paths has 6 hops between the owners (3 + 3 X-nodes), 7 links, with end-to-end TLS
between the owners inside it.

The service in this process echoes what arrives, except on a connection that begins with
L{SINK_MAGIC}, whose bytes after it it counts instead (the sink of a bulk transfer).

The baseline, measured in the same run: a bare chain of L{RELAYS} relay processes
(L{bench.relay}) on 127.0.0.1, one per node process of the tunnel (the two owners and the 6
X-nodes), the first accepting plain TCP, as the client's forwarded port does, every next hop
over TLS as a link (Ed25519 self-signed certificates, TLS 1.3, mutual authentication, the next
hop's node id pinned), the last connecting to the same service over plain TCP, as the server's
C{--serve} does: 7 TLS hops, each relay shovelling bytes with C{twisted.protocols.portforward}
as the nodes' forwarded and served ports do, without framing, onion layers or end-to-end TLS.

Each of C{--rounds} rounds (default 7) measures the bulk transfer on both routes, then the round
trips on both, the chain first in even rounds and the tunnel first in odd ones, each on a fresh
connection from this process (through the tunnel: a fresh tunnel, opened by the client node for
the connection). Then C{--opens} times (default 50) a tunnel is opened and a chain connected,
in alternating order. Figures, each with the chain's value of the same name as its baseline:

    - C{throughput_mib_s}: median over the rounds of the MiB/s of one bulk transfer of C{--mib}
      MiB (default 64), in L{bench.link}'s way: one untimed chunk of L{CHUNK_SIZE} bytes first
      (through the tunnel, it waits for the tunnel's setup), then writes of that size from a
      push producer, timed from the first write until the sink has counted every byte. Goal: at
      least 0.7 of the chain's.
    - C{bulk_cpu_ms_per_mib}: median over the rounds of the CPU time (the scheduler's count of
      every thread, from each process's CPU-time clock: L{cpuSeconds}; clock ticks until
      session 8, too coarse and sampled for a few hundred ms over 9 processes) that the
      route's processes used during the timed transfer, summed, in ms per MiB:
      for the tunnel the 8 node processes it passes (both owners and the 6 X-nodes of the
      two paths: the testnet's other nodes are not on the route) and this one, for the chain
      every relay and this one. (Until session 7 the tunnel counted every node process of the
      testnet, 18, with their background work.) The notes also say how much CPU each route's
      processes use a second when nothing is sent, watched for L{IDLE_SECONDS} after the rounds.
      No goal; unlike the throughput it hardly depends on what else the machine runs. With
      the 8 busy processes of either route on two cores, the throughput is bound by this
      figure when the machine is otherwise idle, and by scheduling when it is not.
    - C{rtt_1k_ms}: median over the rounds of the median time for 1 KiB to reach the echo and
      come back whole, C{--trips} timed trips (default 1000) after L{WARMUP_TRIPS} untimed ones
      on each connection. Goal: at most 1.3 times the chain's.
    - C{rtt_1k_cpu_ms}: median over the rounds of the CPU time the route's processes used
      during the timed round trips, summed as for C{bulk_cpu_ms_per_mib}, in ms per round trip.
      No goal. A round trip's time is this CPU along the way plus the waits for a core at its
      16 process crossings, which a loaded machine lengthens; so on a loaded machine this says
      more about the code than the time does. It includes what the processes do besides (the
      nodes' timers, their DHT), more of it the longer the round trips take.
    - C{setup_p50_ms}, C{setup_p95_ms}: median and 95th percentile (nearest rank) of the time
      the client node reports for opening a tunnel to the server (C{phantomctl tunnel open AP}:
      the tunnel's setup and the end-to-end TLS handshake; its exit path exists, so no path is
      built). The chain's values are the time from connecting to its first relay until a first
      1 KiB echo has come back: the 7 TLS handshakes made one after the other, and one round
      trip. No goal: a tunnel setup does much more than a TLS handshake.

Afterwards every process started is stopped; the notes (in the table, not the JSON) say which
nodes the paths went through, whether the goals are met, and how the chain's throughput
compares with the issue's figure for this machine (about 56 MiB/s).
"""

import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from statistics import mean, median

from twisted.internet.defer import Deferred, DeferredLock, FirstError, TimeoutError, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import ProcessProtocol, Protocol

from bench import cells
from bench.dht import percentile
from bench.link import CHUNK, CHUNK_SIZE, MIB, PING, PING_SIZE, BulkProducer, ByteCounter, Channel, _factory, _positive, measureRoundTrips
from bench.path import BUILD_TIMEOUT, UP_TIMEOUT, _between, waitUntilJoined
from bench.report import BenchmarkResult, RatioGoal
from phantom.address import formatAddress
from phantom.control.client import ControlClient, ControlError
from phantom.crypto import apAddressOf
from phantom.identity import loadOrCreateIdentity
from phantom.testnet.loopback import MAX_NODES, LoopbackTestnet, loopbackAddress, sharedPort
from phantom.testnet.manifest import LOG_FILE, PID_FILE, NodeSpec, TestnetError
from phantom.testnet.nodeconfig import writeNodeConfig
from phantom.testnet.processes import (
    TwistdLauncher,
    cancelAndWait,
    findTwistd,
    lastLogMessage,
    nodeIdInDataDir,
    nodeProcesses,
    sleep,
    stopNodes,
    twistdCommandLine,
)
from phantom.tunnel.keys import BACKWARD, FORWARD, KeySet, applyLayers, recoverKeys, transform
from phantom.wire.tunnel import AES_BLOCK_SIZE, CELL_SIZE, CHECK, buildExitInit, isExitInit

TAGS = "tags_reaching_far_end"
CELL_SIZES_SEEN = "distinct_cell_sizes_on_links"
CELL_SIZES = (2048, 4096, 8192, CELL_SIZE, 32768)
"""The cell sizes whose costs the notes compare."""

KEY_RECOVERY_WORST = "key_recovery_worst_ms"
KEY_RECOVERY_MEAN = "key_recovery_mean_ms"

RANDOM_EVERY = 4
"""Every this many recoveries, one is of keys chosen at random."""

GOAL_SPEEDUP = 50
GOAL_WORST_MS = 20.0

THROUGHPUT = "throughput_mib_s"
ROUND_TRIP = "rtt_1k_ms"
SETUP_P50 = "setup_p50_ms"
SETUP_P95 = "setup_p95_ms"
BULK_CPU = "bulk_cpu_ms_per_mib"
ROUND_TRIP_CPU = "rtt_1k_cpu_ms"

NETWORK_GOALS = {THROUGHPUT: RatioGoal(0.7, atLeast=True), ROUND_TRIP: RatioGoal(1.3, atLeast=False)}
"""What the tunnel must reach against the chain of TLS relays."""

ISSUE_CHAIN_MIB_S = 56
"""What the issue says such a chain moves on this machine, in MiB/s, for the notes."""

SHAPE = (3, 5)
"""The (x, y) of both owners' paths: 3 X-nodes each; the Y-nodes are gone once a path is built."""

TLS_HOPS = 2 * SHAPE[0] + 1
"""Links between the two owners: owner, x0, x1, T, then the entry path's T, x1, x0, owner."""

RELAYS = TLS_HOPS + 1
"""Relay processes in the chain: one for each node process a tunnel's bytes pass through."""

MIN_NODES = SHAPE[0] + SHAPE[1] - 1
"""The smallest testnet: with the other owner, enough nodes for a path of L{SHAPE}."""

SINK_MAGIC = b"phantom bench: sink what follows\n"
"""What a bulk connection begins with, so that the service counts rather than echoes it."""

WARMUP_TRIPS = 20
"""Untimed round trips on each echo connection before the timed ones (the first opens a tunnel)."""

MIN_TRANSFER_MIB_S = 0.5
"""A bulk transfer, or a set of round trips, that takes longer than it would at this rate fails."""

RELAY_TIMEOUT = 30.0
"""Seconds the relays have to start and take their next hops, and, after stdin closes, to exit."""

OWNER_START_TIMEOUT = 60.0
"""Seconds an owner's twistd launcher has to start it."""

BUILD_TRIES = 4
"""How often an owner is asked for a path, at most."""

BUILD_PAUSE = 2.0
"""Seconds between two requests for a path."""


NETWORK_FIGURES = (THROUGHPUT, BULK_CPU, ROUND_TRIP, ROUND_TRIP_CPU, SETUP_P50, SETUP_P95)


class RecoveryFailed(Exception):
    """A search did not find the keys the hops chose: its times would mean nothing."""


class NetworkFailed(Exception):
    """The network part could not measure: the message says why (and where the logs are)."""


@dataclass(frozen=True)
class Part:
    """
    What one part of the benchmark measured.

    @ivar figures: figure name to value.
    @ivar baseline: the same names to the baseline's values.
    @ivar goals: figure name to its L{RatioGoal}, where there is one.
    @ivar notes: how it was measured, and the absolute goals.
    """

    figures: dict
    baseline: dict
    goals: dict = field(default_factory=dict)
    notes: str = ""


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take a minute or two; with
    C{--skip-network}, a few seconds).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    parser.add_argument("--recovery-runs", type=_positive(int), default=20, help="timed key recoveries (default 20)")
    parser.add_argument("--recovery-hops", type=_positive(int), default=4, help="hops whose keys are recovered (default 4)")
    parser.add_argument("--recovery-keys", type=_positive(int), default=30, help="keys in each hop's set (default 30)")
    parser.add_argument("--tamper-events", type=_positive(int), default=1000, help="tampering events of each way (default 1000)")
    parser.add_argument("--skip-network", action="store_true", help="measure key recovery only: start no process")
    parser.add_argument(
        "--nodes",
        type=_between(MIN_NODES, MAX_NODES - 2),
        default=16,
        help=f"testnet nodes besides the two owners, {MIN_NODES} to {MAX_NODES - 2} (default 16)",
    )
    parser.add_argument("--mib", type=_positive(float), default=64, help="MiB per bulk transfer (default 64)")
    parser.add_argument("--rounds", type=_positive(int), default=7, help="interleaved rounds; medians are reported (default 7)")
    parser.add_argument("--trips", type=_positive(int), default=1000, help="timed 1 KiB round trips per round and route (default 1000)")
    parser.add_argument("--opens", type=_positive(int), default=50, help="tunnels opened, and chains connected, for the setup figures (default 50)")
    parser.add_argument(
        "--client-starts",
        type=_positive(int),
        default=5,
        help="times the client owner is started, at most, for an exit path sharing no node with the entry path (default 5)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the testnet directory, with every node's log, and say where it is"
    )


def measureCells(options, rng=None):
    """
    Tamper with cells C{tamper_events} times in each way on in-process tunnels
    (L{bench.cells.tamperingEvents}), count the frame sizes on their links
    (L{bench.cells.distinctSizes}), and measure what each cell size of L{CELL_SIZES} costs there.

    @return: the L{Part} of L{TAGS} and L{CELL_SIZES_SEEN}: the first against the events in
        all, the second against the distinct sizes of the writes (what frames were before cells).
    """
    rng = rng or random.Random()
    reached, closed, events = cells.tamperingEvents(options.tamper_events, rng)
    sizes, writes = cells.distinctSizes(rng)
    lines = [
        f"tampering: {options.tamper_events} events of each way ({', '.join(cells.HOW)}), by the middle X-node of either path, "
        f"either way, on fresh in-process tunnels; tags reaching the far end: "
        + ", ".join(f"{how} {reached[how]}" for how in cells.HOW)
        + "; tunnels closed: " + ", ".join(f"{how} {closed[how]}" for how in cells.HOW),
        f"{TAGS}: goal 0, {'met' if sum(reached.values()) == 0 else 'NOT met'}; {CELL_SIZES_SEEN}: goal 1, {'met' if sizes == 1 else 'NOT met'} ({writes} write sizes)",
        "cell sizes, in-process chain (6 hops, both owners, no TLS): size: bulk CPU ms/MiB, 1 KiB round trip CPU ms, link bytes per byte of 1 KiB",
    ]
    for size in CELL_SIZES:
        bulk, trip, padding = cells.sizeCosts(size)
        lines.append(f"    {size}{' (chosen)' if size == CELL_SIZE else ''}: {bulk:.1f}, {trip:.2f}, {padding:.0f}")
    return Part(
        figures={TAGS: sum(reached.values()), CELL_SIZES_SEEN: sizes},
        baseline={TAGS: events, CELL_SIZES_SEEN: writes},
        goals={TAGS: RatioGoal(0.0, atLeast=False)},
        notes="\n".join(lines),
    )


def measure(reactor, options):
    """
    Measure every part of the benchmark: key recovery and cells, then (unless C{skip_network}) the network.

    @param reactor: provides C{IReactorTCP}, C{IReactorUNIX}, C{IReactorProcess} and
        C{IReactorTime}; unused with C{skip_network}.
    @param options: the parsed options: C{recovery_runs}, C{recovery_hops}, C{recovery_keys},
        C{skip_network}, and for the network C{nodes}, C{mib}, C{rounds}, C{trips}, C{opens},
        C{client_starts}, C{keep}.
    @return: a Deferred firing with the L{BenchmarkResult}; already fired with
        C{skip_network}.
    """
    recovery = measureKeyRecovery(options)
    parts = [recovery, measurePendingFlood(options), measureCells(options)]
    if options.skip_network:
        return succeed(combine(parts, "thesis / no flood / events"))

    async def both():
        network = await measureNetwork(reactor, options)
        return combine(parts + [network], "thesis / no flood / events / TLS chain")

    return Deferred.fromCoroutine(both())


def combine(parts, baselineName):
    """@return: the L{BenchmarkResult} of C{parts}, named C{tunnel}."""
    figures, baseline, goals = {}, {}, {}
    for part in parts:
        figures.update(part.figures)
        baseline.update(part.baseline)
        goals.update(part.goals)
    return BenchmarkResult(
        name="tunnel",
        figures=figures,
        baseline=baseline,
        subject="phantom",
        baselineName=baselineName,
        notes="\n".join(part.notes for part in parts),
        goals=goals,
    )


# Key recovery


def measureKeyRecovery(options, rng=None):
    """
    Time the batched key recovery and the nested loops on the same key sets.

    @param options: C{recovery_runs}, C{recovery_hops}, C{recovery_keys}.
    @param rng: a C{random.SystemRandom}-like object for the seeds, blocks and choices.
    @return: the L{Part} with both figures, each against the thesis's search.
    @raise RecoveryFailed: a search did not find the keys chosen.
    """
    rng = rng or random.SystemRandom()
    keySets = [KeySet(rng.randbytes(32), options.recovery_keys) for _ in range(options.recovery_hops)]
    worst = tuple(len(keySet) - 1 for keySet in keySets)
    _timeRecovery(recoverKeys, keySets, worst, rng)
    naive = _timeRecovery(naiveRecoverKeys, keySets, worst, rng)
    unbatched = [_timeRecovery(firstBlockNestedSearch, keySets, worst, rng)]
    times = []
    for run in range(options.recovery_runs):
        chosen = tuple(keySet.choose(rng) for keySet in keySets) if run % RANDOM_EVERY == RANDOM_EVERY - 1 else worst
        times.append(_timeRecovery(recoverKeys, keySets, chosen, rng))
    unbatched.append(_timeRecovery(firstBlockNestedSearch, keySets, worst, rng))
    figures = {KEY_RECOVERY_WORST: max(times), KEY_RECOVERY_MEAN: mean(times)}
    worstMs = figures[KEY_RECOVERY_WORST]
    met = "met" if worstMs <= GOAL_WORST_MS else "MISSED"
    return Part(
        figures=figures,
        baseline={name: naive for name in figures},
        goals={KEY_RECOVERY_WORST: RatioGoal(1 / GOAL_SPEEDUP, atLeast=False)},
        notes=(
            f"key recovery: {options.recovery_hops} hops x {options.recovery_keys} keys, "
            f"{options.recovery_runs} recoveries (every {RANDOM_EVERY}th of random keys, the others "
            f"the worst case); the worst case is {naive / worstMs:.0f} times faster than the thesis's "
            f"search, {min(unbatched) / worstMs:.0f} times faster than its nested loops on first "
            f"blocks with kept contexts ({min(unbatched):.1f} ms); worst case at most "
            f"{GOAL_WORST_MS:g} ms: {met}"
        ),
    )


def _timeRecovery(search, keySets, chosen, rng):
    """Time C{search} on a fresh exit init block under the layers of keys C{chosen}; in ms."""
    keys = [keySet.keys[index] for keySet, index in zip(keySets, chosen)]
    package = applyLayers(reversed(keys), buildExitInit(rng.randbytes), BACKWARD)
    started = time.perf_counter()
    found = search(keySets, package, FORWARD, isExitInit)
    elapsed = time.perf_counter() - started
    if found != chosen:
        raise RecoveryFailed(f"{search.__name__} found {found}, the hops chose {chosen}")
    return elapsed * 1000


def naiveRecoverKeys(keySets, package, peel, accept):
    """
    The owner's search as the thesis describes it and its prototype does it: nested loops over
    the hops' key sets, adjacent hop outermost, one AES-CBC call over the whole block per
    combination and hop (a new context each, as CBC cannot reuse one), the fast test in the
    innermost loop. Same parameters and result as L{recoverKeys}, whose test oracle it is.
    """
    steps = [[partial(transform, key, direction=peel) for key in keySet.keys] for keySet in keySets]
    return _nestedSearch(keySets, package, peel, accept, steps, package)


def firstBlockNestedSearch(keySets, package, peel, accept):
    """
    The nested loops of L{naiveRecoverKeys} with all that L{recoverKeys} has but batching: one
    AES call per combination and hop still, but on the first AES block only, with the key sets'
    kept contexts.
    """
    steps = [[cipher.update for cipher in keySet.firstBlockCiphers(peel)] for keySet in keySets]
    return _nestedSearch(keySets, package, peel, accept, steps, package[:AES_BLOCK_SIZE])


def _nestedSearch(keySets, package, peel, accept, steps, start):
    """
    Nested loops from C{start}: C{steps[hop][index](block)} is what key C{index} of C{hop} does
    to a block; a combination whose last step passes the fast test goes to C{accept}, every
    layer removed from the package.
    """
    innermost = len(steps) - 1

    def search(level, block, chosen):
        for index, step in enumerate(steps[level]):
            transformed = step(block)
            if level < innermost:
                found = search(level + 1, transformed, chosen + (index,))
                if found is not None:
                    return found
            elif transformed.startswith(CHECK):
                keys = [keySet.keys[i] for keySet, i in zip(keySets, chosen + (index,))]
                if accept(applyLayers(keys, package, peel)):
                    return chosen + (index,)
        return None

    return search(0, start, ())


# The network: a tunnel between two node processes, against a chain of TLS relays

HOST = "127.0.0.1"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def progress(text):
    """Say what is happening, on stderr (stdout carries the result)."""
    print(f"bench tunnel: {text}", file=sys.stderr, flush=True)


class Samples:
    """
    What was measured on one route.

    @ivar throughputs: MiB/s of each round's bulk transfer.
    @ivar cpu: CPU ms per MiB the route's processes used in each round's bulk transfer.
    @ivar roundTrips: each round's median round trip, in ms.
    @ivar roundTripCpu: CPU ms per round trip the route's processes used in each round's round trips.
    @ivar setups: seconds of each setup.
    """

    def __init__(self):
        self.throughputs = []
        self.cpu = []
        self.roundTrips = []
        self.roundTripCpu = []
        self.setups = []

    def figures(self):
        """@return: the network figures, L{NETWORK_FIGURES}, of this route."""
        return {
            THROUGHPUT: median(self.throughputs),
            BULK_CPU: median(self.cpu),
            ROUND_TRIP: median(self.roundTrips),
            ROUND_TRIP_CPU: median(self.roundTripCpu),
            SETUP_P50: median(self.setups) * 1000,
            SETUP_P95: percentile(self.setups, 95) * 1000,
        }


def measureNetwork(reactor, options):
    """
    Start the relay chain, a loopback testnet and the two owners; measure both routes,
    interleaved; stop every process.

    @param reactor: provides C{IReactorTCP}, C{IReactorUNIX}, C{IReactorProcess} and
        C{IReactorTime}.
    @param options: the parsed options: C{nodes}, C{mib}, C{rounds}, C{trips}, C{opens},
        C{client_starts}, C{keep}.
    @return: a Deferred firing with the L{Part} of the network figures (L{NETWORK_FIGURES}),
        each against the chain.
    """
    return Deferred.fromCoroutine(_measureNetwork(reactor, options))


async def _measureNetwork(reactor, options):
    directory = tempfile.mkdtemp(prefix="tb", dir="/tmp")
    port = sharedPort()
    testnet = LoopbackTestnet.plan(reactor, directory, options.nodes, port)
    server, client = owners = ownerSpecs(testnet.manifest)
    forward = (client.address, port + 1)
    service = BenchService(reactor)
    chain = RelayChain(reactor, RELAYS)

    tearingDown, tornDown = DeferredLock(), False

    async def tearDown():
        # Once, however many ask for it (the run's end and a shutdown trigger may both); every
        # step is tried, the first failure raised afterwards.
        nonlocal tornDown
        await tearingDown.acquire()
        try:
            if tornDown:
                return
            tornDown = True
            failures = []
            for step in (chain.stop, lambda: stopNodes(reactor, owners), testnet.down, service.stop):
                try:
                    await step()
                except Exception as e:
                    failures.append(e)
            if not options.keep:
                shutil.rmtree(directory, ignore_errors=True)
            if failures:
                raise failures[0]
        finally:
            tearingDown.release()

    starting = None

    async def stopFromOutside():
        # Stopped from outside (Ctrl-C), the reactor does not resume the run: stop everything here.
        if starting is not None:
            await cancelAndWait(starting)
        await tearDown()

    stopping = reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(stopFromOutside()))
    timings = {}
    try:
        sinkPort = await service.listen()
        started = time.perf_counter()
        progress(f"starting a chain of {RELAYS} relays to {HOST}:{sinkPort}")
        await chain.start(HOST, sinkPort)
        timings["chain"] = time.perf_counter() - started
        progress(f"relays listening, pids {' '.join(str(pid) for pid in chain.pids)}")

        started = time.perf_counter()
        starting = Deferred.fromCoroutine(testnet.up(timeout=UP_TIMEOUT, progress=progress))
        await starting
        timings["up"] = time.perf_counter() - started

        started = time.perf_counter()
        serverAp = formatAddress(apAddressOf(loadOrCreateIdentity(server.dataDir).routingKey.public_key()))
        progress(f"starting {server.name}, serving {serverAp} from {HOST}:{sinkPort}")
        await startOwner(reactor, directory, server, ["--serve", f"{HOST}:{sinkPort}"])
        joined = await waitUntilJoined(reactor, testnet.manifest.nodes + (server,))
        entryPath = await buildPath(reactor, server, "entry")
        if entryPath["ap_address"] != serverAp:
            raise NetworkFailed(f"{server.name}'s entry path is for {entryPath['ap_address']}, not {serverAp} (from its routing key)")
        names = nodeNames(testnet.manifest.nodes + owners)
        avoid = set(entryPath["nodes"]) | {nodeIdInDataDir(server.dataDir)}
        for attempt in range(1, options.client_starts + 1):
            progress(f"starting {client.name}, forwarding {forward[0]}:{forward[1]} to {serverAp}")
            await startOwner(reactor, directory, client, ["--forward", f"{forward[0]}:{forward[1]}={serverAp}"])
            joined = await waitUntilJoined(reactor, testnet.manifest.nodes + owners)
            exitPath = await buildPath(reactor, client, "exit")
            shared = [names.get(node, node[:12]) for node in exitPath["nodes"] if node in avoid]
            if not shared or attempt == options.client_starts:
                break
            progress(
                f"{client.name}'s exit path goes through {', '.join(shared)}, on the entry path or its owner: "
                f"restarting {client.name} for another path ({attempt} of {options.client_starts})"
            )
            await stopNodes(reactor, (client,))
        timings["owners"] = time.perf_counter() - started
        timings["attempts"] = attempt

        tunnel = Route(reactor, "tunnel", *forward, [os.getpid()] + routePids(testnet.manifest.nodes, owners, exitPath, entryPath))
        bare = Route(reactor, "chain", HOST, chain.port, [os.getpid()] + chain.pids)
        samples = {tunnel: Samples(), bare: Samples()}
        totalBytes = int(options.mib * MIB)
        progress(f"{options.rounds} rounds of {options.mib:g} MiB and {options.trips} round trips on each route, then {options.opens} setups of each")
        started = time.perf_counter()
        for number in range(options.rounds):
            order = (bare, tunnel) if number % 2 == 0 else (tunnel, bare)
            for route in order:
                throughput, cpu = await bulkRound(reactor, route, service.sunk, totalBytes)
                samples[route].throughputs.append(throughput)
                samples[route].cpu.append(cpu)
            for route in order:
                roundTrip, cpu = await echoRound(reactor, route, options.trips)
                samples[route].roundTrips.append(roundTrip)
                samples[route].roundTripCpu.append(cpu)
        timings["rounds"] = time.perf_counter() - started
        for route in (tunnel, bare):
            timings[f"idle {route.label}"] = await idleCpu(reactor, route.pids)
            timings[f"processes {route.label}"] = len(route.pids) - 1
        started = time.perf_counter()
        for number in range(options.opens):
            order = (bare, tunnel) if number % 2 == 0 else (tunnel, bare)
            for route in order:
                if route is tunnel:
                    seconds = await openTunnel(reactor, client, serverAp)
                else:
                    seconds = await connectAndEcho(reactor, bare)
                samples[route].setups.append(seconds)
        timings["setups"] = time.perf_counter() - started
    except Exception as e:
        if options.keep:
            raise NetworkFailed(f"{e}\n  the testnet directory, with every node's log: {directory}") from e
        raise
    finally:
        try:
            reactor.removeSystemEventTrigger(stopping)
        except ValueError:
            pass  # the reactor is shutting down and has run it already
        await tearDown()

    figures, baseline = samples[tunnel].figures(), samples[bare].figures()
    return Part(
        figures=figures,
        baseline=baseline,
        goals=dict(NETWORK_GOALS),
        notes=networkNotes(options, figures, baseline, samples[tunnel], samples[bare], timings, joined, names, entryPath, exitPath, directory),
    )


def networkNotes(options, figures, baseline, tunnel, bare, timings, joined, names, entryPath, exitPath, directory):
    """@return: the network part's notes: how it ran, the path it took, the goals."""
    exitHops = [names.get(node, node[:12]) for node in exitPath["nodes"]]
    entryHops = [names.get(node, node[:12]) for node in entryPath["nodes"]]
    hops = exitHops + entryHops[::-1]
    twice = sorted({hop for hop in hops if hops.count(hop) > 1 or hop in ("server", "client")})
    attempts = f", after {timings['attempts']} starts of the client" if timings["attempts"] > 1 else ""
    lines = [
        f"network: {options.nodes} twistd nodes + 2 owners on loopback (testnet up in {timings['up']:.1f} s; owners "
        f"started, joined ({joined}) and paths built in {timings['owners']:.1f} s{attempts}); the tunnel: client -> "
        + " -> ".join(hops)
        + " -> server"
        + (f" (NB: not 6 distinct X-nodes: {', '.join(twice)} twice or an owner)" if twice else " (6 distinct X-nodes)"),
        f"baseline: a chain of {RELAYS} relay processes, {TLS_HOPS} TLS hops (started in {timings['chain']:.1f} s); "
        f"{options.rounds} interleaved rounds ({timings['rounds']:.1f} s), medians: bulk {options.mib:g} MiB in "
        f"{CHUNK_SIZE}-byte writes, {options.trips} round trips of {PING_SIZE} bytes after {WARMUP_TRIPS} untimed; "
        f"setup: {options.opens} tunnel opens (the client node's own time) and as many chain connects + first echo, "
        f"alternating ({timings['setups']:.1f} s)",
        "per round, MiB/s: tunnel " + ", ".join(f"{value:.1f}" for value in tunnel.throughputs)
        + "; chain " + ", ".join(f"{value:.1f}" for value in bare.throughputs)
        + "; CPU ms/MiB: tunnel " + ", ".join(f"{value:.1f}" for value in tunnel.cpu)
        + "; chain " + ", ".join(f"{value:.1f}" for value in bare.cpu)
        + "; round trips, ms: tunnel " + ", ".join(f"{value:.2f}" for value in tunnel.roundTrips)
        + "; chain " + ", ".join(f"{value:.2f}" for value in bare.roundTrips)
        + "; CPU ms per round trip: tunnel " + ", ".join(f"{value:.2f}" for value in tunnel.roundTripCpu)
        + "; chain " + ", ".join(f"{value:.2f}" for value in bare.roundTripCpu),
    ]
    for name, unit in ((THROUGHPUT, "MiB/s"), (ROUND_TRIP, "ms")):
        goal, ratio = NETWORK_GOALS[name], figures[name] / baseline[name]
        lines.append(
            f"{name}: {figures[name]:.2f} {unit} through the tunnel, {baseline[name]:.2f} {unit} through the chain, "
            f"ratio {ratio:.2f} (goal {goal}: {'met' if goal.isMet(ratio) else 'MISSED'})"
        )
    cores = os.cpu_count() or 1
    lines.append(
        f"{BULK_CPU}: {figures[BULK_CPU]:.1f} ms through the tunnel, {baseline[BULK_CPU]:.1f} ms through the chain, "
        f"ratio {figures[BULK_CPU] / baseline[BULK_CPU]:.2f}: {cores} cores, otherwise idle, move at most "
        f"{cores * 1000 / figures[BULK_CPU]:.0f} and {cores * 1000 / baseline[BULK_CPU]:.0f} MiB/s"
    )
    lines.append(
        f"CPU counted: the tunnel's {timings['processes tunnel']} processes (the owners and the paths' X-nodes) and this one, the chain's "
        f"{timings['processes chain']} relays and this one; idle, with nothing sent, they used {timings['idle tunnel']:.1f} and "
        f"{timings['idle chain']:.1f} CPU ms a second"
    )
    lines.append(f"the issue's figure for such a chain on this machine: about {ISSUE_CHAIN_MIB_S} MiB/s; measured here {baseline[THROUGHPUT]:.1f} MiB/s")
    if options.keep:
        lines.append(f"the testnet directory, with every node's log: {directory}")
    return "\n".join(lines)


def nodeNames(nodes):
    """@return: node id (hex) to name, for every one of C{nodes} whose data directory has an identity."""
    names = {}
    for node in nodes:
        nodeId = nodeIdInDataDir(node.dataDir)
        if nodeId is not None:
            names[nodeId] = node.name
    return names


async def within(reactor, deferred, seconds, what):
    """
    @return: (a coroutine of) what C{deferred} fires with, unwrapping a L{FirstError}.
    @raise NetworkFailed: it did not fire within C{seconds} (and was cancelled).
    """
    try:
        return await deferred.addTimeout(seconds, reactor)
    except TimeoutError:
        raise NetworkFailed(f"{what} took more than {seconds:.0f} s") from None
    except FirstError as e:
        e.subFailure.raiseException()


# The owners


def ownerSpecs(manifest):
    """
    @param manifest: the testnet's L{phantom.testnet.manifest.Manifest}.
    @return: the L{NodeSpec}s of the server and the client owner: the next two loopback
        addresses after the testnet's nodes, the same port, node 1 as bootstrap contact, their
        files in C{server} and C{client} below the testnet directory.
    """
    specs = []
    for offset, name in ((1, "server"), (2, "client")):
        index = len(manifest.nodes) + offset
        dataDir = os.path.join(manifest.directory, name)
        specs.append(
            NodeSpec(
                index=index,
                name=name,
                address=loopbackAddress(index),
                port=manifest.port,
                dataDir=dataDir,
                logFile=os.path.join(dataDir, LOG_FILE),
                pidFile=os.path.join(dataDir, PID_FILE),
                bootstrap=(manifest.nodes[0].contact,),
            )
        )
    return tuple(specs)


async def startOwner(reactor, directory, node, extra):
    """
    Start an owner as a C{twistd phantom} daemon, as the testnet starts its nodes
    (L{twistdCommandLine}), with C{extra} options; wait until its launcher has exited.

    @param node: its L{NodeSpec}; owners are numbered after the testnet's nodes, so its index is
        the size of the network with it, for the config file the testnet gives its nodes.
    @raise TestnetError: it did not start; the message has its last log message.
    """
    os.makedirs(node.dataDir, mode=0o700, exist_ok=True)
    writeNodeConfig(node.dataDir, node.index)
    launcher = TwistdLauncher(node)
    commandLine = twistdCommandLine(node, findTwistd()) + list(extra)
    reactor.spawnProcess(launcher, commandLine[0], commandLine, env=os.environ, path=directory)
    await within(reactor, launcher.whenEnded(), OWNER_START_TIMEOUT, f"starting {node.name}")
    if launcher.exitCode != 0:
        await sleep(reactor, 0.5)  # the daemon logs why just after its launcher exits
        why = lastLogMessage(node.logFile) or " ".join(launcher.output.decode("utf-8", "replace").split())
        raise TestnetError(f"{node.name} ({node.contact}) did not start: {why}\n  its log: {node.logFile}")


async def buildPath(reactor, node, kind):
    """
    Ask C{node} to build a path of L{SHAPE} and C{kind}, as C{phantomctl path build --json};
    up to L{BUILD_TRIES} times, L{BUILD_PAUSE} seconds apart (a node that has just joined may not
    yet find enough nodes for a path in the network database).

    @return: the node's answer.
    @raise NetworkFailed: it could not.
    """
    control = ControlClient.forNode(reactor, node.dataDir)
    for attempt in range(1, BUILD_TRIES + 1):
        try:
            return await control.pathBuild(kind, *SHAPE, timeout=BUILD_TIMEOUT)
        except ControlError as e:
            if attempt == BUILD_TRIES:
                raise NetworkFailed(f"{node.name} built no {kind} path, asked {BUILD_TRIES} times: {e}") from e
            progress(f"{node.name} built no {kind} path ({e}); asking again in {BUILD_PAUSE:g} s")
            await sleep(reactor, BUILD_PAUSE)


async def openTunnel(reactor, node, apText):
    """
    Ask C{node} to open a tunnel to C{apText}, as C{phantomctl tunnel open AP --json}.

    @return: (a coroutine of) the seconds the node took to open it, end-to-end TLS included.
    @raise NetworkFailed: it could not, or no echo came back through it.
    """
    try:
        answer = await ControlClient.forNode(reactor, node.dataDir).tunnelOpen(apText)
    except ControlError as e:
        raise NetworkFailed(f"{node.name} opened no tunnel to {apText}: {e}") from e
    if answer["rtt_seconds"] < 0:
        raise NetworkFailed(f"no echo came back through {node.name}'s tunnel to {apText}")
    return answer["open_seconds"]


# What is measured, the same for both routes


class _Served(Protocol):
    """
    One connection to the benchmark's service: an echo, or a sink counting into C{sunk} when it
    begins with L{SINK_MAGIC}.
    """

    def __init__(self, sunk):
        self._sunk = sunk
        self._head = b""
        self._sink = None

    def dataReceived(self, data):
        if self._sink is None:
            head = self._head + data
            if len(head) < len(SINK_MAGIC) and SINK_MAGIC.startswith(head):
                self._head = head
                return
            self._head = b""
            self._sink = head.startswith(SINK_MAGIC)
            data = head[len(SINK_MAGIC) :] if self._sink else head
            if not data:
                return
        if self._sink:
            self._sunk.add(len(data))
        else:
            self.transport.write(data)


class BenchService:
    """
    The TCP service at the end of both routes, on 127.0.0.1.

    @ivar sunk: the L{ByteCounter} of every byte its sink connections received.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self._port = None
        self.sunk = ByteCounter()

    async def listen(self):
        """@return: (a coroutine of) the port it listens on."""
        self._port = await TCP4ServerEndpoint(self._reactor, 0, interface=HOST).listen(_factory(partial(_Served, self.sunk)))
        return self._port.getHost().port

    async def stop(self):
        if self._port is not None:
            port, self._port = self._port, None
            await port.stopListening()


class _Client(Protocol):
    """
    The client end of a connection along a route: counts what comes back into C{received}; when
    the connection is lost, fails a wait on C{received} and on each of C{alsoLost}.

    @ivar closed: fires when the connection is gone.
    """

    def __init__(self, received, alsoLost=()):
        self._received = received
        self._alsoLost = alsoLost
        self.closed = Deferred()

    def dataReceived(self, data):
        self._received.add(len(data))

    def connectionLost(self, reason):
        for counter in (self._received, *self._alsoLost):
            counter.lost(reason)
        self.closed.callback(None)


class Route:
    """
    Where a connection from this process starts to reach the service: the client node's
    forwarded port, or the chain's first relay.
    """

    def __init__(self, reactor, label, host, port, pids):
        """@param pids: the processes that carry its connections, this one included."""
        self._reactor = reactor
        self.label = label
        self.host = host
        self.port = port
        self.pids = pids

    async def open(self, sink=None):
        """
        Connect.

        @param sink: for a bulk connection, the service's L{ByteCounter}; it is the channel's
            C{received}, and a wait on it fails when the connection is lost.
        @return: (a coroutine of) a L{bench.link.Channel}.
        """
        received = ByteCounter()
        alsoLost = (sink,) if sink is not None else ()
        endpoint = TCP4ClientEndpoint(self._reactor, self.host, self.port)
        protocol = await endpoint.connect(_factory(partial(_Client, received, alsoLost)))
        transport = protocol.transport
        return Channel(transport.write, transport, sink or received, transport.loseConnection, protocol.closed)


async def _closing(channel, measuring):
    """
    Await C{measuring}, then close C{channel}; abort it if C{measuring} failed.

    @return: (a coroutine of) what C{measuring} returned.
    """
    try:
        return await measuring
    except BaseException:
        channel.flowControl.abortConnection()
        raise
    finally:
        await channel.close()


async def bulkRound(reactor, route, sunk, totalBytes):
    """
    One bulk transfer of C{totalBytes} along C{route} to the service's sink, on a fresh
    connection, in L{bench.link.measureThroughput}'s way: one untimed chunk, then
    L{bench.link.BulkProducer}, timed from its first write until the sink has counted every byte.

    @return: (a coroutine of) the throughput in MiB/s and the CPU time the route's processes used
        meanwhile, in ms per MiB.
    """
    channel = await route.open(sink=sunk)

    async def transfer():
        channel.send(SINK_MAGIC)
        warmedUp = sunk.reach(sunk.count + CHUNK_SIZE)
        channel.send(CHUNK)
        await warmedUp
        done = sunk.reach(sunk.count + totalBytes)
        cpu = cpuSeconds(route.pids)
        started = time.perf_counter()
        BulkProducer(channel, totalBytes).start()
        await done
        seconds = time.perf_counter() - started
        # Less CPU than one clock tick (a tiny transfer) counts as one tick: never zero.
        used = max(cpuSeconds(route.pids) - cpu, 1 / os.sysconf("SC_CLK_TCK"))
        return totalBytes / MIB / seconds, used * 1000 / (totalBytes / MIB)

    seconds = 10 + (totalBytes + CHUNK_SIZE) / (MIN_TRANSFER_MIB_S * MIB)
    what = f"a bulk transfer of {totalBytes / MIB:g} MiB through the {route.label}"
    return await _closing(channel, within(reactor, Deferred.fromCoroutine(transfer()), seconds, what))


def routePids(nodes, owners, exitPath, entryPath):
    """
    @return: the pids of the processes a tunnel over C{exitPath} and C{entryPath} passes
        through: both C{owners} and those of C{nodes} on either path (the testnet's other nodes
        are not on the route, and the chain has no counterpart to their work).
    """
    onPaths = set(exitPath["nodes"]) | set(entryPath["nodes"])
    chosen = list(owners) + [node for node in nodes if nodeIdInDataDir(node.dataDir) in onPaths]
    return [pid for pids in nodeProcesses(chosen).values() for pid in pids]


IDLE_SECONDS = 2.0
"""How long the route's processes are watched with no traffic, for the notes."""


async def idleCpu(reactor, pids):
    """@return: the CPU ms a second that C{pids} use, summed, while this process sends nothing for L{IDLE_SECONDS}."""
    cpu = cpuSeconds(pids)
    await sleep(reactor, IDLE_SECONDS)
    return (cpuSeconds(pids) - cpu) * 1000 / IDLE_SECONDS


def cpuSeconds(pids):
    """
    @return: the CPU time that processes C{pids} have used so far, all their threads, those
        gone too, in seconds: each process's CPU-time clock (the scheduler's count, in
        nanoseconds), or where the kernel offers none, user and system time at its clock-tick
        resolution (10 ms, and sampled: a transfer of 16 MiB is a few hundred ms of CPU over 9
        processes). A process that is gone counts nothing.
    """
    total = 0.0
    for pid in pids:
        try:
            # Linux's CPU-time clock of another process (clock_getcpuclockid(3)).
            total += time.clock_gettime(((~pid) << 3) | 2)
        except OSError:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def echoRound(reactor, route, trips):
    """
    L{WARMUP_TRIPS} untimed, then C{trips} timed 1 KiB round trips along C{route}, on a fresh
    connection.

    @return: (a coroutine of) the median round trip in ms, and the CPU time the route's
        processes used during the timed ones, in ms per round trip.
    """
    channel = await route.open()

    async def trip():
        seconds = 10 + (WARMUP_TRIPS + trips) * PING_SIZE / (MIN_TRANSFER_MIB_S * MIB)
        what = f"{WARMUP_TRIPS + trips} round trips through the {route.label}"
        await within(reactor, measureRoundTrips(channel, WARMUP_TRIPS), seconds, what)
        cpu = cpuSeconds(route.pids)
        times = await within(reactor, measureRoundTrips(channel, trips), seconds, what)
        return times, (cpuSeconds(route.pids) - cpu) * 1000 / trips

    times, cpu = await _closing(channel, trip())
    return median(times) * 1000, cpu


async def connectAndEcho(reactor, route):
    """
    Connect along C{route} and wait until a first 1 KiB echo has come back.

    @return: (a coroutine of) the seconds from connecting until the echo was back.
    """
    started = time.perf_counter()
    channel = await route.open()

    async def echo():
        back = channel.received.reach(PING_SIZE)
        channel.send(PING)
        await within(reactor, back, 30, f"a first echo through the {route.label}")
        return time.perf_counter() - started

    return await _closing(channel, echo())


# The chain of relays


class RelayProcess(ProcessProtocol):
    """
    One relay (L{bench.relay}) of the chain: reads the JSON lines it prints.

    @ivar ended: whether it has exited.
    @ivar gone: fires once it has exited.
    """

    def __init__(self, name):
        self.name = name
        self._buffer = b""
        self._messages = []
        self._waiting = []
        self._errors = b""
        self.ended = False
        self.gone = Deferred()

    def outReceived(self, data):
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        self._messages += [json.loads(line) for line in lines if line.strip()]
        while self._messages and self._waiting:
            self._waiting.pop(0).callback(self._messages.pop(0))

    def errReceived(self, data):
        self._errors = (self._errors + data)[-2000:]

    def nextMessage(self):
        """@return: a Deferred firing with the next JSON line it prints, or failing if it exits first."""
        waiting = Deferred()
        if self._messages:
            waiting.callback(self._messages.pop(0))
        elif self.ended:
            waiting.errback(self._failure())
        else:
            self._waiting.append(waiting)
        return waiting

    def _failure(self):
        return NetworkFailed(f"{self.name} exited: {self._errors.decode('utf-8', 'replace').strip() or 'no message'}")

    def processEnded(self, reason):
        self.ended = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(self._failure())
        self.gone.callback(None)


class RelayChain:
    """
    C{count} relay processes on one host, the first accepting plain TCP, the others TLS, each
    carrying connections to the next, the last to a target over plain TCP.

    @ivar port: the first relay's port, once started.
    """

    def __init__(self, reactor, count):
        self._reactor = reactor
        self._count = count
        self._relays = []
        self.port = None

    @property
    def pids(self):
        """The relays' process ids, in chain order."""
        return [relay.transport.pid for relay in self._relays]

    async def start(self, host, targetPort):
        """Start the relays, all at once, then tell each its next hop."""
        for number in range(self._count):
            relay = RelayProcess(f"relay {number}")
            arguments = [sys.executable, "-m", "bench.relay", "--accept", "tcp" if number == 0 else "tls", "--host", host]
            self._reactor.spawnProcess(relay, sys.executable, arguments, env=os.environ, path=REPOSITORY)
            self._relays.append(relay)
        every = lambda: gatherResults([relay.nextMessage() for relay in self._relays], consumeErrors=True)  # noqa: E731
        listening = await within(self._reactor, every(), RELAY_TIMEOUT, "starting the relays")
        hops = [{"host": host, "port": relay["port"], "node_id": relay["node_id"]} for relay in listening[1:]]
        hops.append({"host": host, "port": targetPort, "node_id": None})
        for relay, hop in zip(self._relays, hops):
            relay.transport.write(json.dumps(hop).encode() + b"\n")
        await within(self._reactor, every(), RELAY_TIMEOUT, "telling the relays their next hops")
        self.port = listening[0]["port"]

    async def stop(self):
        """Close every relay's stdin, and kill those that have not exited after L{RELAY_TIMEOUT}."""
        for relay in self._relays:
            if not relay.ended:
                relay.transport.closeStdin()
        running = [relay for relay in self._relays if not relay.ended]
        try:
            await within(self._reactor, gatherResults([relay.gone for relay in running]), RELAY_TIMEOUT, "stopping the relays")
        except NetworkFailed:
            for relay in running:
                if not relay.ended:
                    relay.transport.signalProcess("KILL")
            await gatherResults([relay.gone for relay in running])


# Setup floods


PENDING_FLOOD_SURVIVAL = "pending_flood_survival"
FLOOD_BLOCKS_PER_SECOND = 10_000
FLOOD_ENTRY_REQUESTS_PER_SECOND = 1_000
FLOOD_SECONDS = 3.0
FLOOD_TICK = 0.01
HONEST_SETUPS = 100
GOAL_FLOOD_SURVIVAL = 0.99


class _Cleanups:
    """What the in-memory test networks ask of a test case: calls to make when done."""

    def __init__(self):
        self.calls = []

    def addCleanup(self, f, *args, **kwargs):
        self.calls.append((f, args, kwargs))

    def run(self):
        for f, args, kwargs in reversed(self.calls):
            f(*args, **kwargs)


def measurePendingFlood(options):
    """
    C{pending_flood_survival}: on the in-memory tunnel network of the tunnel tests (real path
    and tunnel services, driven clock), the fraction of L{HONEST_SETUPS} tunnel setups that
    succeed while one neighbour floods the nodes they pass through, against the same setups
    with no flood (the baseline). The honest tunnels run from a client's exit path (x0, x1,
    T) to a server's entry path; the flooder is x0 of a path of its own through the client's
    x1, whose T colludes and answers nothing, and for L{FLOOD_SECONDS} of the clock it sends
    that x1 L{FLOOD_BLOCKS_PER_SECOND} setup blocks a second and opens
    L{FLOOD_ENTRY_REQUESTS_PER_SECOND} ENTRY links a second to the server's entry node, each
    asking for the server's AP-address; the honest setups are spread over the same time.
    Goal: at least L{GOAL_FLOOD_SURVIVAL} of the baseline.

    @param options: unused (the figure has no options of its own).
    @return: the L{Part}.
    """
    survival = _floodSurvival(flood=True)
    baseline = _floodSurvival(flood=False)
    met = "met" if survival >= GOAL_FLOOD_SURVIVAL * baseline else "MISSED"
    return Part(
        figures={PENDING_FLOOD_SURVIVAL: survival},
        baseline={PENDING_FLOOD_SURVIVAL: baseline},
        goals={PENDING_FLOOD_SURVIVAL: RatioGoal(GOAL_FLOOD_SURVIVAL, atLeast=True)},
        notes=(
            f"pending flood: {HONEST_SETUPS} honest tunnel setups over {FLOOD_SECONDS:g} s while one neighbour "
            f"sends {FLOOD_BLOCKS_PER_SECOND} setup blocks and opens {FLOOD_ENTRY_REQUESTS_PER_SECOND} ENTRY links "
            f"a second; {survival:.2f} succeed ({baseline:.2f} with no flood); at least {GOAL_FLOOD_SURVIVAL}: {met}"
        ),
    )


def _floodSurvival(flood):
    """@return: the fraction of honest tunnel setups that succeed, with or without the flood."""
    from tests.tunnel.helpers import acceptInto
    from tests.tunnel.memory import MemoryTunnelNetwork
    from phantom.path.interfaces import PathKind
    from phantom.wire.link import LINK_ID_SIZE, Purpose
    from phantom.wire.tunnel import BLOCK_SIZE, ApRequest

    cleanups = _Cleanups()
    network = MemoryTunnelNetwork(cleanups, 14)
    try:
        nodes = network.nodes
        server, client = nodes[:2]
        network.buildPath(server, PathKind.ENTRY, nodes[2:5])
        network.buildPath(client, PathKind.EXIT, nodes[5:8])
        relay, flooder, colluder = nodes[6], nodes[9], nodes[10]
        floodPath = network.buildPath(nodes[8], PathKind.EXIT, [flooder, relay, colluder])
        colluder.tunnels.pathFrameReceived = lambda path, side, payload: None
        flooding = network.relayedOn(flooder, floodPath)
        [towardsRelay] = [flooding.links[side] for side in flooding.sides() if flooding.contacts[side].nodeId == relay.nodeId]
        entryNode = nodes[4]
        request = ApRequest.build({"ap_address": server.apAddress})
        acceptInto(server, [])
        ticks = int(FLOOD_SECONDS / FLOOD_TICK)
        setupEvery = max(1, ticks // HONEST_SETUPS)
        outcomes = []

        def asked(link):
            link.attach(_Quiet())
            link.sendFrame(request)

        for tick in range(ticks):
            if flood:
                for _ in range(int(FLOOD_BLOCKS_PER_SECOND * FLOOD_TICK)):
                    towardsRelay.sendFrame(os.urandom(BLOCK_SIZE))
                for _ in range(int(FLOOD_ENTRY_REQUESTS_PER_SECOND * FLOOD_TICK)):
                    opened = flooder.links.connect(*entryNode.address, Purpose.ENTRY, os.urandom(LINK_ID_SIZE), entryNode.nodeId)
                    opened.addCallbacks(asked, lambda failure: None)
            if tick % setupEvery == 0 and len(outcomes) < HONEST_SETUPS:
                opening = client.tunnels.open(server.apAddress)
                opening.addCallbacks(lambda tunnel: (outcomes.append(True), tunnel.loseConnection()), lambda failure: outcomes.append(False))
            network.runFor(FLOOD_TICK)
        network.runFor(60)
        return sum(outcomes) / HONEST_SETUPS
    finally:
        cleanups.run()


class _Quiet:
    """A link handler that ignores what arrives."""

    def frameReceived(self, payload):
        pass

    def linkClosed(self, reason):
        pass
