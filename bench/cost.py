"""
What a unit of work costs a node: memory and CPU per tunnel it relays, per path it is an X-node of, per record it stores, per contact it knows, descriptors per link.

B{Tunnels at a relay.} A relay process (L{bench.costrelay}: a node's real link layer, TLS on
loopback, with what the tunnel service keeps of each tunnel it carries: a L{Splice} of two
TUNNEL links through the hop's stream layer) carries the tunnels this process opens to it from
L{PREVIOUS_HOPS} link services, on to L{NEXT_HOPS} others, each on a loopback address of its own.
Tunnels are opened until C{--counts} (default 1, 10, 100, 1000) are open at once; at each count:

    - C{tunnel_rss_bytes_at_N}: the relay's resident memory (RSS, from /proc) over what it had
      with no tunnel, per tunnel (resident pages: at a small count the allocator's granularity
      shows more than the tunnels).
    - C{tunnel_heap_bytes_at_N}: the same of the Python heap, from a second relay process run
      under tracemalloc (which slows it), after a garbage collection there; the notes give the
      source lines the heap grew most at, at the last count.
    - C{tunnel_c_heap_bytes_at_N}: the same of what the relay's C allocator holds in use
      (glibc's C{mallinfo2}: OpenSSL's memory, and Python objects over 512 bytes); with the
      Python heap it accounts for the RSS, and what RSS holds beyond the two is free memory
      the allocator keeps (fragmentation).
    - C{link_descriptors_at_N}: the relay's open file descriptors over those it had with no
      tunnel, per link (two links a tunnel). Baseline: 1, a socket.

Then C{--mib} MiB (default 32) of cells (L{CELL_SIZE} bytes each, L{ROUND_CELLS} a round, the
next round once every cell of the last has arrived) pass through the relay at the last count,
and as many through another relay process that carries one tunnel, in L{CPU_ROUNDS} parts
taken in turn (the machine's other load falls on both alike):

    - C{relay_cpu_ms_per_mib_at_1}, C{relay_cpu_ms_per_mib_at_N}: the relay's CPU time (user and
      system, its C{time.process_time}, read without a garbage collection) per MiB relayed, the
      cells sent in bursts of L{BURST} (64 KiB) on each tunnel in turn: the same work per
      tunnel, so what grows is what the number of open tunnels costs. Baseline of both: the
      figure at one tunnel; goal, at most 1.2 times it at the last count.
    - C{relay_cpu_ms_per_mib_at_N_cell_each}: the same with one cell on each tunnel in turn:
      every cell a read and a write of its own (no goal).
    - C{tunnel_rss_bytes_after_traffic}: per tunnel at the last count, after that traffic;
      C{..._trimmed}: once C{malloc_trim} has given back what the C allocator kept free;
      C{tunnel_c_heap_bytes_after_traffic}: the C allocator's bytes in use then.

The memory figures' baseline is the goal: 64 KiB a tunnel (ratio at most 1).

B{A TLS connection} (in this process): C{tls_connection_c_heap_bytes}, what the C allocator
holds per idle connection of 200 pairs made with the node's TLS contexts and handshaken over
memory BIOs, as Twisted's TLS does (L{tlsConnectionHeap}): OpenSSL's share of a link, without
sockets, Twisted or the link's Python objects; C{..._fresh}, per connection just made, before
its handshake. Baseline: half the tunnel goal (a tunnel is two connections at a relay).

B{Path participations} (in this process, on the in-memory network of L{bench.anonymity}:
real path services, in-memory links): C{--paths} paths (default 200) of 3 X-nodes and 5
Y-nodes, built by 4 owners among 16 nodes and kept open; C{participation_heap_bytes} is what
the Python heap grew by over the participations (3 a path), less what was allocated in the
owner's modules (planning, arrays, the build: C{path/owner.py}, C{plan.py}, C{array.py},
C{circle.py}, C{retry.py}). What else the owners keep (their L{Path} objects, their ends of the
in-memory links) stays in: an upper bound; the notes give it with the owners' share too. The
TLS links of a participation (two PATH links) are not in it: a real link costs about what
C{tunnel_rss_bytes} / 2 says. Baseline: the goal, 16 KiB. C{participation_cpu_ms}: the CPU time
of building a quarter as many paths first (every node's, the owners' too: an upper bound), per
participation.

B{Records and contacts} (in this process, tracemalloc):

    - C{record_heap_bytes_value}, C{record_heap_bytes_node}: the heap a L{RecordStore} grows
      by per record, for C{--records} module-API values of 64 bytes and as many node records, as
      they come off the wire. Baseline: what the store charges a record against its budget
      (L{phantom.netdb.storage.entryCost}), so the ratio says how far the budget is from the truth.
    - C{contact_heap_bytes}: the heap a L{RoutingTable} grows by per contact, for C{--contacts}
      contacts (default 2000) in distinct buckets. Baseline: a contact's 50 bytes on the wire
      (node id, address, port).
    - C{record_cpu_us_value}, C{record_cpu_us_node}, C{contact_cpu_us}: the CPU time of storing
      one record (validation included) and of taking one contact in, measured again without
      tracemalloc. Their baseline, and that of C{participation_cpu_ms}: one Ed25519
      verification on this machine, a yardstick that moves with the machine as they do.
"""

import gc
import json
import os
import random
import sys
import tracemalloc
from time import process_time

from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.protocol import ProcessProtocol
from zope.interface import implementer

from bench.costrelay import mallocFigures, quietLogging
from bench.link import ByteCounter, _positive
from bench.report import BenchmarkResult, RatioGoal
from phantom.address import Contact
from phantom.config import LinkLimits, PathSettings
from phantom.errors import LinkFailed
from phantom.identity import Identity
from phantom.link.interfaces import ILinkHandler
from phantom.netdb.records import NodeRecord
from phantom.netdb.routing import RoutingTable
from phantom.netdb.storage import RecordStore
from phantom.path.interfaces import PathKind
from phantom.testnet.inprocess import loopbackAddress, startLinkService
from phantom.wire.dht import Table
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import CELL_SIZE

KIB = 1024
MIB = 1024 * 1024

TUNNEL_GOAL = 64 * KIB
"""Memory a tunnel may cost a relay."""
PARTICIPATION_GOAL = 16 * KIB
"""Memory a path participation may cost an X-node, besides its links."""
CPU_FLATNESS = 1.2
"""How much more CPU a relayed MiB may cost at the last count than at one tunnel."""

PREVIOUS_HOPS = 8
NEXT_HOPS = 8
"""The neighbours the tunnels come from and go to: a node caps inbound links per address."""
OPENING_AT_ONCE = 8
"""Tunnels being opened at once (under a node's cap on handshakes per address)."""
ROUND_CELLS = 1024
"""Cells sent in one round of a transfer, spread over the open tunnels."""
BURST = 8
"""Cells sent in a row on one tunnel (64 KiB), before the next tunnel's."""
CPU_ROUNDS = 4
"""The parts the CPU measurements are made in, one relay's and the other's in turn."""
ADDRESS_BASE = 40000
"""The first loopback address number (L{loopbackAddress}), away from the other benchmarks'."""

NEIGHBOUR_LIMITS = LinkLimits(maxInbound=8192, maxInboundPerAddress=8192, maxHandshakes=1024, maxHandshakesPerAddress=1024)
"""The neighbours' limits: all the relay's links come from one address."""

CONTACT_WIRE_BYTES = 50
"""A contact on the wire: node id, 16-byte address, port."""
PATH_NODES = 16
PATH_OWNERS = 4
PATH_SHAPE = (3, 5)


def addArguments(parser):
    parser.add_argument("--counts", default="1,10,100,1000", help="tunnels open at once, at which figures are taken (default 1,10,100,1000)")
    parser.add_argument("--mib", type=_positive(int), default=32, help="MiB relayed at one tunnel and as many at the last count (default 32)")
    parser.add_argument("--paths", type=_positive(int), default=200, help="paths built for the participation figure (default 200)")
    parser.add_argument("--records", type=_positive(int), default=2000, help="records stored of each kind (default 2000)")
    parser.add_argument("--contacts", type=_positive(int), default=2000, help="contacts in the routing table (default 2000)")
    parser.add_argument("--top", type=int, default=8, help="source lines of the relay's heap growth shown in the notes (default 8)")


def parseCounts(text):
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise ValueError(f"--counts {text!r}: positive numbers, comma-separated")
    return counts


# The relay process


class RelayProcess(ProcessProtocol):
    """
    A L{bench.costrelay} process: L{request} sends it one JSON line and fires with its answer.

    @ivar started: fires with its first line, C{{"port", "node_id"}}.
    """

    def __init__(self):
        self.started = Deferred()
        self.ended = Deferred()
        self._buffer = b""
        self._waiting = []
        self.errors = b""

    def outReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if not self.started.called:
                self.started.callback(message)
            else:
                self._waiting.pop(0).callback(message)

    def errReceived(self, data):
        self.errors = (self.errors + data)[-4000:]

    def request(self, message):
        waiting = Deferred()
        self._waiting.append(waiting)
        self.transport.write(json.dumps(message).encode() + b"\n")
        return waiting

    def processEnded(self, reason):
        for waiting in [self.started] * (not self.started.called) + self._waiting:
            waiting.errback(RuntimeError(f"the relay ended: {self.errors.decode(errors='replace')}"))
        self._waiting = []
        self.ended.callback(None)

    @property
    def pid(self):
        return self.transport.pid

    def rss(self):
        """@return: the process's resident memory in bytes."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
        raise RuntimeError("no VmRSS")

    def descriptors(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def startRelay(reactor, host, trace):
    relay = RelayProcess()
    arguments = [sys.executable, "-m", "bench.costrelay", "--host", host] + (["--trace"] if trace else [])
    reactor.spawnProcess(relay, sys.executable, arguments, env=dict(os.environ), path=os.getcwd())
    return relay


# The relay's neighbours


@implementer(ILinkHandler)
class Sink(ByteCounter):
    """Counts what arrives on the tunnels' far ends; tells when a count is reached."""

    def frameReceived(self, payload):
        self.add(len(payload))

    def linkClosed(self, reason):
        pass


class Neighbours:
    """
    The link services the relay's tunnels come from and go to, in this process.

    @ivar tunnels: the open tunnels' links on the previous hops' side (where cells are sent).
    """

    def __init__(self, reactor, relayInfo, relayHost, base):
        self.relayHost = relayHost
        self.relayPort = relayInfo["port"]
        self.relayId = bytes.fromhex(relayInfo["node_id"])
        self.previous = [startLinkService(reactor, loopbackAddress(1 + i, base), Identity.generate(), NEIGHBOUR_LIMITS) for i in range(PREVIOUS_HOPS)]
        self.next = [startLinkService(reactor, loopbackAddress(1 + PREVIOUS_HOPS + i, base), Identity.generate(), NEIGHBOUR_LIMITS) for i in range(NEXT_HOPS)]
        self.sink = Sink()
        self.tunnels = []
        self.failures = 0
        """Links that failed to open, and were tried again."""
        self._turn = 0
        self._arriving = {}
        for service in self.next:
            service.registerPurpose(Purpose.TUNNEL, self._arrived)

    def nextHops(self):
        return [{"host": s.listeningAddress.host, "port": s.listeningAddress.port, "node_id": s.nodeId.hex()} for s in self.next]

    def _arrived(self, link):
        waiting = self._arriving.pop(link.linkId, None)
        if waiting is not None:
            waiting.callback(link)
        return self.sink

    async def openOne(self, attempts=3):
        """Open one more tunnel; a link the loaded machine fails to open is tried again."""
        for attempt in range(attempts):
            try:
                return await self._openOne()
            except LinkFailed:
                self.failures += 1
                if attempt == attempts - 1:
                    raise

    async def _openOne(self):
        linkId = os.urandom(LINK_ID_SIZE)
        arrived = self._arriving[linkId] = Deferred()
        service = self.previous[len(self.tunnels) % PREVIOUS_HOPS]
        try:
            link = await service.connect(self.relayHost, self.relayPort, Purpose.TUNNEL, linkId, self.relayId)
        except LinkFailed:
            del self._arriving[linkId]
            raise
        link.attach(Sink())
        self.tunnels.append(link)
        await arrived

    def openUntil(self, count):
        semaphore = DeferredSemaphore(OPENING_AT_ONCE)
        return gatherResults([semaphore.run(lambda: Deferred.fromCoroutine(self.openOne())) for _ in range(count - len(self.tunnels))], consumeErrors=True)

    async def transfer(self, mib, burst):
        """
        Send C{mib} MiB of cells over the open tunnels, L{ROUND_CELLS} a round: C{burst} cells
        in a row on each tunnel, the tunnels in turn, from the one after the last transfer's
        (so that transfers in parts reach every tunnel); each round once the last has arrived.
        """
        cells = [os.urandom(CELL_SIZE) for _ in range(16)]
        total = int(mib * MIB) // CELL_SIZE
        sent = 0
        while sent < total:
            batch = min(ROUND_CELLS, total - sent)
            for number in range(batch):
                self.tunnels[self._turn % len(self.tunnels)].sendFrame(cells[number % len(cells)])
                if (number + 1) % burst == 0 or number == batch - 1:
                    self._turn += 1
            sent += batch
            await self.sink.reach(self.sink.count + batch * CELL_SIZE)

    def stop(self):
        return gatherResults([service.stopService() for service in self.previous + self.next], consumeErrors=True)


async def waitCarried(reactor, relay, count):
    """@return: the relay's stats once it carries C{count} tunnels."""
    from phantom.testnet.processes import sleep

    while True:
        stats = await relay.request({"stats": True})
        if stats["carried"] >= count:
            return stats
        await sleep(reactor, 0.05)


class MeasuredRelay:
    """A relay process (L{bench.costrelay}) and its neighbours in this process."""

    def __init__(self, reactor, base, trace):
        self.reactor = reactor
        self.host = loopbackAddress(0, base)
        self.base = base
        self.trace = trace
        self.process = startRelay(reactor, self.host, trace)
        self.neighbours = None

    async def start(self):
        info = await self.process.started
        self.neighbours = Neighbours(self.reactor, info, self.host, self.base)
        await self.process.request({"next": self.neighbours.nextHops()})
        return await self.process.request({"stats": True})

    async def openUntil(self, count):
        await self.neighbours.openUntil(count)
        return await waitCarried(self.reactor, self.process, count)

    async def cpuOf(self, mib, burst):
        """@return: the CPU seconds the relay spends relaying C{mib} MiB (L{Neighbours.transfer})."""
        started = (await self.process.request({"cpu": True}))["cpu"]
        await self.neighbours.transfer(mib, burst)
        return (await self.process.request({"cpu": True}))["cpu"] - started

    async def stop(self):
        self.process.transport.closeStdin()
        await self.process.ended
        if self.neighbours is not None:
            await self.neighbours.stop()


async def measureTunnels(reactor, counts, mib, rounds=CPU_ROUNDS):
    """
    Tunnels through a plain relay: its RSS and descriptors at each count; then the CPU it
    spends on C{mib} MiB at the last count, and that of another relay process carrying one
    tunnel, in C{rounds} interleaved parts.

    @return: the figures.
    """
    figures = {}
    relays = [MeasuredRelay(reactor, ADDRESS_BASE, False), MeasuredRelay(reactor, ADDRESS_BASE + 100, False)]
    many, one = relays
    try:
        await many.start()
        await one.start()
        await one.openUntil(1)
        emptyRss, emptyFds = many.process.rss(), many.process.descriptors()
        emptyHeap = (await many.process.request({"malloc": True}))["in_use"]
        for count in counts:
            await many.openUntil(count)
            figures[f"tunnel_rss_bytes_at_{count}"] = (many.process.rss() - emptyRss) / count
            figures[f"tunnel_c_heap_bytes_at_{count}"] = ((await many.process.request({"malloc": True}))["in_use"] - emptyHeap) / count
            figures[f"link_descriptors_at_{count}"] = (many.process.descriptors() - emptyFds) / (2 * count)
        last = counts[-1]
        spent = {"one": 0.0, "many": 0.0, "cell each": 0.0}
        for number in range(rounds):
            parts = [("one", one, BURST), ("many", many, BURST), ("cell each", many, 1)]
            for name, relay, burst in parts if number % 2 == 0 else reversed(parts):
                spent[name] += await relay.cpuOf(mib / rounds, burst)
        figures["relay_cpu_ms_per_mib_at_1"] = spent["one"] * 1000 / mib
        figures[f"relay_cpu_ms_per_mib_at_{last}"] = spent["many"] * 1000 / mib
        figures[f"relay_cpu_ms_per_mib_at_{last}_cell_each"] = spent["cell each"] * 1000 / mib
        await waitCarried(reactor, many.process, last)
        figures["tunnel_rss_bytes_after_traffic"] = (many.process.rss() - emptyRss) / last
        figures["tunnel_c_heap_bytes_after_traffic"] = ((await many.process.request({"malloc": True}))["in_use"] - emptyHeap) / last
        await many.process.request({"trim": True})
        figures["tunnel_rss_bytes_after_traffic_trimmed"] = (many.process.rss() - emptyRss) / last
        figures["failed_opens"] = many.neighbours.failures + one.neighbours.failures
    finally:
        for relay in relays:
            await relay.stop()
    return figures


async def measureTunnelHeap(reactor, counts, top):
    """
    Tunnels through a relay under tracemalloc.

    @return: C{(figures, notes)}: the Python heap per tunnel at each count, and the source
        lines it grew most at, at the last.
    """
    figures, notes = {}, []
    relay = MeasuredRelay(reactor, ADDRESS_BASE + 200, True)
    try:
        before = await relay.start()
        await relay.process.request({"mark": True})
        for count in counts:
            stats = await relay.openUntil(count)
            figures[f"tunnel_heap_bytes_at_{count}"] = (stats["traced"] - before["traced"]) / count
        notes.append(f"the relay's heap grew most at ({counts[-1]} tunnels):")
        for where, size, number in (await relay.process.request({"top": top}))["top"]:
            notes.append(f"    {where}: {size / counts[-1]:.0f} B and {number / counts[-1]:.2f} blocks a tunnel")
    finally:
        await relay.stop()
    return figures, notes


# In this process: a TLS connection, participations, records, contacts


def tlsConnectionHeap(pairs=200):
    """
    What OpenSSL holds for one idle TLS connection of a link, apart from everything else:
    C{pairs} pairs of connections made with the node's contexts and connection creators
    (L{phantom.link.tls}: TLS 1.3, a certificate each way, the server's node id pinned),
    handshaken over memory BIOs as Twisted's TLS does, then left idle.

    @return: C{(idle, fresh, group)}: the bytes the C allocator holds per connection once
        handshaken (the mean of a client's and a server's) and per connection just made, and
        the key exchange group the handshakes agreed on.
    """
    from tests.link.helpers import connectionPairs, handshakeInMemory

    pair = connectionPairs(Identity.generate(), Identity.generate())

    # First-use caches (OpenSSL's algorithm fetches, the contexts' state) are not a connection's.
    for _ in range(4):
        handshakeInMemory(pair())
    gc.collect()
    empty = mallocFigures()["in_use"]
    made = [pair() for _ in range(pairs)]
    gc.collect()
    fresh = mallocFigures()["in_use"] - empty
    for each in made:
        handshakeInMemory(each)
    gc.collect()
    idle = mallocFigures()["in_use"] - empty
    return idle / (2 * pairs), fresh / (2 * pairs), made[0][0].get_group_name()


def heapGrowth(make):
    """
    @param make: a function of no arguments whose result is kept while the heap is measured.
    @return: C{(result, bytes)}: what C{make} returned and the bytes the Python heap grew by
        and still holds once it did, after garbage collections.
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        result = make()
        gc.collect()
        return result, tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()


def recordHeap(records, seed=1):
    """
    @return: C{{"value": (bytes per record, charged, CPU seconds per record), "node": (...)}}:
        what a L{RecordStore} grows by per record of each kind, what it charges for one, and
        the CPU time storing one takes (validation included; measured on a second store, with
        tracemalloc off).
    """
    from twisted.internet.task import Clock

    rng = random.Random(seed)
    clock = Clock()
    clock.advance(1_700_000_000)
    values = [(rng.randbytes(32), rng.randbytes(64)) for _ in range(records)]
    identities = [Identity.generate() for _ in range(records)]
    nodes = [NodeRecord.create(identity, "10.1.2.3", 4433, int(clock.seconds())).encoded for identity in identities]
    nodeKeys = [identity.nodeId for identity in identities]
    results = {}
    for kind, table, items in (("value", Table.VALUE, values), ("node", Table.NODE, list(zip(nodeKeys, nodes)))):
        store = RecordStore(clock, maxBytes=2**40)
        # Off the wire: fresh copies nobody else holds.
        fresh = [(bytes(bytearray(key)), bytes(bytearray(encoded))) for key, encoded in items]

        def fill():
            for key, encoded in fresh:
                store.put(table, key, encoded, ttl=3600)

        _, grown = heapGrowth(fill)
        charged = store.size / len(items)
        store = RecordStore(clock, maxBytes=2**40)
        fresh = [(bytes(bytearray(key)), bytes(bytearray(encoded))) for key, encoded in items]
        started = process_time()
        fill()
        spent = process_time() - started
        results[kind] = (grown / len(items), charged, spent / len(items))
    return results


def contactHeap(contacts, seed=1):
    """
    @return: C{(bytes, seconds)}: the heap a L{RoutingTable} grows by per contact, C{contacts}
        in distinct buckets, and the CPU time taking one in takes (on a second table, with
        tracemalloc off).
    """
    from twisted.internet.task import Clock

    rng = random.Random(seed)
    ownId = rng.randbytes(32)
    own = int.from_bytes(ownId, "big")
    ids = []
    for index in range(contacts):
        bucket = index // 20
        # Shares the first `bucket` bits with ours, differs in the next.
        flip = 1 << (255 - bucket)
        low = rng.getrandbits(255 - bucket)
        number = ((own >> (256 - bucket)) << (256 - bucket)) | ((own & flip) ^ flip) | low
        ids.append(number.to_bytes(32, "big"))
    fresh = [Contact(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", 4433, nodeId) for nodeId in ids]
    table = RoutingTable(ownId, Clock())

    def fill():
        for contact in fresh:
            table.seen(contact)

    _, grown = heapGrowth(fill)
    if len(table) != contacts:
        raise RuntimeError(f"{len(table)} contacts in the table, not {contacts}")
    table = RoutingTable(ownId, Clock())
    started = process_time()
    fill()
    return grown / contacts, (process_time() - started) / contacts


def participationHeap(paths, seed=1):
    """
    @return: C{(bytes, withOwners, seconds)}: the bytes the heap grows by per path
        participation (X-node) over C{paths} paths built and kept on the in-memory network,
        less what was allocated in the owner's modules, and all of it; and the CPU time of
        every node in building a quarter as many paths first, with tracemalloc off, per
        participation.
    """
    from bench.anonymity import BenchNetwork

    settings = PathSettings(x=PATH_SHAPE[0], y=PATH_SHAPE[1], diversity="off", lifetime=10 * 86400.0, coarseEntries=False)
    network = BenchNetwork(PATH_NODES, seed, settings)
    owners = network.nodes[:PATH_OWNERS]
    # A first path each, untimed: the one-off state of building at all.
    kept = [network.build(owner, PathKind.EXIT, PATH_SHAPE) for owner in owners]
    network.network.settle()
    timed = max(1, paths // 4)
    started = process_time()
    for number in range(timed):
        kept.append(network.build(owners[number % PATH_OWNERS], PathKind.EXIT, PATH_SHAPE))
    network.network.settle()
    spent = process_time() - started
    gc.collect()
    tracemalloc.start(1)
    try:
        gc.collect()
        before = tracemalloc.take_snapshot()
        for number in range(paths):
            kept.append(network.build(owners[number % PATH_OWNERS], PathKind.EXIT, PATH_SHAPE))
        network.network.settle()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    participations = sum(len(node.paths.relaying) for node in network.nodes)
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # What the owners keep of their own paths: the path objects' own growth by file.
    ownerFiles = ("phantom/path/owner.py", "phantom/path/plan.py", "phantom/path/array.py", "phantom/path/circle.py", "phantom/path/retry.py")
    owned = sum(stat.size_diff for stat in after.compare_to(before, "filename") if stat.traceback[0].filename.endswith(ownerFiles))
    network.stop()
    expected = (paths + timed + PATH_OWNERS) * PATH_SHAPE[0]
    if participations != expected:
        raise RuntimeError(f"{participations} participations, not {expected}")
    return (grown - owned) / (paths * PATH_SHAPE[0]), grown / (paths * PATH_SHAPE[0]), spent / (timed * PATH_SHAPE[0])


def verifySeconds(rounds=500):
    """@return: the CPU time of one Ed25519 verification (of a node record's size), the yardstick of the CPU figures measured in this process."""
    key = Identity.generate().communicationKey
    message = bytes(155)
    signature = key.sign(message)
    public = key.public_key()
    started = process_time()
    for _ in range(rounds):
        public.verify(signature, message)
    return (process_time() - started) / rounds


def measure(reactor, options):
    counts = parseCounts(options.counts)

    async def measuring():
        quietLogging()
        plain = await measureTunnels(reactor, counts, options.mib)
        failedOpens = plain.pop("failed_opens")
        traced, notes = await measureTunnelHeap(reactor, counts, options.top)
        connectionIdle, connectionFresh, group = tlsConnectionHeap()
        participation, participationAll, participationCpu = participationHeap(options.paths)
        records = recordHeap(options.records)
        contact, contactCpu = contactHeap(options.contacts)
        verify = verifySeconds()
        figures, baseline, goals = {}, {}, {}
        for count in counts:
            for name in (f"tunnel_rss_bytes_at_{count}", f"tunnel_heap_bytes_at_{count}"):
                figures[name] = (plain | traced)[name]
                baseline[name] = TUNNEL_GOAL
                goals[name] = RatioGoal(1.0, atLeast=False)
        for name in ("tunnel_rss_bytes_after_traffic", "tunnel_rss_bytes_after_traffic_trimmed"):
            figures[name], baseline[name] = plain[name], TUNNEL_GOAL
            goals[name] = RatioGoal(1.0, atLeast=False)
        for name in [f"tunnel_c_heap_bytes_at_{count}" for count in counts] + ["tunnel_c_heap_bytes_after_traffic"]:
            figures[name], baseline[name] = plain[name], TUNNEL_GOAL
        figures["tls_connection_c_heap_bytes"], baseline["tls_connection_c_heap_bytes"] = connectionIdle, TUNNEL_GOAL / 2
        figures["tls_connection_c_heap_bytes_fresh"], baseline["tls_connection_c_heap_bytes_fresh"] = connectionFresh, TUNNEL_GOAL / 2
        for count in counts:
            name = f"link_descriptors_at_{count}"
            figures[name], baseline[name] = plain[name], 1
        first = plain["relay_cpu_ms_per_mib_at_1"]
        for name in ("relay_cpu_ms_per_mib_at_1", f"relay_cpu_ms_per_mib_at_{counts[-1]}", f"relay_cpu_ms_per_mib_at_{counts[-1]}_cell_each"):
            figures[name], baseline[name] = plain[name], first
        goals[f"relay_cpu_ms_per_mib_at_{counts[-1]}"] = RatioGoal(CPU_FLATNESS, atLeast=False)
        figures["participation_heap_bytes"], baseline["participation_heap_bytes"] = participation, PARTICIPATION_GOAL
        goals["participation_heap_bytes"] = RatioGoal(1.0, atLeast=False)
        for kind, (grown, charged, cpu) in records.items():
            figures[f"record_heap_bytes_{kind}"], baseline[f"record_heap_bytes_{kind}"] = grown, charged
            figures[f"record_cpu_us_{kind}"], baseline[f"record_cpu_us_{kind}"] = cpu * 1e6, verify * 1e6
        figures["contact_heap_bytes"], baseline["contact_heap_bytes"] = contact, CONTACT_WIRE_BYTES
        figures["contact_cpu_us"], baseline["contact_cpu_us"] = contactCpu * 1e6, verify * 1e6
        figures["participation_cpu_ms"], baseline["participation_cpu_ms"] = participationCpu * 1e3, verify * 1e3
        notes.insert(0, (
            f"tunnels through one relay process on loopback (TLS links), {PREVIOUS_HOPS} previous and {NEXT_HOPS} next hops, "
            f"{options.mib} MiB relayed at 1 and {counts[-1]} tunnels by two relays in turn; participations: {options.paths} paths "
            f"{PATH_SHAPE[0]}x{PATH_SHAPE[1]} (heap with the owners' share: {participationAll:.0f} B a participation); "
            f"baselines: goals for memory, the first count's CPU, what the store charges a record, 50 wire bytes a contact, "
            f"one Ed25519 verification for the CPU of participations, records and contacts, "
            f"half the tunnel goal for a TLS connection (a tunnel is two at a relay; key exchange {group}); "
            f"TUNNEL links that failed to open and were tried again: {failedOpens}"
        ))
        return BenchmarkResult(
            name="cost", figures=figures, baseline=baseline, subject="cost", baselineName="baseline",
            notes="\n".join(notes), goals=goals,
        )

    return Deferred.fromCoroutine(measuring())
