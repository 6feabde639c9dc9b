"""
Owner unlinkability: what a path's nodes and the public routing entries tell about the owner.

Every figure is measured against its ideal, computed in the same run; the ratio figure/ideal
is what the goals bound. Nothing here uses the network: the arrays are played on tokens by the
owner's own code, and the builds run on in-process nodes (L{phantom.link.testing.MemoryNetwork},
L{phantom.netdb.testing.MemoryDatabase}) on a driven clock, with a one-way latency of 20 to
50 ms between every two nodes (drawn once per pair) and a link taking five one-way trips to
open (TCP, TLS 1.3 and the OPEN frame).

    - C{position_posterior_max}: what the number of slots in a setup array tells a node about
      where it sits on the circle. For each shape of L{SHAPES}, C{--rounds} rounds (default
      20,000) are played with L{phantom.path.array.playRound}, the arrangement
      L{phantom.path.array.buildArray} builds every array from; for every array size s that
      arrived, and every position p, P(p | s) is the share of arrivals of size s that were at
      position p. The figure is the largest of them, over shapes, sizes and positions (the
      shape whose ratio to its ideal is largest); its ideal is 1/N, N = x + y, a node that
      learns nothing. Goal: ratio <= 1.25.
    - C{x0_timing_advantage}: whether an X-node can tell it is x0, the owner's neighbour, by
      when the finished path's link from its predecessor arrives. Over C{--builds} exit-path
      builds (default 300) of shape (3, 12) from changing owners, each X-node with a
      predecessor notes the delay from its processing of round 2 to the arrival of that PATH
      link; the figure is the balanced accuracy (mean of the rates on x0 and on the other
      X-nodes) of the best threshold on that delay, either way round; ideal 0.5, a coin.
      Goal: ratio <= 1.2 (accuracy <= 0.6).
    - C{entry_time_resolution_s}: how closely a published routing entry dates its path. Over
      C{--entries} entry-path builds (default 40), started at random moments, the observer
      knows every published entry's fields (sequence, expiry) and the moment it was published,
      and how each of them lies from the build time over all builds (the smallest and largest
      difference: the model it can learn); for each build it intersects what each of them
      allows. The figure is the width of those intervals that nine builds in ten reach or
      exceed (L{narrowestInterval}), in seconds; its ideal is 600 (the issue's "nothing finer
      than 10 minutes"). Goal: ratio >= 1.

A figure is one function of the options (L{FIGURES}): it returns a L{Figure} or a Deferred of
one. Adding a figure is adding such a function to that list.
"""

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from twisted.internet.defer import Deferred, maybeDeferred

from bench.report import BenchmarkResult, RatioGoal
from phantom.config import PathSettings
from phantom.identity import Identity
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb.records import RoutingEntry
from phantom.netdb.testing import MemoryDatabase
from phantom.path.array import playRound
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from phantom.path.relay import Rewire, SetupParticipant
from phantom.path.service import PathService
from phantom.wire.dht import Table
from phantom.wire.link import Purpose

SHAPES = ((3, 12), (3, 5), (2, 5))
"""The (x, y) shapes whose arrays are played."""

TIMING_SHAPE = (3, 12)
LATENCY = (0.020, 0.050)
"""The range the one-way latency between two nodes is drawn from, in seconds."""
START = 1_800_000_000
"""Where the clock starts: records are timestamped and judged by it."""
ENTRY_IDEAL = 600.0
"""The resolution an entry may date its path to, at the finest: ten minutes."""


@dataclass(frozen=True)
class Figure:
    """
    One figure of the benchmark.

    @ivar name: its name, with its unit where it has one.
    @ivar value: what was measured.
    @ivar ideal: what it would be if nothing leaked, computed in the same run.
    @ivar goal: the L{RatioGoal} the ratio value/ideal should meet.
    @ivar note: how it was measured, for the table.
    """

    name: str
    value: float
    ideal: float
    goal: RatioGoal
    note: str = ""


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take a minute or two).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    parser.add_argument("--rounds", type=int, default=20000, help="rounds played per shape (default 20000)")
    parser.add_argument("--builds", type=int, default=300, help="exit-path builds timed (default 300)")
    parser.add_argument("--entries", type=int, default=40, help="entry-path builds whose entries are dated (default 40)")
    parser.add_argument("--nodes", type=int, default=24, help="in-process nodes the builds run on (default 24)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    parser.add_argument(
        "--only", default="", help="comma-separated names of the figure functions to measure (default: all of them)"
    )


# Position-independent arrays


def positionPosterior(options):
    """
    @return: the L{Figure} C{position_posterior_max}.
    """
    rng = random.Random(options.seed)
    worst = None
    for x, y in SHAPES:
        posterior, size, position = worstPosterior(x + y, options.rounds, rng)
        ideal = 1 / (x + y)
        if worst is None or posterior / ideal > worst[0] / worst[1]:
            worst = (posterior, ideal, f"({x}, {y}) size {size} position {position}")
    return Figure(
        "position_posterior_max",
        worst[0],
        worst[1],
        RatioGoal(1.25, atLeast=False),
        f"position_posterior_max: {options.rounds} rounds per shape of {SHAPES}; worst at {worst[2]}",
    )


def worstPosterior(hopCount, rounds, rng):
    """
    Play C{rounds} rounds of a circle of C{hopCount} nodes.

    @return: C{(P(position | size), size, position)} where it is largest.
    """
    seen = Counter()
    sizes = Counter()
    for _ in range(rounds):
        arrivals, _, _ = playRound(hopCount, rng)
        for position, arrival in enumerate(arrivals):
            seen[len(arrival), position] += 1
            sizes[len(arrival)] += 1
    (size, position), count = max(seen.items(), key=lambda item: item[1] / sizes[item[0][0]])
    return count / sizes[size], size, position


# The in-process network builds run on


class BenchNode:
    """One in-process node: identity, links, database view and path service."""

    def __init__(self, index, network, database, settings, seed, participant):
        self.identity = Identity.generate()
        self.nodeId = self.identity.nodeId
        # One /16 per node: the X-node diversity rule holds as it does by default.
        self.links = network.linkService(nodeId=self.nodeId, host=f"10.{index + 1}.0.1")
        self.address = self.links.address
        self.dht = database.node(self.identity, *self.address)
        self.paths = PathService(
            self.identity, self.links, self.dht, network.clock, settings, random.Random(seed * 1000 + index), participant=participant
        )


class BenchNetwork:
    """
    C{count} nodes on a L{MemoryNetwork} with a latency model and a L{MemoryDatabase}.

    @param participant: the participant factory every path service uses.
    """

    def __init__(self, count, seed, settings, participant=SetupParticipant):
        self.clock = HeapClock()
        self.clock.advance(START)
        self.random = random.Random(seed)
        latencies = {}

        def latency(host, other):
            pair = tuple(sorted((host, other)))
            if pair not in latencies:
                latencies[pair] = self.random.uniform(*LATENCY)
            return latencies[pair]

        self.network = MemoryNetwork(self.clock, latency)
        self.database = MemoryDatabase(self.clock, random.Random(seed))
        self.nodes = [BenchNode(index, self.network, self.database, settings, seed, participant) for index in range(count)]
        self.byId = {node.nodeId: node for node in self.nodes}
        for node in self.nodes:
            node.paths.startService()

    def build(self, owner, kind, shape):
        """Build a path for C{owner}; every node's record is published afresh first."""
        for node in self.nodes:
            node.dht.publishNodeRecord()
        return self.network.run(Deferred.fromCoroutine(owner.paths.build(kind, PathShape(*shape))))

    def stop(self):
        for node in self.nodes:
            if node.paths.running:
                node.paths.stopService()
        self.network.settle()


# No x0 timing tell


def x0TimingAdvantage(options):
    """
    @return: the L{Figure} C{x0_timing_advantage}.
    """
    clock = []
    roundTwo = {}
    """PATH link id an X-node awaits to (the moment it processed round 2, its node id)."""

    class TimedParticipant(SetupParticipant):
        def perform(self, actions):
            for action in actions:
                if isinstance(action, Rewire) and action.rewiring.expectFrom is not None:
                    roundTwo[action.rewiring.expectLinkId] = (clock[0].seconds(), self.context.identity.nodeId)
            super().perform(actions)

    network = BenchNetwork(options.nodes, options.seed, PathSettings(), TimedParticipant)
    clock.append(network.clock)
    arrivals = {}
    for node in network.nodes:
        node.links.connect = arrivalsNoted(node.links.connect, network.clock, arrivals)
    samples = []
    try:
        for build in range(options.builds):
            roundTwo.clear()
            arrivals.clear()
            owner = network.nodes[build % len(network.nodes)]
            path = network.build(owner, PathKind.EXIT, TIMING_SHAPE)
            network.network.runFor(1.0)
            x0 = path.plan.adjacent.nodeId
            for linkId, (processed, nodeId) in roundTwo.items():
                if linkId in arrivals:
                    samples.append((arrivals[linkId] - processed, nodeId == x0))
            owner.paths.retire(path)
            network.network.runFor(1.0)
    finally:
        network.stop()
    accuracy = bestThresholdAccuracy(samples)
    x0Count = sum(1 for _, isX0 in samples if isX0)
    return Figure(
        "x0_timing_advantage",
        accuracy,
        0.5,
        RatioGoal(1.2, atLeast=False),
        f"x0_timing_advantage: {options.builds} builds of {TIMING_SHAPE}, {len(samples)} X-nodes with a"
        f" predecessor ({x0Count} of them x0), balanced accuracy of the best threshold on the delay",
    )


def arrivalsNoted(connect, clock, arrivals):
    """
    C{connect} of a link service, noting in C{arrivals} when each PATH link reached the far
    end (its id to the clock's time), which on an in-memory network is when it opens here.
    """

    def connecting(host, port, purpose, linkId=None, nodeId=None):
        d = connect(host, port, purpose, linkId, nodeId)
        if Purpose(purpose) == Purpose.PATH:

            def opened(link):
                arrivals[linkId] = clock.seconds()
                return link

            d.addCallback(opened)
        return d

    return connecting


def bestThresholdAccuracy(samples):
    """
    The balanced accuracy of the best classifier "positive iff value <= t" or "positive iff
    value > t", over every threshold t.

    @param samples: C{(value, positive)} pairs, both classes present.
    @return: the mean of the rates of positives and negatives classified right, at its best;
        0.5 when either class is absent.
    """
    positives = sum(1 for _, positive in samples if positive)
    negatives = len(samples) - positives
    if not positives or not negatives:
        return 0.5
    best = 0.5
    truePositives = below = 0
    ordered = sorted(samples)
    index = 0
    while index < len(ordered):
        value = ordered[index][0]
        while index < len(ordered) and ordered[index][0] == value:
            truePositives += ordered[index][1]
            below += 1
            index += 1
        # "positive iff value <= t", t = value; its opposite scores 1 - accuracy.
        trueNegatives = negatives - (below - truePositives)
        accuracy = (truePositives / positives + trueNegatives / negatives) / 2
        best = max(best, accuracy, 1 - accuracy)
    return best


# Entries that do not date their path


def entryTimeResolution(options):
    """
    @return: the L{Figure} C{entry_time_resolution_s}.
    """
    network = BenchNetwork(options.nodes, options.seed + 1, PathSettings(lifetime=86400.0))
    published = {}
    """AP-address to (time of publication, routing entry), the first publication only."""
    for node in network.nodes:
        node.dht.storeRecord = publicationsNoted(node.dht.storeRecord, network.clock, published)
    rng = random.Random(options.seed)
    builds = []
    try:
        for build in range(options.entries):
            network.network.runFor(rng.uniform(0, 2 * ENTRY_IDEAL))
            owner = network.nodes[build % len(network.nodes)]
            published.clear()
            path = network.build(owner, PathKind.ENTRY, TIMING_SHAPE)
            waited = 0.0
            while path.apAddress not in published and waited < 4 * 3600:
                network.network.runFor(60.0)
                waited += 60.0
            if path.apAddress in published:
                when, entry = published[path.apAddress]
                builds.append((path.builtAt, {"published": when, "sequence": entry.sequence, "expires": entry.expires}))
            owner.paths.retire(path)
            network.network.runFor(1.0)
    finally:
        network.stop()
    resolution = narrowestInterval(builds)
    return Figure(
        "entry_time_resolution_s",
        resolution,
        ENTRY_IDEAL,
        RatioGoal(1.0, atLeast=True),
        f"entry_time_resolution_s: {len(builds)} of {options.entries} entry paths published; the interval the"
        " fields and the publication time place nine builds in ten in, at best",
    )


def publicationsNoted(storeRecord, clock, published):
    """C{storeRecord} of a database, noting each routing entry stored and when."""

    async def storing(table, key, encoded, *args, **kwargs):
        if Table(table) == Table.ROUTE:
            entry = RoutingEntry.parse(encoded, key, clock.seconds())
            published.setdefault(entry.apAddress, (clock.seconds(), entry))
        return await storeRecord(table, key, encoded, *args, **kwargs)

    return storing


PLACED_SHARE = 0.9
"""The share of builds the entry figure speaks for: it is the width within which the observer
places the build at best, for all but the tenth of builds it places most closely."""


def narrowestInterval(builds, share=PLACED_SHARE):
    """
    How closely an observer can place builds in time from what it sees.

    @param builds: C{(build time, {observable name: value})} for each build.
    @param share: the share of builds the figure speaks for.
    @return: for each build, the intersection of the intervals each observable allows (its
        value plus the smallest and largest difference between build time and it over all
        builds); of their widths in seconds, the one that C{share} of the builds reach or
        exceed (nearest rank). Learned from the builds themselves, the bounds are tight at the
        extremes, where a build can be placed to the second that a larger sample would not
        place: hence a share, not the narrowest of all.
    """
    if not builds:
        return float("nan")
    offsets = defaultdict(list)
    for built, observed in builds:
        for name, value in observed.items():
            offsets[name].append(built - value)
    bounds = {name: (min(values), max(values)) for name, values in offsets.items()}
    widths = []
    for built, observed in builds:
        low = max(value + bounds[name][0] for name, value in observed.items())
        high = min(value + bounds[name][1] for name, value in observed.items())
        widths.append(high - low)
    widths.sort()
    return widths[max(0, math.ceil((1 - share) * len(widths)) - 1)]


def clientIdentityLinks(options):
    """
    @return: the L{Figure} C{client_identity_links}: over 20 tunnels from one client to 4
        servers across two exit-path generations (L{bench.identityreuse}), the tunnels on which
        a server saw the client's published AP-address plus the client identities servers saw
        over more than one exit path. Its ideal is 0, so it is set against the 20 a node with one
        long-term identity shows (every tunnel its published AP), and the goal is a ratio of 0.
    """
    from bench.identityreuse import clientIdentityReuse

    seen = clientIdentityReuse(seed=options.seed)
    return Figure(
        "client_identity_links",
        seen["published_ap_seen"] + seen["shared_across_exit_paths"],
        seen["tunnels"],
        RatioGoal(0.0, atLeast=False),
        f"client_identity_links: {seen['tunnels']} tunnels to 4 servers over {seen['exit_paths']} exit paths: "
        f"published AP-address seen {seen['published_ap_seen']} times, identities shared across exit paths "
        f"{seen['shared_across_exit_paths']}, distinct identities {seen['distinct_identities']}; set against "
        "one long-term identity (every tunnel)",
    )


FIGURES = [positionPosterior, x0TimingAdvantage, entryTimeResolution, clientIdentityLinks]
"""The figures, each a function of the options returning a L{Figure} or a Deferred of one."""


def measure(reactor, options):
    """
    Measure every figure of L{FIGURES}, one after the other.

    @return: a Deferred of the L{BenchmarkResult}.
    """

    async def measuring():
        figures = []
        chosen = {name.strip() for name in options.only.split(",") if name.strip()}
        for figure in FIGURES:
            if chosen and figure.__name__ not in chosen:
                continue
            figures.append(await maybeDeferred(figure, options))
        return BenchmarkResult(
            "anonymity",
            {figure.name: figure.value for figure in figures},
            {figure.name: figure.ideal for figure in figures},
            subject="measured",
            baselineName="ideal",
            notes="\n".join(figure.note for figure in figures if figure.note),
            goals={figure.name: figure.goal for figure in figures},
        )

    return Deferred.fromCoroutine(measuring())
