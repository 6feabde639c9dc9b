"""
The simulated network: N nodes on one virtual clock, each running the node's own network
database (L{phantom.netdb.service.DhtNode}: its routing table, lookups, record store and
sampling), whose requests travel through L{SimRpc} instead of TLS links.

    sim = Simulation(SimConfig(nodes=1000, seed=7))
    sim.warmStart()
    sim.startChurn()
    value = sim.resolve(sim.nodes[3].dht.get(key))
    sim.runFor(3600)

A request is delayed by the latency between the two nodes (L{LatencyModel}, fixed per pair), and
so is its reply; either may be lost (C{lossRate}); a request to a node that is gone, or one that
was lost, fails when the RPC timeout runs out, as it would on a real node. The first request
between two nodes pays for opening a link (C{connectRoundTrips} round trips, TCP and TLS 1.3);
a link idle for C{idleLinkTimeout} is gone.

Churn: each node stays up for a time drawn from the uptime distribution, leaves without
notice, stays away for a time drawn from the downtime distribution and comes back with the same
identity and address, as a restarted process: its stored records are lost, its routing table is
what it had saved, and it joins through a few of those contacts (L{phantom.netdb.service.DhtNode.join}).

Upkeep: every node runs its own L{DhtNode.maintain} every C{maintenanceInterval} seconds, as a
real node's timer does: records expire, and each node publishes its node record again every
C{nodeRecordInterval}, so records outlive their 3-hour lifetime in a long run. Bucket refresh
and republishing every record held, the costly rest of that upkeep, are off in the simulation's
default settings (L{SIM_DHT}) and on with the node's own (C{SimConfig(dht=DhtSettings())}).

Everything random is drawn from one C{random.Random(seed)}, in an order that depends only on the
seed: one seed reproduces a run, event for event (L{Simulation.events}).
"""

import bisect
import math
import random as randomModule
from dataclasses import dataclass
from statistics import NormalDist
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from twisted.internet.defer import Deferred, succeed

from phantom.address import Contact
from phantom.config import DhtSettings
from phantom.identity import Identity
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb import K
from phantom.netdb.records import VERIFIED_NODE_RECORDS, NodeRecord
from phantom.netdb.rpc import RpcFailed, Unreachable, deliverTo
from phantom.netdb.service import DhtNode
from phantom.wire.dht import RpcKind, Table

PORT = 7402
SIM_DHT = DhtSettings(refreshInterval=math.inf, republishInterval=math.inf)
"""The nodes' network database settings in the simulation: the node's own, but for bucket
refresh and republishing, which are not run (docs/scale.md says what that leaves out)."""
MASK64 = (1 << 64) - 1


def _mix(x):
    """SplitMix64's finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class LatencyModel:
    """
    One-way latencies between nodes, fixed per pair and the same both ways, log-normally
    distributed (heavy-tailed): C{median * exp(sigma * z)} with z standard normal, drawn from a
    hash of the seed and the pair, so nothing is stored per pair.

    @param seed: an integer.
    @param median: the median one-way latency, in seconds.
    @param sigma: the spread of its logarithm; 0.6 puts the 95th percentile at 2.7 times the median.
    """

    def __init__(self, seed, median=0.050, sigma=0.6):
        self._salt = _mix(seed & MASK64)
        self.median = median
        self.sigma = sigma
        self._inverse = NormalDist().inv_cdf

    def __call__(self, a, b):
        """@return: the one-way latency between node indices C{a} and C{b}, in seconds."""
        if a > b:
            a, b = b, a
        u = ((_mix(self._salt ^ ((a << 32) | b)) >> 11) + 0.5) / (1 << 53)
        return self.median * math.exp(self.sigma * self._inverse(u))


def exponential(mean):
    """Times drawn from an exponential distribution of C{mean} seconds (memoryless sessions)."""
    return lambda rng: rng.expovariate(1 / mean)


def weibull(mean, shape=0.6):
    """
    Times drawn from a Weibull distribution of C{mean} seconds: with a shape below 1 most
    sessions are short and a few very long, as measured in deployed peer-to-peer networks.
    """
    scale = mean / math.gamma(1 + 1 / shape)
    return lambda rng: rng.weibullvariate(scale, shape)


@dataclass(frozen=True)
class SimConfig:
    """
    What is simulated.

    @ivar nodes: how many nodes.
    @ivar seed: the seed of every random choice of the run.
    @ivar medianLatency: the median one-way latency between two nodes, in seconds.
    @ivar latencySigma: the spread of the latencies' logarithm (L{LatencyModel}).
    @ivar lossRate: the share of messages lost (each request and each reply on its own).
    @ivar connectRoundTrips: round trips a new link costs before its first request.
    @ivar churnPerHour: the share of nodes that leave per hour (each node's mean uptime is
        C{1 / churnPerHour} hours); 0 for none.
    @ivar uptime: C{uptime(mean) -> (rng -> seconds)}: the session-length distribution
        (L{exponential} or L{weibull}).
    @ivar meanDowntime: how long a node that left stays away on average, in seconds
        (exponentially distributed).
    @ivar rejoinContacts: how many of its saved contacts a returning node joins through.
    @ivar dht: the L{DhtSettings} of every node.
    @ivar upkeep: whether each node runs its own upkeep (L{DhtNode.maintain}, every
        C{dht.maintenanceInterval} seconds, the first at a random time within that interval):
        expiring records and publishing its node record again every C{dht.nodeRecordInterval}
        (warm-started nodes first at a random time within that interval); bucket refresh and
        republishing as C{dht} says.
    @ivar paths: whether each node also gets a link service on an in-memory network and a
        path service (L{phantom.sim.paths}), for path builds.
    @ivar logEvents: whether to keep the log of every message (L{Simulation.events}).
    """

    nodes: int = 1000
    seed: int = 1
    medianLatency: float = 0.050
    latencySigma: float = 0.6
    lossRate: float = 0.0
    connectRoundTrips: int = 2
    churnPerHour: float = 0.0
    uptime: object = exponential
    meanDowntime: float = 600.0
    rejoinContacts: int = 8
    dht: DhtSettings = SIM_DHT
    upkeep: bool = True
    paths: bool = False
    logEvents: bool = False


class _Request(SimpleNamespace):
    """A request's content as a parsed wire message shows it (fields as attributes)."""


def _request(content):
    request = _Request(**content)
    if "table" in content:
        table = content["table"]
        request.table = Table[table] if isinstance(table, str) else Table(table)
    return request


class _WireContact:
    """A contact of a NODES reply as the wire parser gives it."""

    __slots__ = ("node_id", "address", "port")

    def __init__(self, node_id, address, port):
        self.node_id = node_id
        self.address = address
        self.port = port


def _reply(kind, content):
    """A reply as the requester's RPC layer hands it on: fields as attributes."""
    if content is None:
        return kind, None
    if kind == RpcKind.NODES:
        return kind, SimpleNamespace(contacts=[_WireContact(**contact) for contact in content["contacts"]])
    return kind, SimpleNamespace(**content)


class SimNode:
    """
    One simulated node: its identity and address for the whole run, and its current
    incarnation (a fresh one each time it comes back).

    @ivar index: its number in the simulation.
    @ivar online: whether it is up.
    @ivar incarnation: how many times it came back.
    @ivar dht: the L{DhtNode} of the current incarnation.
    @ivar rpc: the L{SimRpc} of the current incarnation.
    @ivar links: the node's L{phantom.link.testing.MemoryLinkService} (with paths), or C{None}.
    @ivar paths: the node's L{phantom.path.service.PathService} (with paths), or C{None}.
    @ivar colluding: whether the node is one of the adversary's (set by an experiment).
    """

    def __init__(self, index, identity, host):
        self.index = index
        self.identity = identity
        self.nodeId = identity.nodeId
        self.host = host
        self.port = PORT
        self.contact = Contact(host, PORT, self.nodeId)
        self.online = True
        self.incarnation = 0
        self.dht = None
        self.rpc = None
        self.links = None
        self.paths = None
        self.colluding = False

    # What the path service asks of its network database: the current incarnation's.

    def sampleNodes(self, count, exclude=()):
        return self.dht.sampleNodes(count, exclude=exclude)

    def storeRecord(self, table, key, encoded, ttl=None, replication=K):
        return self.dht.storeRecord(table, key, encoded, ttl, replication)

    def findRecord(self, table, key):
        return self.dht.findRecord(table, key)

    def unanswered(self, nodeId, address=None):
        return self.dht.unanswered(nodeId, address)


class SimChannel:
    """What L{DhtNode.join} asks of a channel: its link's node id and requests over it."""

    def __init__(self, rpc, contact):
        self._rpc = rpc
        self._contact = contact
        self.link = SimpleNamespace(nodeId=contact.nodeId)

    def request(self, kind, content):
        return self._rpc.call(self._contact, kind, content)


class SimRpc:
    """
    A node incarnation's DHT requests (what L{phantom.netdb.rpc.DhtLinks} does on a real node),
    carried by the simulation. Once its incarnation is gone (C{alive} false) nothing it asked
    gets an answer and nothing more leaves.
    """

    def __init__(self, sim, node):
        self._sim = sim
        self.node = node
        self.alive = True
        self.links = {}
        """Peer node id to C{(incarnation, last used)} of the link with it."""

    def call(self, contact, kind, content):
        d = Deferred()
        if self.alive:
            self._sim.send(self, contact, kind, content, d)
        return d

    def ask(self, contact, kind, content, receiver, tag):
        """L{phantom.netdb.rpc.DhtLinks.ask}: L{call}, its outcome handed to C{receiver}."""
        deliverTo(self.call(contact, kind, content), receiver, tag)

    def channelToAddress(self, host, port, nodeId=None):
        return succeed(SimChannel(self, Contact(host, port, nodeId)))

    def closeIdle(self):
        """Links idle too long are dropped lazily, when next used (L{Simulation.send})."""


class Simulation:
    """
    A simulated network of C{config.nodes} nodes.

    @ivar clock: the virtual clock (a L{HeapClock}) every node runs on.
    @ivar random: the run's one source of randomness.
    @ivar nodes: the L{SimNode}s, by index.
    @ivar events: with C{config.logEvents}, every request delivered: C{(time, kind, from, to)}.
    @ivar messages: how many requests were sent.
    """

    def __init__(self, config=SimConfig()):
        self.config = config
        # Simulation only: the process's cache of checked node records serves every simulated
        # node; large enough for all their records, as each real node's serves the records it
        # hears of (checking a record gives the same answer whoever checks it).
        VERIFIED_NODE_RECORDS.size = max(VERIFIED_NODE_RECORDS.size, 2 * config.nodes)
        self.random = randomModule.Random(config.seed)
        self.clock = HeapClock()
        self.network = MemoryNetwork(self.clock, latency=self._hostLatency) if config.paths else MemoryNetwork(self.clock)
        self.latency = LatencyModel(self.random.getrandbits(64), config.medianLatency, config.latencySigma)
        self.events = [] if config.logEvents else None
        self.messages = 0
        self.tracked = {}
        """C{(requester id, key)} to the depth at which each node was heard of (L{track})."""
        self.valueDepths = {}
        self.nodes = []
        self.byId = {}
        self._byHost = {}
        self._dhtLinks = SimpleNamespace(registerPurpose=lambda purpose, factory: None)
        for index in range(config.nodes):
            identity = Identity(
                ed25519.Ed25519PrivateKey.from_private_bytes(self.random.randbytes(32)),
                None,
                x25519.X25519PrivateKey.from_private_bytes(self.random.randbytes(32)),
                ed25519.Ed25519PrivateKey.from_private_bytes(self.random.randbytes(32)),
            )
            # Each node its own address; the first two octets spread the nodes over many /16s.
            host = f"{self.random.randrange(1, 224)}.{self.random.randrange(256)}.{index >> 8 & 255}.{index & 255}"
            node = SimNode(index, identity, host)
            self.nodes.append(node)
            self.byId[node.nodeId] = node
            self._byHost[host] = node
            self._incarnate(node)
        self._sortedIds = sorted(int.from_bytes(node.nodeId, "big") for node in self.nodes)
        self._indexOfId = {int.from_bytes(node.nodeId, "big"): node.index for node in self.nodes}

    def _hostLatency(self, a, b):
        return self.latency(self._byHost[a].index, self._byHost[b].index)

    def _incarnate(self, node, bootstrap=()):
        """Give C{node} a fresh process: a network database, and a path service with paths."""
        node.rpc = SimRpc(self, node)
        if self.config.paths:
            from phantom.sim.paths import attachPathService

            node.links = self.network.linkService(node.nodeId, node.host, node.port)
            attachPathService(self, node)
        node.dht = DhtNode(
            node.identity, self._dhtLinks, self.clock, self.config.dht, (node.host, node.port), bootstrap,
            random=randomModule.Random(self.random.getrandbits(64)),
        )
        node.dht.rpc = node.rpc
        if self.config.upkeep:
            interval = self.config.dht.maintenanceInterval
            self.clock.post(self.random.uniform(0, interval), self._maintain, node, node.incarnation)

    def _maintain(self, node, incarnation):
        """A node's upkeep timer (L{DhtNode.maintain}), until its incarnation ends."""
        if node.online and node.incarnation == incarnation:
            node.dht.maintain()
            self.clock.post(self.config.dht.maintenanceInterval, self._maintain, node, incarnation)

    def _publishFirst(self, node):
        """A warm-started node renews the record it published when it joined (before the run)."""
        if node.online and node.incarnation == 0:
            Deferred.fromCoroutine(node.dht.publishNodeRecord()).addErrback(lambda failure: None)

    # Messages

    def send(self, rpc, contact, kind, content, d):
        """Carry one request from C{rpc}'s node to C{contact}; its reply or failure fires C{d}."""
        self.messages += 1
        sent = self.clock.seconds()
        source = rpc.node
        target = self.byId.get(contact.nodeId)
        timeout = self.config.dht.rpcTimeout
        if target is None or target.host != contact.host or target.port != contact.port:
            self.clock.post(timeout, self._fail, rpc, d, "nobody with that id there")
            return
        latency = self.latency(source.index, target.index)
        delay = latency
        link = rpc.links.get(target.nodeId)
        if link is None or link[0] != target.incarnation or sent - link[1] > self.config.dht.idleLinkTimeout:
            delay += 2 * latency * self.config.connectRoundTrips
        if self.config.lossRate and self.random.random() < self.config.lossRate:
            self.clock.post(timeout, self._fail, rpc, d, "request lost")
            return
        self.clock.post(delay, self._arrive, rpc, target, kind, content, d, sent, latency)

    def _arrive(self, rpc, target, kind, content, d, sent, latency):
        now = self.clock.seconds()
        timeout = self.config.dht.rpcTimeout
        if not target.online:
            self.clock.post(max(sent + timeout - now, 0), self._fail, rpc, d, "the node is gone", Unreachable)
            return
        source = rpc.node
        if self.events is not None:
            self.events.append((now, kind.name, source.index, target.index))
        rpc.links[target.nodeId] = (target.incarnation, now)
        if rpc.alive:
            target.rpc.links[source.nodeId] = (source.incarnation, now)
        sender = source.contact if content["port"] == source.port else Contact(source.host, content["port"], source.nodeId)
        kind, reply = target.dht.respond(sender, kind, _request(content))
        self._trackReply(source, target, kind, content, reply)
        if self.config.lossRate and self.random.random() < self.config.lossRate:
            self.clock.post(max(sent + timeout - now, 0), self._fail, rpc, d, "reply lost")
            return
        self.clock.post(latency, self._answer, rpc, d, kind, reply)

    def _answer(self, rpc, d, kind, reply):
        if rpc.alive:
            d.callback(_reply(kind, reply))

    def _fail(self, rpc, d, why, error=RpcFailed):
        if rpc.alive:
            d.errback(error(why))

    # Hops of tracked lookups

    def track(self, requester, key):
        """
        Count the hops of the next lookup C{requester} (a L{SimNode}) makes for C{key}: a node
        in its own table is one hop away, a node first named by a node n hops away is n + 1.
        """
        self.tracked[(requester.nodeId, key)] = {}
        self.valueDepths.pop((requester.nodeId, key), None)

    def untrack(self, requester, key):
        """@return: the hops to the node that returned the value, or C{None}; tracking ends."""
        self.tracked.pop((requester.nodeId, key), None)
        return self.valueDepths.pop((requester.nodeId, key), None)

    def _trackReply(self, source, target, kind, content, reply):
        if not self.tracked:
            return
        key = content.get("key", content.get("target"))
        depths = self.tracked.get((source.nodeId, key))
        if depths is None:
            return
        depth = depths.get(target.nodeId, 1)
        if kind == RpcKind.VALUE:
            self.valueDepths.setdefault((source.nodeId, key), depth)
        elif kind == RpcKind.NODES:
            for contact in reply["contacts"]:
                depths.setdefault(contact["node_id"], depth + 1)

    # Time

    def runFor(self, seconds):
        """Let C{seconds} of virtual time pass, every event at its time."""
        self.network.runFor(seconds)

    def resolve(self, deferred, within=3600.0):
        """Run the clock until C{deferred} has its result; @return: that result."""
        return self.network.run(deferred, within)

    # Knowledge no node has: for setting the network up and judging results

    def closestNodes(self, key, count=K):
        """
        The C{count} nodes closest to C{key} of all nodes, online or not, closest first.

        @param key: 32 bytes.
        """
        number = int.from_bytes(key, "big")
        ids = self._sortedIds
        # The smallest subtree around the key that holds enough ids holds the closest.
        lo, hi = 0, len(ids)
        for shared in range(1, 257):
            free = 256 - shared
            base = number >> free << free
            a = bisect.bisect_left(ids, base, lo, hi)
            b = bisect.bisect_left(ids, base + (1 << free), lo, hi)
            if b - a < count:
                break
            lo, hi = a, b
        closest = sorted(ids[lo:hi], key=lambda other: other ^ number)[:count]
        return [self.nodes[self._indexOfId[other]] for other in closest]

    def warmStart(self):
        """
        Set the network up as it stands after every node joined and published its node record,
        without simulating the joins: each node's routing table gets, for each of its buckets,
        up to k nodes drawn at random from that bucket's range of ids, and each node's signed
        record is stored (validated by each store) on the k nodes closest to its id and on itself.
        With C{upkeep}, each node publishes its record again at a random time within
        C{nodeRecordInterval}, as nodes that joined at different times would.
        """
        ids = self._sortedIds
        now = int(self.clock.seconds())
        for node in self.nodes:
            own = int.from_bytes(node.nodeId, "big")
            table = node.dht.table
            for shared in range(256):
                free = 255 - shared
                base = ((own >> free) ^ 1) << free
                lo = bisect.bisect_left(ids, base)
                hi = bisect.bisect_left(ids, base + (1 << free))
                chosen = range(lo, hi) if hi - lo <= table.k else sorted(self.random.sample(range(lo, hi), table.k))
                for position in chosen:
                    table.seen(self.nodes[self._indexOfId[ids[position]]].contact)
                # Stop once no other node shares more of our prefix.
                mineBase = own >> free << free
                if bisect.bisect_left(ids, mineBase + (1 << free)) - bisect.bisect_left(ids, mineBase) <= 1:
                    break
        for node in self.nodes:
            record = NodeRecord.create(node.identity, node.host, node.port, now)
            node.dht.store.put(Table.NODE, node.nodeId, record.encoded)
            for holder in self.closestNodes(node.nodeId, K + 1):
                if holder is not node:
                    holder.dht.store.put(Table.NODE, node.nodeId, record.encoded, storer=node.nodeId)
        if self.config.upkeep:
            # Each node joined, and published its record, at some time within the last renewal
            # interval; from its first renewal on, its own upkeep renews it.
            for node in self.nodes:
                self.clock.post(self.random.uniform(0, self.config.dht.nodeRecordInterval), self._publishFirst, node)

    # Churn

    def startChurn(self, spare=()):
        """
        From now on every node but those in C{spare} leaves and comes back as the config says.

        @param spare: L{SimNode}s that stay up (the owners an experiment measures, say).
        """
        rate = self.config.churnPerHour
        if not rate:
            return
        self._uptime = self.config.uptime(3600.0 / rate)
        spared = {node.index for node in spare}
        for node in self.nodes:
            if node.index not in spared:
                self.clock.callLater(self._uptime(self.random), self._leave, node)

    def _leave(self, node):
        node.online = False
        node.rpc.alive = False
        if node.links is not None:
            self.network.disconnect(node.links)
        saved = list(node.dht.table)
        self.clock.callLater(self.random.expovariate(1 / self.config.meanDowntime), self._return, node, saved)

    def _return(self, node, saved):
        node.online = True
        node.incarnation += 1
        count = min(self.config.rejoinContacts, len(saved))
        bootstrap = self.random.sample(saved, count)
        self._incarnate(node, bootstrap)
        Deferred.fromCoroutine(node.dht.join(bootstrap)).addErrback(lambda failure: None)
        self.clock.callLater(self._uptime(self.random), self._leave, node)

    @property
    def online(self):
        """The nodes that are up, by index."""
        return [node for node in self.nodes if node.online]
