"""
GET success, GET latency and RPCs per lookup of our DHT against bmuller's kademlia, same workload.

Both sides run the same workload, drawn from the same seed: N nodes (C{--nodes}, default 100)
join a network through node 0, then C{--operations} PUTs (default 200) of distinct random
32-byte keys with random values of L{VALUE_SIZE} bytes, each through a randomly chosen node,
one after the other; then L{WARMUP_GETS} untimed GETs of stored keys through random nodes;
then C{--operations} timed GETs, each stored key once in a random order, each through a
randomly chosen node, one after the other, with a pause of L{SETTLE_SECONDS} after each so
that work a GET leaves behind (replies still in flight, the caching STORE) does not land in
the next one's time.

The subject is our network database: every node a L{phantom.netdb.service.DhtNode} with its
own L{phantom.link.service.LinkService} (TLS 1.3, mutual authentication, the peer's node id
pinned) on its own loopback address, all in this process on one Twisted reactor (see
L{phantom.testnet.inprocess}), default L{DhtSettings} and L{LinkLimits}. A PUT is
C{DhtNode.put(key, value, ttl, replication=20)}: the value is kept on the node put through and
on the 20 closest nodes, as bmuller's C{set} keeps it on its k = 20 closest. A GET is
C{DhtNode.get(key)}: the local store, else a FIND_VALUE lookup, which asks the closest contact
at once and the other alpha - 1 on the reactor's next turn, and returns at the first valid
value (the other answers still come, after it, and count in C{cpu_ms_per_get}).

The baseline is C{kademlia} from PyPI (bmuller's: asyncio, UDP through C{rpcudp}, msgpack, no
authentication, no encryption; k = 20, alpha = 3, 5 s per request, as ours): N C{Server}s in
one asyncio event loop in a child process, on the same loopback addresses (UDP), each joining
through node 0 (C{bootstrap}); a PUT is C{Server.set(key, value)}, a GET C{Server.get(key)}
(the local store, else a C{ValueSpiderCrawl}, which sends alpha requests at once, waits for all
their answers and, when one of them lacked the value, for its caching STORE). Both sides are single processes, so each gets
one core of this machine, and they run one after the other (baseline first), never at once.

Figures (the same definitions on both sides, computed by the same code here):

    - C{get_success_rate}: timed GETs that returned exactly the value put, over timed GETs.
    - C{get_p50_ms}, C{get_p95_ms}: median and 95th percentile (nearest rank) of the timed
      GETs' latencies in ms, each GET timed on its own, end to end: from the call until its
      result is delivered, local hits (no RPC at all) included, as the user sees them.
    - C{rpcs_per_lookup}: requests sent by the lookups the timed GETs ran, over those lookups
      (GETs answered from the local store run none and are not counted). Ours: the change of
      C{DhtNode.stats} (L{LookupStats}: lookups, and the requests they sent) summed over all
      nodes during the timed GETs. Baseline: C{KademliaProtocol.call_find_value} calls (one
      request datagram each) over C{ValueSpiderCrawl}s started during the timed GETs; the
      STORE each side sends to cache a found value is not a lookup request on either side.
      Not a number when no timed GET needed a lookup (too few nodes: every node holds every
      value below about 21 nodes).
    - C{requests_per_get}: the same requests over all timed GETs: the round trips a GET costs
      on average (a lookup's first requests leave together, alpha of them).
    - C{cpu_ms_per_get}: CPU time of the side's process during the timed GETs and their
      pauses, over the timed GETs: what a GET costs the whole network (every node is in that
      process, both ends of every request, and the work a GET leaves behind), on a shared
      machine a steadier figure than the latencies.
    - C{get_cpu_p50_ms}: the median of the timed GETs' CPU times, each the CPU time the
      side's process spent from the call until the result was delivered (user and system:
      the kernel's loopback work is the sending process's). The whole network is one process
      that only waits for its own CPU, so on a quiet machine this is the GET's latency; on a
      loaded one it leaves out the time the process waited for a core, and so predicts the
      quiet machine's C{get_p50_ms} ratio where the latencies cannot.
    - C{lookup_get_p50_ms}, C{lookup_get_cpu_p50_ms}: the same medians over the timed GETs that
      ran a lookup only (the asking node's lookups counted before and after each): the sides
      answer different shares of GETs from the local store (ours keeps a value on the node it
      was put through as well as on the k closest), and those take almost no time.

Goals: the median at most 1.0 times the baseline's and no more RPCs per lookup, although every
one of our RPCs is authenticated and encrypted; the issue asks for success of at least 99.5 %,
an absolute goal: the ratio goal is success at least 0.995 of the baseline's, and the notes say
whether the absolute one is met.

Joining (TLS handshakes included on our side), the PUTs and the warm-up GETs are not in the
figures; their durations are in the notes. The baseline needs the C{kademlia} package:
C{pip install kademlia}, or C{make bench}, which installs the C{bench} extra.
"""

import asyncio
import importlib.util
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from statistics import median

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from bench.report import BenchmarkResult, RatioGoal
from phantom.netdb import K
from phantom.testnet.inprocess import InProcessNetwork, loopbackAddress

KEY_SIZE = 32
"""Bytes of each key: a DHT key of ours as it is; bmuller's C{get}/C{set} hash it with SHA-1."""

VALUE_SIZE = 256
"""Bytes of each value put."""

REPLICATION = K
"""Our PUTs ask for the value on this many closest nodes: bmuller's k."""

TTL = 3600
"""Seconds our PUTs ask the values to live (bmuller keeps them a week); far beyond a run."""

WARMUP_GETS = 20
"""Untimed GETs before the timed ones, by default."""

SETTLE_SECONDS = 0.01
"""Pause after each GET, untimed, on both sides."""

JOIN_CONCURRENCY = 8
"""How many nodes join at once after node 0, on both sides."""

BASELINE_PACKAGE = "kademlia"
MISSING_BASELINE = (
    "the dht benchmark measures its baseline with the kademlia package (bmuller's), which is not "
    "installed: run `pip install kademlia` in this environment, or `make bench`"
)

SUCCESS = "get_success_rate"
P50 = "get_p50_ms"
P95 = "get_p95_ms"
RPCS = "rpcs_per_lookup"
CPU = "cpu_ms_per_get"
REQUESTS = "requests_per_get"
CPU_P50 = "get_cpu_p50_ms"
LOOKUP_P50 = "lookup_get_p50_ms"
LOOKUP_CPU_P50 = "lookup_get_cpu_p50_ms"

ABSOLUTE_SUCCESS_GOAL = 0.995
"""The issue's goal for our success rate, whatever the baseline's."""

GOALS = {
    SUCCESS: RatioGoal(ABSOLUTE_SUCCESS_GOAL, atLeast=True),
    P50: RatioGoal(1.0, atLeast=False),
    RPCS: RatioGoal(1.0, atLeast=False),
}
"""What our DHT must reach against bmuller's kademlia."""


class BaselineMissing(Exception):
    """The C{kademlia} package, which the baseline runs on, is not installed."""


class BaselineFailed(Exception):
    """The baseline's child process failed or reported nothing usable."""


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take a minute or two).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    parser.add_argument("--nodes", type=_atLeast(2), default=100, help="nodes in each network (default 100)")
    parser.add_argument(
        "--operations", type=_atLeast(1), default=200, help="PUTs, and timed GETs, on each network (default 200)"
    )
    parser.add_argument(
        "--warmup", type=_atLeast(0), default=WARMUP_GETS, help=f"untimed GETs before the timed ones (default {WARMUP_GETS})"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the workload, the same for both sides (default 1)")


def _atLeast(minimum):
    def convert(text):
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    convert.__name__ = f"integer >= {minimum}"
    return convert


# The workload, the same for both sides


@dataclass(frozen=True)
class Workload:
    """
    What both sides run; everything random in it comes from C{seed}.

    @ivar nodes: how many nodes each network has.
    @ivar operations: how many PUTs, and how many timed GETs.
    @ivar warmup: how many untimed GETs come before the timed ones.
    @ivar seed: seeds L{plan} (and the baseline's node ids).
    @ivar valueSize: bytes of each value.
    @ivar settle: seconds of pause after each GET.
    @ivar joinConcurrency: how many nodes join at once after node 0.
    """

    nodes: int
    operations: int
    warmup: int
    seed: int
    valueSize: int = VALUE_SIZE
    settle: float = SETTLE_SECONDS
    joinConcurrency: int = JOIN_CONCURRENCY

    def plan(self):
        """
        @return: a L{Plan} drawn from C{seed}: the same for the same workload.
        """
        rng = random.Random(self.seed)
        keys = [rng.randbytes(KEY_SIZE) for _ in range(self.operations)]
        values = [rng.randbytes(self.valueSize) for _ in range(self.operations)]
        puts = [(rng.randrange(self.nodes), index) for index in range(self.operations)]
        warmups = [(rng.randrange(self.nodes), rng.randrange(self.operations)) for _ in range(self.warmup)]
        order = list(range(self.operations))
        rng.shuffle(order)
        gets = [(rng.randrange(self.nodes), index) for index in order]
        return Plan(keys, values, puts, warmups, gets)


@dataclass(frozen=True)
class Plan:
    """
    The operations of a L{Workload}.

    @ivar keys: the keys, one per PUT.
    @ivar values: the value put under each key.
    @ivar puts: C{(node number, key number)} of each PUT, in order.
    @ivar warmups: C{(node number, key number)} of each untimed GET, in order.
    @ivar gets: C{(node number, key number)} of each timed GET, in order.
    """

    keys: list
    values: list
    puts: list
    warmups: list
    gets: list


@dataclass
class Run:
    """
    What one side measured, as the figures are computed from it; JSON-able.

    @ivar latenciesMs: each timed GET's latency in ms, in order.
    @ivar successes: timed GETs that returned the value put.
    @ivar lookups: lookups the timed GETs ran.
    @ivar requests: requests those lookups sent.
    @ivar joinSeconds: from starting node 0 until every node had joined.
    @ivar putSeconds: the PUT phase.
    @ivar cpuSeconds: CPU time of the whole process (every node, both ends of every request)
        during the timed GETs and their pauses.
    @ivar cpuLatenciesMs: each timed GET's CPU time in ms (the process's, from the call until
        its result), in order.
    @ivar lookedUp: whether each timed GET ran a lookup, in order (empty: not known).
    """

    latenciesMs: list
    successes: int
    lookups: int
    requests: int
    joinSeconds: float
    putSeconds: float
    cpuSeconds: float
    cpuLatenciesMs: list
    lookedUp: list = field(default_factory=list)

    def figures(self):
        """
        @return: the figures, by name.
        """
        gets = len(self.latenciesMs)
        lookupLatencies = [ms for ms, ran in zip(self.latenciesMs, self.lookedUp) if ran]
        lookupCpu = [ms for ms, ran in zip(self.cpuLatenciesMs, self.lookedUp) if ran]
        return {
            SUCCESS: self.successes / gets,
            P50: median(self.latenciesMs),
            P95: percentile(self.latenciesMs, 95),
            RPCS: self.requests / self.lookups if self.lookups else math.nan,
            CPU: self.cpuSeconds * 1000 / gets,
            REQUESTS: self.requests / gets,
            CPU_P50: median(self.cpuLatenciesMs),
            LOOKUP_P50: median(lookupLatencies) if lookupLatencies else math.nan,
            LOOKUP_CPU_P50: median(lookupCpu) if lookupCpu else math.nan,
        }


def percentile(values, percent):
    """
    @return: the nearest-rank C{percent}th percentile of C{values} (a non-empty sequence).
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


# The whole benchmark


def measure(reactor, options):
    """
    Run the workload on the baseline (in a child process), then on our DHT (in this process).

    @param reactor: provides C{IReactorTCP}, C{IReactorTime} and C{IReactorProcess}.
    @param options: the parsed options: C{nodes}, C{operations}, C{warmup}, C{seed}.
    @return: a Deferred firing with the L{BenchmarkResult}, or failing with
        L{BaselineMissing} when the C{kademlia} package is not installed.
    """
    workload = Workload(options.nodes, options.operations, options.warmup, options.seed)
    return Deferred.fromCoroutine(_measure(reactor, workload))


async def _measure(reactor, workload):
    requireBaseline()
    baseline = await runBaseline(reactor, workload)
    ours = await runPhantom(reactor, workload)
    figures, baselineFigures = ours.figures(), baseline.figures()
    if baselineFigures[SUCCESS] == 0:
        raise BaselineFailed("not one GET of the baseline found its value: its figures mean nothing")
    met = "met" if figures[SUCCESS] >= ABSOLUTE_SUCCESS_GOAL else "MISSED"
    gets = len(ours.latenciesMs)
    return BenchmarkResult(
        name="dht",
        figures=figures,
        baseline=baselineFigures,
        subject="phantom DHT (TLS links)",
        baselineName=f"{BASELINE_PACKAGE} (UDP)",
        notes=(
            f"{workload.nodes} nodes each, joined through node 0; {workload.operations} PUTs of "
            f"{workload.valueSize}-byte values (ours: replication {REPLICATION}), {workload.warmup} untimed "
            f"GETs, {gets} timed GETs, through random nodes (seed {workload.seed}); each side one "
            f"process, one after the other.\n"
            f"joins: ours {ours.joinSeconds:.1f} s, baseline {baseline.joinSeconds:.1f} s; PUTs: ours "
            f"{ours.putSeconds:.1f} s, baseline {baseline.putSeconds:.1f} s; GETs that ran a lookup: ours "
            f"{ours.lookups}/{gets}, baseline {baseline.lookups}/{gets}.\n"
            f"absolute goal get_success_rate >= {ABSOLUTE_SUCCESS_GOAL}: {met} ({figures[SUCCESS]:.4f})"
        ),
        goals=GOALS,
    )


def requireBaseline():
    """
    @raise BaselineMissing: the C{kademlia} package cannot be imported here (the child
        process runs this same interpreter).
    """
    if importlib.util.find_spec(BASELINE_PACKAGE) is None:
        raise BaselineMissing(MISSING_BASELINE)


# Our side


async def runPhantom(reactor, workload):
    """
    Run C{workload} on an in-process network of our DHT nodes, then stop it.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @return: (a coroutine of) the L{Run}.
    """
    plan = workload.plan()
    network = InProcessNetwork(reactor, workload.nodes, joinConcurrency=workload.joinConcurrency, seed=workload.seed)
    try:
        started = time.perf_counter()
        nodes = await network.start()
        joinSeconds = time.perf_counter() - started

        started = time.perf_counter()
        for nodeIndex, keyIndex in plan.puts:
            await nodes[nodeIndex].put(plan.keys[keyIndex], plan.values[keyIndex], TTL, REPLICATION)
        putSeconds = time.perf_counter() - started

        for nodeIndex, keyIndex in plan.warmups:
            await nodes[nodeIndex].get(plan.keys[keyIndex])
            await deferLater(reactor, workload.settle, lambda: None)

        lookups = sum(node.stats.lookups for node in nodes)
        requests = sum(node.stats.requests for node in nodes)
        latencies, cpuLatencies, lookedUp, successes = [], [], [], 0
        cpuStarted = time.process_time()
        for nodeIndex, keyIndex in plan.gets:
            get = nodes[nodeIndex].get
            key = plan.keys[keyIndex]
            lookupsBefore = nodes[nodeIndex].stats.lookups
            started, cpu = time.perf_counter(), time.process_time()
            value = await get(key)
            latencies.append((time.perf_counter() - started) * 1000)
            cpuLatencies.append((time.process_time() - cpu) * 1000)
            lookedUp.append(nodes[nodeIndex].stats.lookups != lookupsBefore)
            successes += value == plan.values[keyIndex]
            await deferLater(reactor, workload.settle, lambda: None)
        cpuSeconds = time.process_time() - cpuStarted
        lookups = sum(node.stats.lookups for node in nodes) - lookups
        requests = sum(node.stats.requests for node in nodes) - requests
    finally:
        await network.stop()
    return Run(latencies, successes, lookups, requests, joinSeconds, putSeconds, cpuSeconds, cpuLatencies, lookedUp)


# The baseline's side: a child process running bmuller's kademlia on asyncio

WORKER_FLAG = "--baseline-worker"


async def runBaseline(reactor, workload):
    """
    Run C{workload} on bmuller's kademlia in a child process: C{python -m bench.dht
    --baseline-worker WORKLOAD}, which prints its L{Run} as JSON.

    @param reactor: provides C{IReactorProcess}.
    @return: (a coroutine of) the baseline's L{Run}.
    @raise BaselineFailed: the child process failed or printed no L{Run}.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    arguments = ("-m", "bench.dht", WORKER_FLAG, json.dumps(asdict(workload)))
    out, err, status = await getProcessOutputAndValue(sys.executable, arguments, env=dict(os.environ), path=root, reactor=reactor)
    if status != 0:
        raise BaselineFailed(f"the baseline's process exited with status {status}:\n{err.decode(errors='replace')[-4000:]}")
    try:
        return Run(**json.loads(out))
    except (ValueError, TypeError) as e:
        raise BaselineFailed(f"the baseline's process printed no result ({e}): {out[-1000:]!r}") from e


class _CallCounter:
    """Counts bmuller's lookups and their requests while C{counting} is true."""

    def __init__(self):
        self.counting = False
        self.lookups = 0
        self.requests = 0

    def install(self):
        """Wrap C{ValueSpiderCrawl.__init__} and C{KademliaProtocol.call_find_value}."""
        from kademlia.crawling import ValueSpiderCrawl
        from kademlia.protocol import KademliaProtocol

        counter = self
        originalInit = ValueSpiderCrawl.__init__
        originalCall = KademliaProtocol.call_find_value

        def __init__(self, *args, **kwargs):
            if counter.counting:
                counter.lookups += 1
            originalInit(self, *args, **kwargs)

        def call_find_value(self, *args, **kwargs):
            if counter.counting:
                counter.requests += 1
            return originalCall(self, *args, **kwargs)

        ValueSpiderCrawl.__init__ = __init__
        KademliaProtocol.call_find_value = call_find_value


async def baselineRun(workload):
    """
    Run C{workload} on N kademlia C{Server}s in the running asyncio event loop.

    @return: (a coroutine of) the L{Run}.
    """
    from kademlia.network import Server

    counter = _CallCounter()
    counter.install()
    plan = workload.plan()
    random.seed(workload.seed)  # kademlia draws node ids from the random module
    servers = []

    async def start(index, bootstrap):
        server = Server()
        servers.append(server)
        await server.listen(0, loopbackAddress(index))
        if bootstrap:
            await server.bootstrap(bootstrap)
        return server

    try:
        started = time.perf_counter()
        first = await start(0, None)
        firstAddress = first.transport.get_extra_info("sockname")[:2]
        semaphore = asyncio.Semaphore(workload.joinConcurrency)

        async def join(index):
            async with semaphore:
                return await start(index, [firstAddress])

        nodes = [first] + list(await asyncio.gather(*[join(index) for index in range(1, workload.nodes)]))
        joinSeconds = time.perf_counter() - started

        started = time.perf_counter()
        for nodeIndex, keyIndex in plan.puts:
            await nodes[nodeIndex].set(plan.keys[keyIndex], plan.values[keyIndex])
        putSeconds = time.perf_counter() - started

        for nodeIndex, keyIndex in plan.warmups:
            await nodes[nodeIndex].get(plan.keys[keyIndex])
            await asyncio.sleep(workload.settle)

        latencies, cpuLatencies, lookedUp, successes = [], [], [], 0
        cpuStarted = time.process_time()
        for nodeIndex, keyIndex in plan.gets:
            get = nodes[nodeIndex].get
            key = plan.keys[keyIndex]
            counter.counting = True
            lookupsBefore = counter.lookups
            started, cpu = time.perf_counter(), time.process_time()
            value = await get(key)
            latencies.append((time.perf_counter() - started) * 1000)
            cpuLatencies.append((time.process_time() - cpu) * 1000)
            lookedUp.append(counter.lookups != lookupsBefore)
            successes += value == plan.values[keyIndex]
            await asyncio.sleep(workload.settle)
            counter.counting = False
        cpuSeconds = time.process_time() - cpuStarted
    finally:
        for server in servers:
            server.stop()
    return Run(latencies, successes, counter.lookups, counter.requests, joinSeconds, putSeconds, cpuSeconds, cpuLatencies, lookedUp)


def workerMain(arguments):
    """
    The baseline's child process: C{--baseline-worker WORKLOAD-JSON}; prints the L{Run} as
    JSON on stdout.

    @param arguments: the command-line arguments after the program name.
    @return: the exit status.
    """
    if len(arguments) != 2 or arguments[0] != WORKER_FLAG:
        print(f"usage: python -m bench.dht {WORKER_FLAG} WORKLOAD-JSON (run by python -m bench dht)", file=sys.stderr)
        return 2
    try:
        requireBaseline()
    except BaselineMissing as e:
        print(e, file=sys.stderr)
        return 1
    workload = Workload(**json.loads(arguments[1]))
    run = asyncio.run(baselineRun(workload))
    print(json.dumps(asdict(run)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(workerMain(sys.argv[1:]))
