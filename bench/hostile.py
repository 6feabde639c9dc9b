"""
A node under hostile load: a well-behaved client's latency, memory and descriptors while attacks run.

One node runs as a C{twistd -n phantom} process on a loopback address, with the process's
descriptor limit set to C{--nofile}. This process probes it as a well-behaved client would,
every C{--interval} seconds: a control-socket C{status} on a fresh connection and a module-API
GET (of a value it PUT) on its one API connection. It probes for C{--seconds} with no attack
(the baseline, in the same run), then for C{--seconds} under each attack in turn, from other
loopback addresses of its own (see L{attackerHosts}):

    - C{keepalive_flood}: TLS links streaming KEEPALIVE frames as fast as the node takes them,
      opened again whenever the node closes them;
    - C{find_node_flood}: DHT links streaming pipelined FIND_NODE requests, the same;
    - C{no_tls_connects}: C{--connects} TCP connections that never start TLS;
    - C{idle_api}: C{--api-connections} module-API connections that send 1 to 3 header bytes;
    - C{unread_find_value}: a DHT link that STOREs a 65,495-byte value, then asks FIND_VALUE for
      it over and over and reads none of the replies.

Figures, per attack, each against its baseline: C{<attack>_probe_p99_ms} against the quiet
p99 (goal at most 5 times); C{<attack>_answered} (the share of probes answered within
C{PROBE_TIMEOUT}) against the quiet share (goal 1); C{<attack>_rss_growth_mib} (the node's
highest RSS during the attack less its RSS before) against the budget of 64 MiB (goal at most
1); C{<attack>_peak_fds} (the node's most descriptors in use during the attack) against the
quiet count (no goal: how much a flood could hold); C{<attack>_fds_after} (descriptors in use
C{SETTLE} seconds after the attack stopped) against the quiet count (goal at most 1); C{<attack>_node_cpu_s} (the node's CPU seconds, user and system,
during the attack's phase) against its CPU seconds in the quiet phase (no goal: what the attack
costs the node, steadier than latencies on a shared machine).
"""

import os
import shutil
import socket
import sys
import tempfile
import time

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from zope.interface import implementer

from bench.report import BenchmarkResult, RatioGoal
from phantom.control.client import ControlClient, ControlError
from phantom.identity import Identity
from phantom.link.tls import ClientConnectionCreator, makeContext
from phantom.netdb.api import ApiDecoder
from phantom.testnet.processes import findTwistd
from phantom.wire.api import REPLIES, DhtSuccess, encodeGet, encodePut
from phantom.wire.dht import RpcKind, encodeRpc
from phantom.wire.link import KEEPALIVE_FRAME, Purpose, dataHeader, encodeOpen

ATTACKS = ("keepalive_flood", "find_node_flood", "no_tls_connects", "idle_api", "unread_find_value")
NODE_HOST = "127.61.0.1"


def attackerHosts(name):
    """
    The two loopback addresses attack C{name} comes from: its own, so that what the node
    remembers of one attack's addresses (a flood's cool-down) does not weaken the next.
    """
    subnet = ATTACKS.index(name) + 1
    return (f"127.61.{subnet}.2", f"127.61.{subnet}.3")

PROBE_TIMEOUT = 5.0
"""Seconds a probe may take before it counts as unanswered."""
SETTLE = 2.0
"""Seconds after an attack before its descriptors are counted."""
RSS_BUDGET_MIB = 64
START_TIMEOUT = 30.0
PROBE_KEY = b"hostile-bench-probe-key-32-bytes"
PROBE_VALUE = b"the value a well-behaved client finds"


def addArguments(parser):
    """
    Add the options that scale the run (the defaults take about two minutes).

    @param parser: the benchmark's C{argparse.ArgumentParser}.
    """
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of each phase: quiet, and each attack (default 12)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between probes (default 0.05)")
    parser.add_argument("--connects", type=int, default=2000, help="TCP connects without TLS (default 2000)")
    parser.add_argument("--api-connections", type=int, default=1000, help="module-API connections sending 1-3 header bytes (default 1000)")
    parser.add_argument("--flooders", type=int, default=2, help="links per flood attack (default 2)")
    parser.add_argument("--nofile", type=int, default=1024, help="the node's descriptor limit (default 1024)")
    parser.add_argument("--keep-log", metavar="PATH", help="copy the node's log to PATH at the end")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, of {', '.join(ATTACKS)} (default all)")


def percentile(values, p):
    """Nearest rank: the smallest value with at least C{p} percent of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# The node

class NodeProcess(ProcessProtocol):
    """A C{twistd -n phantom} node; C{ended} fires when the process is gone."""

    def __init__(self):
        self.ended = Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output = (self.output + data)[-4096:]

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)

    @property
    def pid(self):
        return self.transport.pid

    def rssMiB(self):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def descriptors(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpuSeconds(self):
        """The CPU time the node has used, user and system."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def startNode(reactor, directory, nofile):
    """Start the node; return (NodeProcess, data dir, API port) once its control socket answers."""
    dataDir = os.path.join(directory, "node")
    os.makedirs(dataDir, mode=0o700)
    port, apiPort = freePort(NODE_HOST), freePort(NODE_HOST)
    command = " ".join([
        f"ulimit -n {int(nofile)};", "exec", sys.executable, findTwistd(), "-n", "--pidfile", "''",
        "--logfile", os.path.join(directory, "node.log"), *os.environ.get("HOSTILE_TWISTD_EXTRA", "").split(), "phantom", "--port", str(port), "--listen-address", NODE_HOST,
        "--data-dir", dataDir, "--api-address", f"{NODE_HOST}:{apiPort}",
    ])  # fmt: skip
    node = NodeProcess()
    reactor.spawnProcess(node, "/bin/sh", ["/bin/sh", "-c", command], env=dict(os.environ), path=directory)
    control = ControlClient.forNode(reactor, dataDir, timeout=2)
    started = time.monotonic()
    while True:
        try:
            await control.status()
            break
        except ControlError:
            if node.ended.called or time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"the node did not start: {node.output.decode(errors='replace')}") from None
            await deferLater(reactor, 0.2, lambda: None)
    return node, dataDir, port, apiPort


def freePort(host):
    """A TCP port nobody listens on at C{host} right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# The well-behaved client

class ApiClient(Protocol):
    """One module-API connection: GETs, answered in turn."""

    def __init__(self):
        self._decoder = ApiDecoder(REPLIES)
        self._waiting = []

    def dataReceived(self, data):
        for reply in self._decoder.feed(data):
            if self._waiting:
                self._waiting.pop(0).callback(reply)

    def get(self, key):
        answer = Deferred()
        self._waiting.append(answer)
        self.transport.write(encodeGet(key))
        return answer


class Prober:
    """Probes the node every C{interval} seconds, each probe timed; a phase collects the results."""

    def __init__(self, reactor, node, control, api, interval):
        self._reactor = reactor
        self._node = node
        self._control = control
        self._api = api
        self._interval = interval

    async def phase(self, seconds):
        """
        Probe for C{seconds}, sampling the node's RSS each time.

        @return: (latencies in ms of answered probes, probes sent, peak RSS MiB, peak descriptors).
        """
        latencies, probes, sent = [], [], 0
        peakRss, peakFds = 0.0, 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            probes.append(self._timed(self._control.status()))
            probes.append(self._timed(self._api.get(PROBE_KEY), expect=DhtSuccess(PROBE_KEY, PROBE_VALUE)))
            sent += 2
            peakRss = max(peakRss, self._node.rssMiB())
            peakFds = max(peakFds, self._node.descriptors())
            await deferLater(self._reactor, self._interval, lambda: None)
        for ok, latency in await DeferredList(probes):
            if ok and latency is not None:
                latencies.append(latency)
        return latencies, sent, peakRss, peakFds

    def _timed(self, asked, expect=None):
        started = time.perf_counter()

        def answered(result):
            if expect is not None and result != expect:
                return None
            return (time.perf_counter() - started) * 1000

        asked.addTimeout(PROBE_TIMEOUT, self._reactor)
        return asked.addCallbacks(answered, lambda failure: None)


# The attackers

@implementer(IHandshakeListener, IPushProducer)
class Flooder(Protocol):
    """
    A TLS link that sends C{opening}, then C{chunk} as fast as its transport takes it (a push
    producer of its own writes); it reads nothing at all if C{read} is false.
    """

    def __init__(self, reactor, opening, chunk, read=True):
        self._reactor = reactor
        self._opening = opening
        self._chunk = chunk
        self._read = read
        self._paused = False
        self._running = False
        self.closed = Deferred()

    def connectionMade(self):
        self.transport.registerProducer(self, True)

    def handshakeCompleted(self):
        self.transport.write(self._opening)
        if not self._read:
            self.transport.pauseProducing()
        self._running = True
        self._pump()

    def _pump(self):
        if self._running and not self._paused:
            self.transport.write(self._chunk)
            self._reactor.callLater(0, self._pump)

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        if self._paused:
            self._paused = False
            self._pump()

    def stopProducing(self):
        self._running = False

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        self._running = False
        self.closed.callback(None)

    def stop(self):
        self._running = False
        if self.transport is not None and not self.closed.called:
            self.transport.abortConnection()


class Holder(Protocol):
    """A plain TCP connection that sends C{payload} and then nothing."""

    def __init__(self, payload=b""):
        self._payload = payload
        self.closed = Deferred()

    def connectionMade(self):
        if self._payload:
            self.transport.write(self._payload)

    def connectionLost(self, reason):
        self.closed.callback(None)

    def stop(self):
        if self.transport is not None and not self.closed.called:
            self.transport.abortConnection()


def frame(payload):
    return dataHeader(len(payload)) + payload


class Attacks:
    """Starts each attack against the node and stops it again."""

    def __init__(self, reactor, port, apiPort, options):
        self._reactor = reactor
        self._port = port
        self._apiPort = apiPort
        self._options = options
        self._context = makeContext(Identity.generate(), server=False)
        self._running = []
        self._stopping = False

    def _tls(self, protocol, host):
        endpoint = TCP4ClientEndpoint(self._reactor, NODE_HOST, self._port, timeout=5, bindAddress=(host, 0))
        return wrapClientTLS(ClientConnectionCreator(self._context), endpoint).connect(_Once(protocol))

    async def start(self, name):
        """Start attack C{name}; return once it runs."""
        options = self._options
        hosts = attackerHosts(name)
        if name in ("keepalive_flood", "find_node_flood"):
            if name == "keepalive_flood":
                opening, chunk = encodeOpen(Purpose.ECHO), KEEPALIVE_FRAME * 8192
            else:
                request = encodeRpc(RpcKind.FIND_NODE, os.urandom(8), {"port": 0, "target": os.urandom(32)})
                opening, chunk = encodeOpen(Purpose.DHT), frame(request) * 512
            self._stopping = False
            for n in range(options.flooders):
                self._flood(opening, chunk, hosts[n % len(hosts)])
        elif name == "unread_find_value":
            key, value = os.urandom(32), os.urandom(65495)
            store = encodeRpc(RpcKind.STORE, os.urandom(8), {"port": 0, "table": "VALUE", "key": key, "ttl": 600, "value": value})
            find = encodeRpc(RpcKind.FIND_VALUE, os.urandom(8), {"port": 0, "table": "VALUE", "key": key})
            flooder = Flooder(self._reactor, encodeOpen(Purpose.DHT) + frame(store), frame(find) * 256, read=False)
            self._running.append(flooder)
            self._tls(flooder, hosts[0]).addErrback(lambda failure: None)
        elif name == "no_tls_connects":
            await self._hold(options.connects, self._port, lambda n: b"", hosts)
        elif name == "idle_api":
            await self._hold(options.api_connections, self._apiPort, lambda n: b"\x00\x24\x02"[: 1 + n % 3], hosts)
        else:
            raise ValueError(f"no attack {name!r}")

    def _flood(self, opening, chunk, host):
        """One flooding link from C{host}, opened again whenever the node closes it."""
        if self._stopping:
            return
        flooder = Flooder(self._reactor, opening, chunk)
        self._running.append(flooder)
        self._tls(flooder, host).addErrback(lambda failure: flooder.closed.callback(None))

        def again(_):
            if flooder in self._running:
                self._running.remove(flooder)
                self._reactor.callLater(0.05, self._flood, opening, chunk, host)

        flooder.closed.addCallback(again)

    async def _hold(self, count, port, payload, hosts):
        connecting = []
        for n in range(count):
            holder = Holder(payload(n))
            self._running.append(holder)
            endpoint = TCP4ClientEndpoint(self._reactor, NODE_HOST, port, timeout=5, bindAddress=(hosts[n % 2], 0))
            connecting.append(endpoint.connect(_Once(holder)).addErrback(lambda failure: None))
            if n % 100 == 99:
                await deferLater(self._reactor, 0, lambda: None)
        await DeferredList(connecting)

    async def stop(self):
        """Stop every attacker; return once their connections are gone."""
        self._stopping = True
        running, self._running = self._running, []
        for attacker in running:
            attacker.stop()
        await DeferredList([attacker.closed for attacker in running if attacker.transport is not None])


class _Once(Factory):
    """A quiet factory of one given protocol."""

    noisy = False

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol


class AttackerProcess(ProcessProtocol):
    """
    An attack run by C{python -m bench.hostile} in a process of its own, so that its work does
    not slow this process's probes: it prints C{ready} once the attack runs, and stops it and
    exits when its stdin closes.
    """

    def __init__(self):
        self.ready = Deferred()
        self.ended = Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if b"ready" in self.output and not self.ready.called:
            self.ready.callback(None)

    def errReceived(self, data):
        self.output += data

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"the attacker ended: {self.output.decode(errors='replace')}"))
        self.ended.callback(None)


async def startAttacker(reactor, name, port, apiPort, options):
    """Start attack C{name} in its own process; return its L{AttackerProcess} once it runs."""
    attacker = AttackerProcess()
    arguments = [
        sys.executable, "-m", "bench.hostile", name, str(port), str(apiPort),
        str(options.flooders), str(options.connects), str(options.api_connections),
    ]  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    reactor.spawnProcess(attacker, sys.executable, arguments, env=dict(os.environ), path=root)
    await attacker.ready
    return attacker


def attackerMain(argv):
    """Run one attack until stdin closes: C{NAME PORT API_PORT FLOODERS CONNECTS API_CONNECTIONS}."""
    import resource
    from argparse import Namespace

    from twisted.internet import reactor, stdio

    name, port, apiPort, flooders, connects, apiConnections = argv
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    options = Namespace(flooders=int(flooders), connects=int(connects), api_connections=int(apiConnections))
    attacks = Attacks(reactor, int(port), int(apiPort), options)

    class Stdin(Protocol):
        def connectionLost(self, reason):
            Deferred.fromCoroutine(attacks.stop()).addBoth(lambda _: reactor.stop())

    async def run():
        await attacks.start(name)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        stdio.StandardIO(Stdin(), reactor=reactor)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addErrback(lambda f: (f.printTraceback(), reactor.stop())))
    reactor.run()


# The run

def measure(reactor, options):
    """Run the benchmark; see the module's docstring."""
    return Deferred.fromCoroutine(_measure(reactor, options))


async def _measure(reactor, options):
    attacks = [name for name in options.attacks.split(",") if name]
    directory = tempfile.mkdtemp(prefix="phantom-hostile-")
    node = None
    try:
        node, dataDir, port, apiPort = await startNode(reactor, directory, options.nofile)
        control = ControlClient.forNode(reactor, dataDir, timeout=PROBE_TIMEOUT)
        api = ApiClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, NODE_HOST, apiPort), api)
        api.transport.write(encodePut(PROBE_KEY, PROBE_VALUE, 3600, 1))
        prober = Prober(reactor, node, control, api, options.interval)
        await prober.phase(1.0)  # warm-up
        cpu = node.cpuSeconds()
        quiet, quietSent, _, _ = await prober.phase(options.seconds)
        quietCpu = node.cpuSeconds() - cpu
        quietRss, quietFds = node.rssMiB(), node.descriptors()
        quietP99 = percentile(quiet, 99) if quiet else float("nan")
        quietAnswered = len(quiet) / quietSent
        figures, baseline, goals = {}, {}, {}
        for name in attacks:
            before = node.rssMiB()
            attacker = await startAttacker(reactor, name, port, apiPort, options)
            cpu = node.cpuSeconds()
            latencies, sent, peakRss, peakFds = await prober.phase(options.seconds)
            attackCpu = node.cpuSeconds() - cpu
            attacker.transport.closeStdin()
            timer = reactor.callLater(10, attacker.transport.signalProcess, "KILL")
            await attacker.ended
            if timer.active():
                timer.cancel()
            await deferLater(reactor, SETTLE, lambda: None)
            fdsAfter = node.descriptors()
            rows = {
                "probe_p99_ms": (percentile(latencies, 99) if latencies else float("inf"), quietP99, RatioGoal(5.0, False)),
                "answered": (len(latencies) / sent, quietAnswered, RatioGoal(1.0, True)),
                "rss_growth_mib": (max(peakRss - before, 0.0), RSS_BUDGET_MIB, RatioGoal(1.0, False)),
                "peak_fds": (peakFds, quietFds, None),
                "node_cpu_s": (attackCpu, quietCpu, None),
                "fds_after": (fdsAfter, quietFds, RatioGoal(1.0, False)),
            }
            for figure, (value, base, goal) in rows.items():
                figures[f"{name}_{figure}"] = value
                baseline[f"{name}_{figure}"] = base
                if goal is not None:
                    goals[f"{name}_{figure}"] = goal
        api.transport.loseConnection()
    finally:
        if node is not None and not node.ended.called:
            node.transport.signalProcess("TERM")
            await node.ended
        if options.keep_log:
            shutil.copy(os.path.join(directory, "node.log"), options.keep_log)
        shutil.rmtree(directory, ignore_errors=True)
    return BenchmarkResult(
        name="hostile",
        figures=figures,
        baseline=baseline,
        subject="under attack",
        baselineName="quiet / budget",
        notes=(
            f"one twistd node (ulimit -n {options.nofile}); probes every {options.interval:g} s for {options.seconds:g} s a phase; "
            f"quiet RSS {quietRss:.1f} MiB, {quietFds} descriptors; rss growth against a budget of {RSS_BUDGET_MIB} MiB"
        ),
        goals=goals,
    )


if __name__ == "__main__":
    attackerMain(sys.argv[1:])
