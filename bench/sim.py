"""
The network at scale, simulated: lookups, GETs, node sampling, path builds and colluders on N nodes.

Runs L{phantom.sim} (see docs/scale.md): N nodes (C{--nodes}, default 1,000), each running the
node's own network database and path service, on one virtual clock; latencies log-normal with a
median of 50 ms one way, the first request between two nodes paying two round trips for its
link; no loss. One seed (C{--seed}) reproduces the run.

The run, in order:

    1. Setup: every node's routing table filled as after joining, every node record stored,
       validated, on the 20 nodes closest to it (the time it takes is in the notes).
    2. No churn, 10 simulated minutes: C{--values} values put through random nodes
       (C{DhtNode.put}, replication 20), C{--gets} GETs by random nodes at random times,
       C{--builds}/3 exit-path builds by 20 owners.
    3. Node sampling: C{--draws} node records drawn by C{DhtNode.sampleNodes(64)} from random
       nodes.
    4. Colluders (10 % of the nodes), C{--colluder-builds} builds each for honest colluders,
       aborting colluders, aborting colluders that also make themselves known gone when they
       give up, and aborting colluders against the old retry rule.
    5. Churn (C{--churn}, default 10 % of the nodes per hour, exponential uptimes, 10 minutes
       away on average, owners spared), one simulated hour, timed: C{--gets} GETs and
       C{--builds} builds spread over it, half of the owners under the old retry rule.

Figures, each against its baseline:

    - C{lookup_hops_p50/p95} (and C{_churn}): hops to the node that returned the value, for
      GETs that needed a lookup (a node in the asker's table is 1 hop); baseline: the bound
      ceil(log2(N) / b) + 1 with b = 1 (one bucket per bit of shared prefix), ratio goal <= 1.
    - C{lookup_latency_p50/p95_ms} (and C{_churn}): seconds from C{get} to the value; baseline:
      the median round trip (100 ms), so the ratio is in round trips.
    - C{get_success_rate} (and C{_churn}): GETs that returned the value put; baseline 0.99.
    - C{sampling_tv_distance}: total-variation distance between the nodes sampling returned and
      uniform over the nodes; baseline: the same for as many truly uniform draws; goal <= 1.5.
    - C{path_build_success_rate_churn} (kept-ends rule) and C{_old_rule_churn}: builds (up to 3
      attempts) that gave a path; baseline: the same without churn (phase 2).
    - C{colluder_end_share_honest/_aborting/_aborting_seem_gone/_aborting_old_rule}: built
      paths whose x0 and T are both colluders; baseline: f squared, what uniform choice gives;
      goal <= 1.5 (aborting). C{colluder_end_share_aborting_stderr}: the standard error of the
      aborting share (batch means), against the same baseline. C{honest_pairs_dropped_aborting}:
      of the pairs of honest ends that were built or given up on, the share given up on.
    - C{sim_seconds_per_simulated_hour} (wall) and C{sim_cpu_seconds_per_simulated_hour} of
      phase 5; baseline 600 s (the issue's 10 minutes for 10,000 nodes).
    - C{peak_memory_mib}: the process's peak resident memory; baseline 8 GiB.

Every node runs its own upkeep (C{DhtNode.maintain}): its node record is renewed every 30
minutes; bucket refresh and republishing are not run (L{phantom.sim.network.SIM_DHT}).
"""

import math
import resource
import sys
import time

from twisted.internet.defer import succeed

from bench.report import BenchmarkResult, RatioGoal
from phantom.path.retry import KEEP_ENDS
from phantom.sim.colluders import colluderEndShare
from phantom.sim.experiments import percentile, putValues, samplingDistance, scheduleGets
from phantom.sim.network import SimConfig, Simulation
from phantom.sim.paths import scheduleBuilds

COLLUDERS = 0.1
OWNERS = 20
QUIET_SPAN = 600.0
CHURN_SPAN = 3600.0
MEMORY_BUDGET_MIB = 8192.0
TIME_BUDGET = 600.0


def addArguments(parser):
    """@param parser: the benchmark's C{argparse.ArgumentParser}."""
    parser.add_argument("--nodes", type=int, default=1000, help="simulated nodes (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the whole run (default 1)")
    parser.add_argument("--churn", type=float, default=0.1, help="share of nodes leaving per hour (default 0.1)")
    parser.add_argument("--values", type=int, default=100, help="values put (default 100)")
    parser.add_argument("--gets", type=int, default=1000, help="GETs in each phase (default 1000)")
    parser.add_argument("--draws", type=int, default=100000, help="node records drawn by sampling (default 100000)")
    parser.add_argument("--builds", type=int, default=300, help="path builds under churn (default 300)")
    parser.add_argument(
        "--colluder-builds", type=int, default=100000, help="plan-level builds per colluder case (default 100000)"
    )
    parser.add_argument(
        "--skip", default="", help="phases not to run, comma-separated: sampling, colluders, churn (their figures left out)"
    )


def peakMemory():
    """@return: the process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def progress(text):
    """Say what is happening, with the peak memory so far, on stderr (stdout carries the result)."""
    print(f"bench sim: {text}; peak {peakMemory():.0f} MiB", file=sys.stderr, flush=True)


class Stopwatch:
    """Wall and CPU seconds since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _successRate(outcomes, owners=None):
    chosen = [built for owner, built, _ in outcomes if owners is None or owner in owners]
    return sum(chosen) / len(chosen) if chosen else 0.0


def measure(reactor, options):
    """
    Run the simulation; it needs no reactor (its clock is virtual).

    @return: a Deferred firing with the L{BenchmarkResult}.
    """
    return succeed(run(options))


def run(options):
    """The whole run. @return: a L{BenchmarkResult}."""
    n = options.nodes
    skip = set(filter(None, options.skip.split(",")))
    unknown = skip - {"sampling", "colluders", "churn"}
    if unknown:
        raise SystemExit(f"bench sim: no phase {', '.join(sorted(unknown))} to skip")
    watch = Stopwatch()
    sim = Simulation(SimConfig(nodes=n, seed=options.seed, paths=True, churnPerHour=options.churn))
    sim.warmStart()
    setupWall, setupCpu = watch.read()
    progress(f"{n} nodes set up in {setupWall:.1f} s ({setupCpu:.1f} s CPU)")

    watch = Stopwatch()
    owners = sim.nodes[:OWNERS]
    oldRule = owners[: OWNERS // 2]
    for owner in oldRule:
        owner.paths.keepEnds = 1
    values = putValues(sim, options.values)
    quiet = scheduleGets(sim, values, options.gets, QUIET_SPAN)
    quietBuilds = scheduleBuilds(sim, owners[OWNERS // 2 :], max(1, options.builds // 3), QUIET_SPAN)
    sim.runFor(QUIET_SPAN + 120)
    progress(
        f"no churn: {quiet.found}/{quiet.asked} GETs, {sum(b for _, b, _ in quietBuilds)}/{len(quietBuilds)} builds"
        f" ({watch.read()[1]:.1f} s CPU)"
    )

    drawn = 0
    if "sampling" not in skip:
        watch = Stopwatch()
        distance, uniformDistance, drawn = samplingDistance(sim, options.draws)
        progress(f"sampling: {drawn} draws, distance {distance:.4f} against {uniformDistance:.4f} ({watch.read()[1]:.1f} s CPU)")

    colluders = {}
    if "colluders" not in skip:
        watch = Stopwatch()
        colluders = {
            "honest": colluderEndShare(sim, COLLUDERS, False, options.colluder_builds),
            "aborting": colluderEndShare(sim, COLLUDERS, True, options.colluder_builds),
            "aborting_seem_gone": colluderEndShare(sim, COLLUDERS, True, options.colluder_builds, seemGone=True),
            "aborting_old_rule": colluderEndShare(sim, COLLUDERS, True, options.colluder_builds, keepEnds=1),
        }
        for case, result in colluders.items():
            progress(f"colluders {case}: {result}")
        progress(f"colluders: {watch.read()[1]:.1f} s CPU")

    if "churn" not in skip:
        watch = Stopwatch()
        sim.startChurn(spare=owners)
        churned = scheduleGets(sim, values, options.gets, CHURN_SPAN)
        builds = scheduleBuilds(sim, owners, options.builds, CHURN_SPAN)
        messages = sim.messages
        sim.runFor(CHURN_SPAN)
        hourWall, hourCpu = watch.read()
        sim.runFor(120)
        progress(
            f"churn: {churned.found}/{churned.asked} GETs, {sum(b for _, b, _ in builds)}/{len(builds)} builds,"
            f" {sim.messages - messages} requests, the hour in {hourWall:.1f} s ({hourCpu:.1f} s CPU)"
        )
    peak = peakMemory()

    bound = math.ceil(math.log2(n)) + 1
    roundTrip = 2 * sim.config.medianLatency * 1000
    quietRate = _successRate(quietBuilds) or 1.0
    figures, baseline = {}, {}

    def figure(name, value, base):
        figures[name], baseline[name] = value, base

    for suffix, gets in (("", quiet), ("_churn", None if "churn" in skip else churned)):
        if gets is None:
            continue
        figure(f"lookup_hops_p50{suffix}", percentile(gets.hops, 0.5), bound)
        figure(f"lookup_hops_p95{suffix}", percentile(gets.hops, 0.95), bound)
        figure(f"lookup_latency_p50_ms{suffix}", percentile(gets.latencies, 0.5) * 1000, roundTrip)
        figure(f"lookup_latency_p95_ms{suffix}", percentile(gets.latencies, 0.95) * 1000, roundTrip)
        figure(f"get_success_rate{suffix}", gets.successRate, 0.99)
    if "sampling" not in skip:
        figure("sampling_tv_distance", distance, uniformDistance)
    if "churn" not in skip:
        figure("path_build_success_rate_churn", _successRate(builds, owners[OWNERS // 2 :]), quietRate)
        figure("path_build_success_rate_old_rule_churn", _successRate(builds, oldRule), quietRate)
    for case, result in colluders.items():
        figure(f"colluder_end_share_{case}", result.share, result.expected)
    if colluders:
        figure("colluder_end_share_aborting_stderr", colluders["aborting"].standardError, colluders["aborting"].expected)
        figure("honest_pairs_dropped_aborting", colluders["aborting"].honestDropped, colluders["aborting_old_rule"].honestDropped)
    if "churn" not in skip:
        figure("sim_seconds_per_simulated_hour", hourWall, TIME_BUDGET)
        figure("sim_cpu_seconds_per_simulated_hour", hourCpu, TIME_BUDGET)
        figure("sim_cpu_seconds_setup_and_hour", setupCpu + hourCpu, TIME_BUDGET)
    figure("peak_memory_mib", peak, MEMORY_BUDGET_MIB)
    atMost, atLeast = RatioGoal(1.0, False), RatioGoal(1.0, True)
    goals = {
        "lookup_hops_p50": atMost,
        "lookup_hops_p50_churn": atMost,
        "get_success_rate_churn": atLeast,
        "sampling_tv_distance": RatioGoal(1.5, False),
        "colluder_end_share_aborting": RatioGoal(1.5, False),
        "sim_cpu_seconds_setup_and_hour": atMost,
        "peak_memory_mib": atMost,
    }
    goals = {name: goal for name, goal in goals.items() if name in figures}
    notes = (
        f"{n} nodes, seed {options.seed}, churn {options.churn:.0%}/h; setup {setupWall:.0f} s ({setupCpu:.0f} s CPU);"
        f" {drawn} sampling draws; colluders {COLLUDERS:.0%}, {options.colluder_builds} plan-level builds per case,"
        f" ends kept {KEEP_ENDS} attempts (15-node circles); builds: no churn {len(quietBuilds)} (baseline of the build success),"
        f" churn {'skipped' if 'churn' in skip else len(builds)}; hop bound ceil(log2 N)+1 = {bound} (b = 1)"
    )
    return BenchmarkResult("sim", figures, baseline, "simulated", "baseline", notes, goals)
