"""
What the simulation measures: lookups and GETs, the uniformity of node sampling, path builds.
Each experiment runs on a L{phantom.sim.network.Simulation} and returns plain figures.
"""

import math
from collections import Counter
from dataclasses import dataclass

from twisted.internet.defer import Deferred

from phantom.wire.dht import Table


def percentile(values, share):
    """The value below which C{share} of C{values} lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass
class GetFigures:
    """
    @ivar asked: how many GETs were made.
    @ivar found: how many found their value.
    @ivar hops: for each GET that found its value by lookup, the hops to the node that held it.
    @ivar latencies: for each GET that found its value, the seconds it took.
    """

    asked: int = 0
    found: int = 0
    hops: list = None
    latencies: list = None

    def __post_init__(self):
        self.hops = [] if self.hops is None else self.hops
        self.latencies = [] if self.latencies is None else self.latencies

    @property
    def successRate(self):
        return self.found / self.asked if self.asked else 0.0


def putValues(sim, count, ttl=43200, replication=20):
    """
    Have random nodes put C{count} values through the module API (C{DhtNode.put}).

    @return: the keys, each with the value stored under it.
    """
    rng = sim.random
    values = []
    for _ in range(count):
        key, value = rng.randbytes(32), rng.randbytes(16)
        node = rng.choice(sim.online)
        sim.resolve(node.dht.put(key, value, ttl, replication))
        values.append((key, value))
    return values


def scheduleGets(sim, values, count, span, figures=None):
    """
    Schedule C{count} GETs of the C{values}, each by a node chosen at random among those up at
    the time, at random times over the next C{span} seconds.

    @return: the L{GetFigures} they fill in as they finish.
    """
    figures = GetFigures() if figures is None else figures
    rng = sim.random

    def get(key, value):
        requester = rng.choice(sim.online)
        if requester.dht.store.get(Table.VALUE, key) is not None:
            # Its own copy: no lookup to measure; pick another node.
            return get(key, value)
        figures.asked += 1
        sim.track(requester, key)
        started = sim.clock.seconds()

        def done(result):
            hops = sim.untrack(requester, key)
            if result == value:
                figures.found += 1
                figures.latencies.append(sim.clock.seconds() - started)
                if hops is not None:
                    figures.hops.append(hops)

        requester.dht.get(key).addCallback(done)

    for _ in range(count):
        key, value = rng.choice(values)
        sim.clock.callLater(rng.uniform(0, span), get, key, value)
    return figures


class SamplingStalled(Exception):
    """Node sampling drew nothing, again and again: the network has no live node records left."""


def samplingDistance(sim, draws, count=64, parallel=64):
    """
    Draw at least C{draws} node records by the network database's own sampling
    (C{DhtNode.sampleNodes}, as a node pool asks for C{count} at a time), from nodes chosen at
    random, C{parallel} samplings at a time (as the nodes of a network sample at once), and
    compare how often each node came out with uniform.

    One sampling at a time, 100,000 draws would take the simulated network some seven hours:
    the cost of a draw would grow with the simulated time (the contacts of full buckets, silent
    for 15 minutes, get pinged when newcomers are heard of), and once the node records of the
    warm start expired (3 hours; the simulation does not renew them) draws would find nothing.

    @return: C{(distance, baseline, drawn)}: the total-variation distance between the nodes
        drawn and the uniform distribution over the nodes up; the same for as many truly uniform
        draws; how many were drawn.
    @raise SamplingStalled: C{parallel} samplings in a row drew nothing.
    """
    rng = sim.random
    counts = Counter()
    state = {"drawn": 0, "started": 0, "running": 0, "empty": 0}
    finished = Deferred()

    def start():
        node = rng.choice(sim.online)
        state["running"] += 1
        Deferred.fromCoroutine(node.dht.sampleNodes(count)).addBoth(done)

    def done(records):
        state["running"] -= 1
        if finished.called:
            return
        if not isinstance(records, list):
            finished.errback(records)
            return
        counts.update(record.nodeId for record in records)
        state["drawn"] += len(records)
        state["empty"] = 0 if records else state["empty"] + 1
        if state["empty"] >= parallel:
            finished.errback(SamplingStalled(f"{parallel} samplings in a row drew nothing, {state['drawn']} drawn"))
        elif state["drawn"] + state["running"] * count < draws:
            start()
        elif not state["running"]:
            finished.callback(None)

    for _ in range(max(1, min(parallel, -(-draws // count)))):
        start()
    sim.resolve(finished, within=24 * 3600.0)
    drawn = state["drawn"]
    population = [node.nodeId for node in sim.online]
    uniform = Counter(population[rng.randrange(len(population))] for _ in range(drawn))
    return totalVariation(counts, population, drawn), totalVariation(uniform, population, drawn), drawn


def totalVariation(counts, population, total):
    """Half the L1 distance between the empirical distribution C{counts} and uniform on C{population}."""
    expected = 1 / len(population)
    members = set(population)
    inside = sum(abs(counts.get(member, 0) / total - expected) for member in members)
    outside = sum(n for member, n in counts.items() if member not in members) / total
    return (inside + outside) / 2
