"""
The metrics of one node: gauges and counters read from its state at each scrape
(L{NodeCollector}), and the path builds it counts as they end (L{BuildRecorder}).
"""

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from phantom.control import responses

BUILD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Upper bounds, in seconds, of the path build duration histogram's buckets."""
LOOKUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds, in seconds, of the lookup duration histogram's buckets."""


def _gauge(name, doc, value):
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name, doc, value):
    return CounterMetricFamily(name, doc, value=value)


class NodeCollector:
    """
    A Prometheus collector that reads an L{IMeasuredNode<phantom.metrics.interfaces.IMeasuredNode>}
    when scraped, through the functions the control socket's responses are made with.

    @param node: the node.
    """

    def __init__(self, node):
        self.node = node

    def collect(self):
        node = self.node
        links, connections = node.linkCounts()
        lookups, requests = node.lookupCounts()
        yield _gauge("phantom_uptime_seconds", "Seconds since the node started.", responses.uptime(node))
        yield _gauge("phantom_links", "Links open with other nodes.", links)
        yield _gauge("phantom_link_connections", "TLS connections the links run over.", connections)
        yield _gauge("phantom_routing_table_contacts", "Contacts in the routing table.", len(node.routingTable()))
        yield _gauge("phantom_peers", "Nodes known: routing table contacts and linked peers.", len(responses.peers(node)))
        yield _counter("phantom_dht_lookups", "Network database lookups run.", lookups)
        yield _counter("phantom_dht_lookup_requests", "Requests the lookups sent.", requests)
        rpcs = CounterMetricFamily("phantom_dht_rpcs", "Requests sent to other nodes, by kind and outcome.", labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(node.rpcCounts().items()):
            rpcs.add_metric([kind, outcome], count)
        yield rpcs
        yield _gauge("phantom_store_entries", "Records stored for the network database.", node.storedCount())
        yield _gauge("phantom_store_bytes", "What the stored records cost, in bytes.", node.storedBytes())

        owned = GaugeMetricFamily("phantom_owned_paths", "Paths the node owns, by kind.", labels=["kind"])
        kinds = {}
        for path in responses.pathList(node)["paths"]:
            kinds[path["kind"]] = kinds.get(path["kind"], 0) + 1
        for kind in sorted(set(kinds) | {"entry", "exit"}):
            owned.add_metric([kind], kinds.get(kind, 0))
        yield owned
        yield _gauge("phantom_relayed_paths", "Paths of other nodes the node relays.", node.relayedCount())
        yield _gauge("phantom_path_participations", "Paths under construction the node takes part in.", node.participationCount())
        kept = GaugeMetricFamily("phantom_kept_paths", "Paths the node keeps built, by kind and state.", labels=["kind", "state"])
        for state in node.pathStates():
            for what in ("wanted", "built", "building"):
                kept.add_metric([str(state["kind"]), what], state[what])
        yield kept

        tunnels = GaugeMetricFamily("phantom_tunnels", "Tunnels by the node's role in them.", labels=["role"])
        ends = responses.tunnelList(node)
        for role in ("out", "in"):
            tunnels.add_metric([f"owner_{role}"], sum(1 for t in ends["tunnels"] if t["direction"] == role))
        tunnels.add_metric(["carried"], ends["carried"])
        yield tunnels
        carriedBytes = GaugeMetricFamily(
            "phantom_tunnel_bytes", "Bytes carried so far by the tunnels open now that the node owns an end of.", labels=["direction"]
        )
        for direction in ("sent", "received"):
            carriedBytes.add_metric([direction], sum(t[direction] for t in ends["tunnels"]))
        yield carriedBytes

        tun = responses.tunStatus(node)
        if tun["device"]:
            packets = CounterMetricFamily("phantom_tun_packets", "Packets of the tun device, by event (drops by reason).", labels=["event"])
            for count in tun["counts"]:
                packets.add_metric([count["event"]], count["packets"])
            yield packets


class Recorder:
    """
    Counts what a node's services tell as it ends: path builds by kind and outcome with their
    durations (give L{buildFinished} to
    L{PathService.onBuildFinished<phantom.path.service.PathService.onBuildFinished>}), and the
    durations of lookups (L{lookupFinished} to
    L{LookupStats.onLookup<phantom.netdb.service.LookupStats.onLookup>}).

    @param registry: the C{CollectorRegistry} the counts are in.
    """

    def __init__(self, registry):
        self.lookups = Histogram(
            "phantom_dht_lookup_seconds", "How long network database lookups took.", registry=registry, buckets=LOOKUP_BUCKETS
        )
        self.builds = Counter("phantom_path_builds", "Path builds ended, by kind and outcome.", ["kind", "outcome"], registry=registry)
        self.seconds = Histogram(
            "phantom_path_build_seconds", "How long path builds took, every attempt included.", ["kind", "outcome"],
            registry=registry, buckets=BUILD_BUCKETS,
        )

    def buildFinished(self, kind, built, seconds):
        labels = (str(kind), "built" if built else "failed")
        self.builds.labels(*labels).inc()
        self.seconds.labels(*labels).observe(seconds)

    def lookupFinished(self, seconds):
        self.lookups.observe(seconds)


def nodeRegistry(node):
    """
    @return: a new C{CollectorRegistry} of C{node}'s own (never the global one: several nodes may
        run in one process) with a L{NodeCollector} of it, and the L{Recorder} in it.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry, Recorder(registry)
