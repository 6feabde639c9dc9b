"""A node's metrics, read from an L{IMeasuredNode} without a network."""

from types import SimpleNamespace

from prometheus_client import generate_latest
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from phantom.config import resolveConfig
from phantom.metrics.collector import nodeRegistry
from phantom.metrics.interfaces import IMeasuredNode
from phantom.node import PhantomNode
from phantom.path.interfaces import PathKind
from tests.control.helpers import OTHER_ID, FakeNode, FakeTable, contact, fakePath, fakeTunnel


@implementer(IMeasuredNode)
class MeasuredFakeNode(FakeNode):
    """The control tests' L{FakeNode}, with the counts the metrics ask besides."""

    def __init__(self, clock=None):
        super().__init__(clock)
        self.relayed = 0
        self.participations = 0
        self.storeBytes = 0
        self.rpcs = {}

    def relayedCount(self):
        return self.relayed

    def participationCount(self):
        return self.participations

    def storedBytes(self):
        return self.storeBytes

    def rpcCounts(self):
        return self.rpcs


class InterfaceTests(SynchronousTestCase):
    def test_node(self):
        """A L{PhantomNode} provides L{IMeasuredNode}, before it is started."""
        config = resolveConfig(dataDir=self.mktemp(), port="7402", listenAddress="127.0.0.3")
        self.assertTrue(verifyObject(IMeasuredNode, PhantomNode(config, MemoryReactorClock())))

    def test_fake(self):
        self.assertTrue(verifyObject(IMeasuredNode, MeasuredFakeNode()))


class CollectorTests(SynchronousTestCase):
    def setUp(self):
        self.node = MeasuredFakeNode()
        self.registry, self.recorder = nodeRegistry(self.node)

    def value(self, name, **labels):
        return self.registry.get_sample_value(name, labels)

    def test_idle(self):
        """A node that has just started reports zeros, and every metric it always has."""
        self.node.startedAt = 0.0
        self.node.reactor.advance(12.5)
        self.assertEqual(self.value("phantom_uptime_seconds"), 12.5)
        for name in ("phantom_links", "phantom_link_connections", "phantom_peers", "phantom_store_entries", "phantom_store_bytes",
                     "phantom_relayed_paths", "phantom_path_participations", "phantom_dht_lookups_total"):
            self.assertEqual(self.value(name), 0, name)
        self.assertEqual(self.value("phantom_owned_paths", kind="exit"), 0)
        self.assertEqual(self.value("phantom_tunnels", role="carried"), 0)
        self.assertIsNone(self.value("phantom_tun_packets_total", event="device in"))

    def test_stateMoves(self):
        """Each scrape reads the node's state as it is then."""
        node = self.node
        node.links = (3, 2)
        node.table = FakeTable([contact(OTHER_ID)])
        node.lookups = (4, 17)
        node.rpcs = {("FIND_NODE", "answered"): 15, ("FIND_NODE", "failed"): 2}
        node.stored = {b"k": b"v"}
        node.storeBytes = 300
        node.paths = [fakePath("entry"), fakePath("exit"), fakePath("exit")]
        node.relayed, node.participations = 5, 2
        node.kept = [{"kind": "exit", "wanted": 2, "built": 1, "building": 1, "failures": 0, "last_error": ""}]
        node.tunnels = [fakeTunnel(outbound=True, sent=10, received=20), fakeTunnel(outbound=False, sent=1, received=2)]
        node.carried = 7
        expected = {
            ("phantom_links", ()): 3,
            ("phantom_link_connections", ()): 2,
            ("phantom_routing_table_contacts", ()): 1,
            ("phantom_peers", ()): 1,
            ("phantom_dht_lookups_total", ()): 4,
            ("phantom_dht_lookup_requests_total", ()): 17,
            ("phantom_dht_rpcs_total", (("kind", "FIND_NODE"), ("outcome", "answered"))): 15,
            ("phantom_dht_rpcs_total", (("kind", "FIND_NODE"), ("outcome", "failed"))): 2,
            ("phantom_store_entries", ()): 1,
            ("phantom_store_bytes", ()): 300,
            ("phantom_owned_paths", (("kind", "entry"),)): 1,
            ("phantom_owned_paths", (("kind", "exit"),)): 2,
            ("phantom_relayed_paths", ()): 5,
            ("phantom_path_participations", ()): 2,
            ("phantom_kept_paths", (("kind", "exit"), ("state", "wanted"))): 2,
            ("phantom_kept_paths", (("kind", "exit"), ("state", "building"))): 1,
            ("phantom_tunnels", (("role", "owner_out"),)): 1,
            ("phantom_tunnels", (("role", "owner_in"),)): 1,
            ("phantom_tunnels", (("role", "carried"),)): 7,
            ("phantom_tunnel_bytes", (("direction", "sent"),)): 11,
            ("phantom_tunnel_bytes", (("direction", "received"),)): 22,
        }
        for (name, labels), value in expected.items():
            self.assertEqual(self.value(name, **dict(labels)), value, name)

    def test_tunDevice(self):
        """With a tun device, its packet counts are there, drops by reason."""
        self.node.device = SimpleNamespace(name="phantom0")
        self.node.router = SimpleNamespace(tunnels={}, counts={"device in": 9, "dropped: queue full while a tunnel opens": 2})
        self.assertEqual(self.value("phantom_tun_packets_total", event="device in"), 9)
        self.assertEqual(self.value("phantom_tun_packets_total", event="dropped: queue full while a tunnel opens"), 2)

    def test_builds(self):
        """Path builds are counted by kind and outcome, their durations in a histogram."""
        self.recorder.buildFinished(PathKind.EXIT, True, 0.3)
        self.recorder.buildFinished(PathKind.EXIT, True, 4.0)
        self.recorder.buildFinished(PathKind.ENTRY, False, 40.0)
        self.assertEqual(self.value("phantom_path_builds_total", kind="exit", outcome="built"), 2)
        self.assertEqual(self.value("phantom_path_builds_total", kind="entry", outcome="failed"), 1)
        self.assertEqual(self.value("phantom_path_build_seconds_bucket", kind="exit", outcome="built", le="0.5"), 1)
        self.assertEqual(self.value("phantom_path_build_seconds_sum", kind="exit", outcome="built"), 4.3)

    def test_lookups(self):
        """Lookup durations are in a histogram."""
        self.recorder.lookupFinished(0.04)
        self.recorder.lookupFinished(3.0)
        self.assertEqual(self.value("phantom_dht_lookup_seconds_count"), 2)
        self.assertEqual(self.value("phantom_dht_lookup_seconds_bucket", le="0.05"), 1)

    def test_text(self):
        """The registry exposes text that names every metric; no process-wide metrics of the global registry."""
        text = generate_latest(self.registry).decode()
        self.assertIn("# TYPE phantom_links gauge", text)
        self.assertIn("# TYPE phantom_dht_lookups_total counter", text)
        self.assertNotIn("process_", text)
        self.assertNotIn("python_gc", text)
