"""
Path building on a loopback testnet of real nodes: build time per shape, success rate, phases.

A testnet of N nodes (C{--nodes}, default 20) runs as separate C{twistd phantom} processes on
127.0.0.2 and up (L{phantom.testnet.loopback}), all on one random port, in a fresh short
directory under /tmp that is removed afterwards (C{--keep} leaves it, with every node's log).
Once every node has a peer (C{phantom-testnet up} waits for that) this process waits, for at
most 30 s (L{JOIN_WAIT}), until every node's routing table holds the other N - 1 nodes or at
least 20 of them (L{JOINED_CONTACTS}); then C{--builds} rounds (default 30), each one exit-path build
of each shape, (3, 12) and (3, 5), from randomly chosen nodes (C{--seed}), one build at a time.
Builds are asked for on the node's control socket, as C{phantomctl path build --json} does
(L{phantom.control.client.ControlClient}, no process started per build); the owner keeps every
path it built, as a node does.

Figures, for each shape XxY:

    - C{build_XxY_p50_s}, C{build_XxY_p95_s}: median and 95th percentile (nearest rank) in
      seconds of the builds that succeeded, each timed here end to end, from asking the node
      until its answer: the node's own attempts that failed before the one that succeeded
      are in it, as is the control socket's round trip (about a millisecond).
    - C{build_XxY_success_rate}: builds of that shape that succeeded, over builds asked for.
    - C{plan_XxY_p50_s}, C{round1_XxY_p50_s}, C{round2_XxY_p50_s}, C{link_XxY_p50_s}: the
      median of each phase as the node reports it for the attempt that succeeded: drawing
      candidates from the node pool (sampling the network database only when the pool is
      short) and planning, the two setup rounds around the circle,
      and the PATH link to x0.

and C{build_success_rate}: builds that succeeded over builds asked for, both shapes. A figure
over the successful builds of a shape is not a number when none succeeded.

The baseline is one figure measured in the same run on the same machine: C{connect_echo_s},
the median time for one TLS connect plus one frame round trip between two nodes, that is from
asking a L{phantom.link.service.LinkService} for a fresh ECHO link to another one (Ed25519
identities, TLS 1.3, mutual authentication, the server's node id pinned, default
L{phantom.config.LinkLimits}) until one 1024-byte DATA frame has come back from its
L{phantom.link.echo.EchoHandler}; the link is closed, and gone, before the next. Both services
live in this process on 127.0.0.1. C{--trips} such trips (default 50) are timed, spread
evenly between the build rounds, after 5 untimed ones. Every time figure has
this baseline; the success rates have 1.0, every build succeeding.

The issue's goals are absolute, which a ratio goal cannot say: for (3, 12), p50 at most 0.3 s
and p95 at most 1 s on this two-core machine. The notes (in the table, not in the JSON) say
whether they are met, and why builds failed when some did.
"""

import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from statistics import median

from twisted.internet.defer import Deferred, DeferredList, DeferredLock, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import deferLater
from zope.interface import implementer

from bench.dht import percentile
from bench.report import BenchmarkResult
from phantom.config import LinkLimits
from phantom.control.client import ControlClient, ControlError
from phantom.identity import Identity
from phantom.link.echo import EchoHandler
from phantom.link.interfaces import ILinkHandler
from phantom.link.service import LinkService
from phantom.testnet.loopback import MAX_NODES, LoopbackTestnet, sharedPort
from phantom.testnet.processes import cancelAndWait
from phantom.wire.link import Purpose

SHAPES = ((3, 12), (3, 5))
"""The (x, y) shapes built, in the order of the first round."""

KIND = "exit"
"""The kind of path built: an exit path publishes no routing entry."""

PHASES = ("plan", "round1", "round2", "link")
"""The phases a node reports for a build, in order."""

GOAL_SHAPE = (3, 12)
GOAL_P50_S = 0.3
GOAL_P95_S = 1.0

HOST = "127.0.0.1"
PING_SIZE = 1024
"""Bytes of the DATA frame echoed by each calibration trip."""
PING = b"\x5a" * PING_SIZE

WARMUP_TRIPS = 5
"""Untimed calibration trips before the timed ones."""

UP_TIMEOUT = 180.0
"""Seconds a bench's testnet has to start and find peers: on a loaded machine, 17 nodes took over 60."""

BUILD_TIMEOUT = 150.0
"""
Seconds a build may take before it counts as failed: a node tries three times, and each
attempt may wait up to a round timeout (10 s) in each of round 1, round 2 and the PATH link.
"""

CONTROL_TIMEOUT = 5.0
"""Seconds for any other question to a node's control socket."""

JOINED_CONTACTS = 20
"""A node has joined once its routing table holds this many contacts (or every other node)."""

JOIN_WAIT = 30.0
"""Seconds to wait, at most, until every node has joined, after C{up}."""

CALIBRATION = "connect_echo_s"


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take a minute or two when builds succeed).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    smallest = max(x + y for x, y in SHAPES) + 1
    parser.add_argument(
        "--nodes",
        type=_between(smallest, MAX_NODES),
        default=20,
        help=f"nodes in the testnet, {smallest} to {MAX_NODES}: a (3, 12) path needs 15 besides its owner (default 20)",
    )
    parser.add_argument("--builds", type=_between(1, None), default=30, help="builds of each shape (default 30)")
    parser.add_argument("--trips", type=_between(1, None), default=50, help="timed calibration trips (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the choice of owners (default 1)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the testnet directory, with every node's log, and say where it is"
    )


def _between(minimum, maximum):
    def convert(text):
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    convert.__name__ = f"integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    return convert


def shapeName(shape):
    """@return: C{"3x12"} for (3, 12)."""
    return f"{shape[0]}x{shape[1]}"


def p50Name(shape):
    return f"build_{shapeName(shape)}_p50_s"


def p95Name(shape):
    return f"build_{shapeName(shape)}_p95_s"


def rateName(shape):
    return f"build_{shapeName(shape)}_success_rate"


def phaseName(phase, shape):
    return f"{phase}_{shapeName(shape)}_p50_s"


SUCCESS = "build_success_rate"


# What was measured, and the figures computed from it


class Builds:
    """
    The outcome of every build of one shape.

    @ivar seconds: end-to-end seconds of each build that succeeded.
    @ivar nodeSeconds: the node's own total for each of them (its phases summed).
    @ivar phases: phase name to the seconds the node reported for it, each successful build.
    @ivar failures: the reason of each build that failed.
    """

    def __init__(self):
        self.seconds = []
        self.nodeSeconds = []
        self.phases = {phase: [] for phase in PHASES}
        self.failures = []

    @property
    def attempted(self):
        return len(self.seconds) + len(self.failures)

    def succeeded(self, seconds, answer):
        """
        @param seconds: the build's end-to-end time.
        @param answer: the node's answer, as C{phantomctl path build --json} prints it.
        """
        self.seconds.append(seconds)
        self.nodeSeconds.append(answer["seconds"])
        for phase in PHASES:
            if phase in answer["phases"]:
                self.phases[phase].append(answer["phases"][phase])

    def failed(self, reason):
        self.failures.append(reason)


def computeFigures(builds):
    """
    @param builds: shape to its L{Builds}, for each of L{SHAPES}.
    @return: figure name to value; rates are fractions, times seconds, not a number where a
        shape has no successful build.
    """
    figures = {}
    for shape in SHAPES:
        outcome = builds[shape]
        seconds = outcome.seconds
        figures[p50Name(shape)] = median(seconds) if seconds else math.nan
        figures[p95Name(shape)] = percentile(seconds, 95) if seconds else math.nan
    attempted = sum(outcome.attempted for outcome in builds.values())
    figures[SUCCESS] = sum(len(outcome.seconds) for outcome in builds.values()) / attempted
    for shape in SHAPES:
        outcome = builds[shape]
        figures[rateName(shape)] = len(outcome.seconds) / outcome.attempted
        for phase in PHASES:
            values = outcome.phases[phase]
            figures[phaseName(phase, shape)] = median(values) if values else math.nan
    return figures


def baselineFor(figures, calibration):
    """
    @return: the baseline of each of C{figures}: 1.0 for a success rate, C{calibration}
        (seconds) for a time.
    """
    return {name: 1.0 if name.endswith("_rate") else calibration for name in figures}


def spreadTrips(trips, rounds):
    """
    @return: how many calibration trips to time before each of C{rounds} rounds and after the
        last (C{rounds + 1} counts summing to C{trips}), as evenly as can be.
    """
    slots = rounds + 1
    counts = [0] * slots
    for trip in range(trips):
        counts[trip * slots // trips] += 1
    return counts


# The whole benchmark


def measure(reactor, options):
    """
    Start a loopback testnet, build paths on it while timing calibration trips, stop it.

    @param reactor: provides C{IReactorTCP}, C{IReactorUNIX}, C{IReactorProcess} and
        C{IReactorTime}.
    @param options: the parsed options: C{nodes}, C{builds}, C{trips}, C{seed}, C{keep}.
    @return: a Deferred firing with the L{BenchmarkResult}.
    """
    return Deferred.fromCoroutine(_measure(reactor, options))


def progress(text):
    """Say what is happening, on stderr (stdout carries the result)."""
    print(f"bench path: {text}", file=sys.stderr, flush=True)


async def _measure(reactor, options):
    rng = random.Random(options.seed)
    directory = tempfile.mkdtemp(prefix="pb", dir="/tmp")
    port = sharedPort()  # not from the seed: runs at once must not collide
    testnet = LoopbackTestnet.plan(reactor, directory, options.nodes, port)
    calibration = Calibration(reactor)

    tearingDown, tornDown = DeferredLock(), False

    async def tearDown():
        # Once, however many ask for it (the run's end and a shutdown trigger may both).
        nonlocal tornDown
        await tearingDown.acquire()
        try:
            if not tornDown:
                tornDown = True
                await testnet.down()
                if not options.keep:
                    shutil.rmtree(directory, ignore_errors=True)
        finally:
            tearingDown.release()

    starting = None

    async def stopFromOutside():
        # Stopped from outside (Ctrl-C), the reactor does not resume the run: stop the nodes here.
        if starting is not None:
            await cancelAndWait(starting)
        await tearDown()

    stopping = reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(stopFromOutside()))
    builds = {shape: Builds() for shape in SHAPES}
    trips = []
    try:
        calibration.start()
        started = time.perf_counter()
        starting = Deferred.fromCoroutine(testnet.up(timeout=UP_TIMEOUT, progress=progress))
        await starting
        upSeconds = time.perf_counter() - started
        started = time.perf_counter()
        joined = await waitUntilJoined(reactor, testnet.manifest.nodes)
        joinSeconds = time.perf_counter() - started
        progress(f"every node has joined ({joined}); {options.builds} builds of each of {len(SHAPES)} shapes")

        for _ in range(WARMUP_TRIPS):
            await calibration.trip()
        nodes = testnet.manifest.nodes
        tripCounts = spreadTrips(options.trips, options.builds)
        started = time.perf_counter()
        for number in range(options.builds):
            for _ in range(tripCounts[number]):
                trips.append(await calibration.trip())
            order = SHAPES if number % 2 == 0 else SHAPES[::-1]
            for shape in order:
                await build(reactor, rng.choice(nodes), shape, builds[shape])
        for _ in range(tripCounts[-1]):
            trips.append(await calibration.trip())
        buildSeconds = time.perf_counter() - started
    finally:
        try:
            await calibration.stop()
        finally:
            try:
                reactor.removeSystemEventTrigger(stopping)
            except ValueError:
                pass  # the reactor is shutting down and has run it already
            await tearDown()

    figures = computeFigures(builds)
    connectEcho = median(trips)
    goal = builds[GOAL_SHAPE]
    if goal.seconds:
        p50, p95 = figures[p50Name(GOAL_SHAPE)], figures[p95Name(GOAL_SHAPE)]
        goals = (
            f"absolute goals for {shapeName(GOAL_SHAPE)}: p50 <= {GOAL_P50_S:g} s: "
            f"{'met' if p50 <= GOAL_P50_S else 'MISSED'} ({p50:.3f} s); p95 <= {GOAL_P95_S:g} s: "
            f"{'met' if p95 <= GOAL_P95_S else 'MISSED'} ({p95:.3f} s)"
        )
    else:
        goals = f"absolute goals for {shapeName(GOAL_SHAPE)} (p50 <= {GOAL_P50_S:g} s, p95 <= {GOAL_P95_S:g} s): MISSED (no build succeeded)"
    lines = [
        f"{options.nodes} twistd nodes on loopback (up in {upSeconds:.1f} s, joined {joinSeconds:.1f} s later); "
        f"{options.builds} {KIND}-path builds of each shape, one at a time, from random nodes (seed {options.seed}), "
        f"in {buildSeconds:.1f} s; times of the builds that succeeded, end to end.",
        f"baseline {CALIBRATION}: median of {len(trips)} TLS connects + {PING_SIZE}-byte echoes between two link "
        f"services in this process, spread between the builds; rates against 1.0.",
        goals,
    ]
    for shape in SHAPES:
        outcome = builds[shape]
        if outcome.seconds:
            extra = [end - own for end, own in zip(outcome.seconds, outcome.nodeSeconds)]
            lines.append(
                f"{shapeName(shape)}: end to end minus the node's own phases (control socket, failed attempts): "
                f"median {median(extra) * 1000:.1f} ms, max {max(extra):.3f} s"
            )
        for reason, count in Counter(outcome.failures).most_common():
            lines.append(f"{shapeName(shape)}: {count} failed: {reason[:300]}")
    if options.keep:
        lines.append(f"the testnet directory, with every node's log: {directory}")
    return BenchmarkResult(
        name="path",
        figures=figures,
        baseline=baselineFor(figures, connectEcho),
        subject="path builds (twistd nodes)",
        baselineName="TLS connect + echo",
        notes="\n".join(lines),
    )


async def waitUntilJoined(reactor, nodes, timeout=JOIN_WAIT):
    """
    Wait until every node's routing table holds the other nodes, or L{JOINED_CONTACTS} of
    them, or until C{timeout} seconds have passed.

    @param nodes: the testnet's L{phantom.testnet.manifest.NodeSpec}s.
    @return: a description of the smallest routing table, for the notes.
    """
    wanted = min(len(nodes) - 1, JOINED_CONTACTS)
    deadline = time.monotonic() + timeout
    while True:
        sizes = []
        for node in nodes:
            try:
                answer = await ControlClient.forNode(reactor, node.dataDir, CONTROL_TIMEOUT).peers()
            except ControlError:
                sizes.append(0)
            else:
                sizes.append(len(answer["contacts"]))
        smallest = min(sizes)
        if smallest >= wanted:
            return f"the smallest routing table holds {smallest} contacts"
        if time.monotonic() >= deadline:
            return f"after {timeout:g} s the smallest routing table holds {smallest} contacts, not {wanted}"
        await deferLater(reactor, 0.5, lambda: None)


async def build(reactor, node, shape, outcome):
    """
    Ask C{node} to build an exit path of C{shape}, and record how it went in C{outcome}.

    @param node: a L{phantom.testnet.manifest.NodeSpec}.
    @param outcome: the L{Builds} of C{shape}.
    """
    started = time.perf_counter()
    try:
        answer = await ControlClient.forNode(reactor, node.dataDir, CONTROL_TIMEOUT).pathBuild(KIND, *shape, timeout=BUILD_TIMEOUT)
    except ControlError as e:
        outcome.failed(str(e).replace(node.dataDir, "NODE"))
    else:
        outcome.succeeded(time.perf_counter() - started, answer)


# The baseline: one TLS connect plus one frame round trip


@implementer(ILinkHandler)
class _Returned:
    """Fires C{echoed} with the first frame back, C{closed} when the link is gone."""

    def __init__(self):
        self.echoed = Deferred()
        self.closed = Deferred()

    def frameReceived(self, payload):
        if not self.echoed.called:
            self.echoed.callback(payload)

    def linkClosed(self, reason):
        if not self.echoed.called:
            self.echoed.errback(reason)
        self.closed.callback(None)


class Calibration:
    """
    Two link services on 127.0.0.1 in this process, each with its own identity: the server
    echoes ECHO links; the client opens one per trip.
    """

    def __init__(self, reactor):
        self._serverIdentity = Identity.generate()
        listen = partial(TCP4ServerEndpoint, reactor, 0, interface=HOST)
        self._server = LinkService(self._serverIdentity, listen(), LinkLimits(), reactor)
        self._client = LinkService(Identity.generate(), listen(), LinkLimits(), reactor)
        self._server.registerPurpose(Purpose.ECHO, EchoHandler)

    def start(self):
        self._server.startService()
        self._client.startService()

    def stop(self):
        """
        @return: a Deferred that fires once both services have stopped, or failed to: when the
            reactor is shutting down it has closed their ports already, and C{stopService}
            raises then.
        """
        return DeferredList([maybeDeferred(self._client.stopService), maybeDeferred(self._server.stopService)], consumeErrors=True)

    async def trip(self):
        """
        Open a fresh ECHO link, send one frame and wait until it is back; close the link and
        wait until it is gone.

        @return: (a coroutine of) the seconds from asking for the link until the frame was back.
        """
        port = self._server.listeningAddress.port
        returned = _Returned()
        started = time.perf_counter()
        link = await self._client.connect(HOST, port, Purpose.ECHO, nodeId=self._serverIdentity.nodeId)
        link.attach(returned)
        link.sendFrame(PING)
        payload = await returned.echoed
        seconds = time.perf_counter() - started
        if payload != PING:
            raise RuntimeError("the echo came back changed")
        link.close()
        await returned.closed
        return seconds

