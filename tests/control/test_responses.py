"""What a node answers on its control socket, made from an L{IControlledNode} without a network."""

from types import SimpleNamespace

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from phantom.address import formatAddress
from phantom.config import resolveConfig
from phantom.control import responses
from phantom.control.interfaces import IControlledNode
from phantom.node import PhantomNode
from tests.control.helpers import AP_ADDRESS, EXIT_ADDRESS, FAR_AP_ADDRESS, NODE_ID, OTHER_ID, THIRD_ID, FakeNode, FakeTable, contact, fakePath, fakeTunnel


class InterfaceTests(SynchronousTestCase):
    """The node, and the fake the tests use in its place, provide what the control socket asks."""

    def test_node(self):
        """A L{PhantomNode} provides L{IControlledNode}, before it is started."""
        config = resolveConfig(dataDir=self.mktemp(), port="7402", listenAddress="127.0.0.3")
        self.assertTrue(verifyObject(IControlledNode, PhantomNode(config, MemoryReactorClock())))

    def test_fake(self):
        """The tests' L{FakeNode} provides it too."""
        self.assertTrue(verifyObject(IControlledNode, FakeNode()))


class StatusTests(SynchronousTestCase):
    """C{Status} and C{Peers}: who the node is and whom it knows."""

    def setUp(self):
        self.node = FakeNode()
        self.node.table = FakeTable(
            [contact(THIRD_ID, "127.0.0.7", 7402), contact(OTHER_ID, "::1", 7403)],
            [{"index": 3, "size": 2, "replacements": 1, "lastTouched": 40.0}],
        )
        self.node.linked = [
            {"nodeId": OTHER_ID, "address": "[::1]:7403", "inbound": 1, "outbound": 2},
            {"nodeId": NODE_ID[::-1], "address": "127.0.0.8:5000", "inbound": 1, "outbound": 0},
        ]

    def test_peers(self):
        """
        Contacts and linked nodes are merged by node id and sorted by it; a contact without a
        link has no links, a linked node that is no contact has the link's address.
        """
        self.assertEqual(
            responses.peers(self.node),
            [
                {"node_id": OTHER_ID.hex(), "address": "[::1]:7403", "inbound": 1, "outbound": 2},
                {"node_id": THIRD_ID.hex(), "address": "127.0.0.7:7402", "inbound": 0, "outbound": 0},
                {"node_id": NODE_ID[::-1].hex(), "address": "127.0.0.8:5000", "inbound": 1, "outbound": 0},
            ],
        )

    def test_status(self):
        """The status: ids and addresses as text, uptime on the node's clock, link counts, peers."""
        self.node.links = (3, 2)
        self.node.startedAt = 10.0
        self.node.reactor.advance(70.5)
        status = responses.status(self.node)
        self.assertEqual(
            {key: value for key, value in status.items() if key != "peers"},
            {
                "node_id": NODE_ID.hex(), "ap_address": formatAddress(AP_ADDRESS), "kept_paths": [], "listening": "127.0.0.9:7402",
                "api": "127.0.0.9:7401", "uptime": 60.5, "links": 3, "connections": 2, "exit_addresses": [formatAddress(EXIT_ADDRESS)],
            },
        )
        self.assertEqual(status["peers"], responses.peers(self.node))

    def test_statusBeforeListening(self):
        """Before the node is started and listening, its addresses are empty and its uptime 0."""
        self.node.address = self.node.apiAddress = None
        status = responses.status(self.node)
        self.assertEqual((status["listening"], status["api"], status["uptime"]), ("", "", 0.0))

    def test_routing(self):
        """The routing table: buckets with their idle time, lookups, and records stored."""
        self.node.reactor.advance(100)
        self.node.lookups = (4, 17)
        self.node.stored = {b"a": b"1", b"b": b"2"}
        self.assertEqual(
            responses.routing(self.node),
            {
                "contacts": responses.peers(self.node),
                "buckets": [{"index": 3, "size": 2, "replacements": 1, "idle": 60.0}],
                "lookups": 4,
                "lookup_requests": 17,
                "stored": 2,
            },
        )


class PathTests(SynchronousTestCase):
    """C{PathBuild}, C{PathList} and C{RouteLookup}."""

    def test_builtEntryPath(self):
        """An entry path: its kind, AP-address, X-node ids, phases in order and their sum."""
        built = responses.builtPath(fakePath(phases={"plan": 0.25, "round1": 0.5, "link": 0.125}))
        self.assertEqual(
            built,
            {
                "kind": "entry",
                "ap_address": formatAddress(AP_ADDRESS),
                "nodes": [OTHER_ID.hex(), THIRD_ID.hex()],
                "phases": [{"name": "plan", "seconds": 0.25}, {"name": "round1", "seconds": 0.5}, {"name": "link", "seconds": 0.125}],
                "seconds": 0.875,
            },
        )

    def test_builtExitPath(self):
        """An exit path has no AP-address: it is empty."""
        self.assertEqual(responses.builtPath(fakePath(kind="exit", apAddress=bytes(16)))["ap_address"], "")

    def test_pathList(self):
        """The paths owned: kind, AP-address, x0's address, age on the node's clock, X-nodes."""
        node = FakeNode()
        node.paths = [fakePath(builtAt=5.0), fakePath(kind="exit", apAddress=bytes(16), nodes=[OTHER_ID] * 3, builtAt=20.0)]
        node.reactor.advance(30)
        self.assertEqual(
            responses.pathList(node),
            {
                "paths": [
                    {"kind": "entry", "ap_address": formatAddress(AP_ADDRESS), "x0": "127.0.0.5:7402", "age": 25.0, "length": 2, "nodes": [r.nodeId.hex() for r in node.paths[0].nodes]},
                    {"kind": "exit", "ap_address": "", "x0": "127.0.0.5:7402", "age": 10.0, "length": 3, "nodes": [r.nodeId.hex() for r in node.paths[1].nodes]},
                ]
            },
        )

    def test_route(self):
        """A routing entry found: its version, expiry and entry nodes."""
        record = SimpleNamespace(sequence=7, expires=1234, entryNodes=[contact(OTHER_ID, "::1", 7402)])
        self.assertEqual(
            responses.route(record),
            {"found": True, "sequence": 7, "expires": 1234, "entry_nodes": [{"node_id": OTHER_ID.hex(), "address": "[::1]:7402"}]},
        )

    def test_noRoute(self):
        """No routing entry: not found, and zeros."""
        self.assertEqual(responses.route(None), {"found": False, "sequence": 0, "expires": 0, "entry_nodes": []})


class TunnelTests(SynchronousTestCase):
    """C{TunnelList} and C{TunStatus}."""

    def test_tunnelList(self):
        """The tunnels owned: direction, the far AP-address once known, age and bytes; how many carried."""
        node = FakeNode()
        node.tunnels = [fakeTunnel(sent=10, received=20, openedAt=1.0), fakeTunnel(outbound=False, peer=None, openedAt=3.0)]
        node.carried = 4
        node.reactor.advance(4)
        self.assertEqual(
            responses.tunnelList(node),
            {
                "ap_address": formatAddress(AP_ADDRESS),
                "tunnels": [
                    {"direction": "out", "peer": formatAddress(FAR_AP_ADDRESS), "age": 3.0, "sent": 10, "received": 20},
                    {"direction": "in", "peer": "", "age": 1.0, "sent": 0, "received": 0},
                ],
                "carried": 4,
                "exit_addresses": [formatAddress(EXIT_ADDRESS)],
            },
        )

    def test_noTun(self):
        """Without a tun device: no device name, no tunnels, no counts."""
        self.assertEqual(
            responses.tunStatus(FakeNode()),
            {"device": "", "ap_address": formatAddress(AP_ADDRESS), "exit_addresses": [formatAddress(EXIT_ADDRESS)], "tunnels": 0, "counts": []},
        )

    def test_tun(self):
        """With one: its name, its packet tunnels, and its counts sorted by event."""
        node = FakeNode()
        node.device = SimpleNamespace(name="phantom0")
        node.router = SimpleNamespace(tunnels={1: None, 2: None}, counts={"to device": 5, "from device": 7})
        self.assertEqual(
            responses.tunStatus(node),
            {
                "device": "phantom0",
                "ap_address": formatAddress(AP_ADDRESS),
                "exit_addresses": [formatAddress(EXIT_ADDRESS)],
                "tunnels": 2,
                "counts": [{"event": "from device", "packets": 7}, {"event": "to device", "packets": 5}],
            },
        )
