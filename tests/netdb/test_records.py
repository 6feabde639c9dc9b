"""Records and the record store: what is accepted, what is refused, and what the schemas allow."""

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact, addressBytes, hostOf
from phantom.identity import Identity
from phantom.netdb.records import MAX_CLOCK_SKEW, NODE_RECORD_LIFETIME, InvalidRecord, NodeRecord, RoutingEntry, parseFound, parseRecord, routeKey
from phantom.netdb.storage import STORER_OVERHEAD, RecordStore, entryCost
from phantom.wire import ProtocolError, dht as wire, parseStrict
from phantom.wire.dht import MAX_VALUE, Table
from tests.properties import assertCanonicalOrRejected, mutated

NOW = 1_800_000_000
IDENTITY = Identity.generate()
ROUTING_KEY = ed25519.Ed25519PrivateKey.generate()
ENTRY = Contact("127.0.0.9", 7402, IDENTITY.nodeId)


def nodeRecord(timestamp=NOW, identity=IDENTITY, host="127.0.0.2"):
    return NodeRecord.create(identity, host, 7402, timestamp)


def routingEntry(sequence=1, expires=NOW + 3600, key=ROUTING_KEY, entryNodes=(ENTRY,)):
    return RoutingEntry.create(key, sequence, expires, entryNodes, NOW)


def mutate(data, position, bit):
    data = bytearray(data)
    data[position % len(data)] ^= 1 << bit
    return bytes(data)


class NodeRecordTests(SynchronousTestCase):
    """Node records: signed by the node, stored under its id."""

    def test_roundTrip(self):
        """A record parses back to what it says."""
        record = parseRecord(Table.NODE, IDENTITY.nodeId, nodeRecord().encoded, NOW)
        self.assertEqual((record.host, record.port, record.nodeId), ("127.0.0.2", 7402, IDENTITY.nodeId))
        self.assertEqual(record.pathBuildingKey, IDENTITY.pathBuildingKey.public_key().public_bytes_raw())

    def test_ipv6(self):
        """IPv6 addresses travel as they are, IPv4 ones mapped."""
        self.assertEqual(nodeRecord(host="fd00::7").host, "fd00::7")
        self.assertEqual(hostOf(addressBytes("10.1.2.3")), "10.1.2.3")

    def test_wrongKey(self):
        """A record stored under another node's id is refused."""
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, Identity.generate().nodeId, nodeRecord().encoded, NOW)

    @given(st.integers(0, 10_000), st.integers(0, 7))
    def test_anyBitFlipRefused(self, position, bit):
        """Any flipped bit makes the record invalid."""
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, mutate(nodeRecord().encoded, position, bit), NOW)

    def test_future(self):
        """A record from the future is refused, within the allowed clock skew accepted."""
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, nodeRecord(NOW + MAX_CLOCK_SKEW + 1).encoded, NOW)
        parseRecord(Table.NODE, IDENTITY.nodeId, nodeRecord(NOW + MAX_CLOCK_SKEW).encoded, NOW)

    def test_expired(self):
        """A record older than its lifetime is refused."""
        encoded = nodeRecord(NOW - NODE_RECORD_LIFETIME).encoded
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, encoded, NOW)

    def test_foreignSignature(self):
        """A record signed by another key than the one it carries is refused."""
        other = Identity.generate()
        forged = nodeRecord().encoded[:-64] + nodeRecord(identity=other).encoded[-64:]
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, forged, NOW)


class VerifiedRecordsTests(SynchronousTestCase):
    """Node records already checked are not checked again, but their time is."""

    def setUp(self):
        from phantom.netdb import records

        self.verified = records.VerifiedRecords(2)
        self.patch(records, "VERIFIED_NODE_RECORDS", self.verified)
        self.checks = []
        real = records.verifyWithDomain
        self.patch(records, "verifyWithDomain", lambda *args: self.checks.append(args) or real(*args))

    def test_checkedOnce(self):
        """The same bytes again, under their key or self-keyed, cost no signature check."""
        encoded = bytes(bytearray(nodeRecord().encoded))
        self.assertEqual(len(self.checks), 1)
        first = parseRecord(Table.NODE, IDENTITY.nodeId, encoded, NOW)
        self.assertIs(NodeRecord.parseSelfKeyed(bytes(bytearray(encoded)), NOW), first)
        self.assertEqual(len(self.checks), 1)

    def test_timeAndKeyStillChecked(self):
        """A record checked before is refused under another key, once expired, or from the future."""
        encoded = nodeRecord().encoded
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, Identity.generate().nodeId, encoded, NOW)
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, encoded, NOW + NODE_RECORD_LIFETIME)
        self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, encoded, NOW - MAX_CLOCK_SKEW - 1)
        self.assertRaises(InvalidRecord, NodeRecord.parseSelfKeyed, encoded, NOW + NODE_RECORD_LIFETIME)

    def test_invalidNotKept(self):
        """A badly signed record is checked, and refused, every time."""
        forged = nodeRecord().encoded[:-64] + nodeRecord(identity=Identity.generate()).encoded[-64:]
        before = len(self.checks)
        for _ in range(2):
            self.assertRaises(InvalidRecord, parseRecord, Table.NODE, IDENTITY.nodeId, forged, NOW)
        self.assertEqual(len(self.checks), before + 2)
        self.assertEqual(len(self.verified), 2)

    def test_bounded(self):
        """Beyond its size, the least recently used record is dropped and checked again when it comes back."""
        records = [nodeRecord(identity=Identity.generate()).encoded for _ in range(3)]
        self.assertEqual(len(self.verified), 2)
        parseRecord(Table.NODE, NodeRecord.parseSelfKeyed(records[2], NOW).nodeId, records[2], NOW)
        self.assertEqual(len(self.checks), 3)
        NodeRecord.parseSelfKeyed(records[0], NOW)
        self.assertEqual(len(self.checks), 4)


class RoutingEntryTests(SynchronousTestCase):
    """Routing entries: signed by the key that owns the AP-address."""

    def test_roundTrip(self):
        entry = routingEntry()
        parsed = parseRecord(Table.ROUTE, routeKey(entry.apAddress), entry.encoded, NOW)
        self.assertEqual(parsed.entryNodes, (ENTRY,))
        self.assertEqual(parsed.apAddress[:1], b"\xfd")

    @given(st.integers(0, 10_000), st.integers(0, 7))
    def test_anyBitFlipRefused(self, position, bit):
        """Any flipped bit makes the entry invalid: signature, AP-address or format."""
        entry = routingEntry()
        self.assertRaises(InvalidRecord, parseRecord, Table.ROUTE, entry.key, mutate(entry.encoded, position, bit), NOW)

    def test_keyMustOwnAddress(self):
        """An entry whose routing key does not hash to its AP-address is refused even if signed."""
        entry = routingEntry()
        body = wire.RoutingEntryBody.parse(entry.encoded[:-64])
        body.routing_key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        forged = wire.RoutingEntryBody.build(body) + entry.encoded[-64:]
        with self.assertRaises(InvalidRecord) as caught:
            parseRecord(Table.ROUTE, entry.key, forged, NOW)
        self.assertIn("does not own", str(caught.exception))

    def test_lifetime(self):
        """Expired entries and entries claiming too long a life are refused."""
        self.assertRaises(InvalidRecord, routingEntry, expires=NOW)
        self.assertRaises(InvalidRecord, routingEntry, expires=NOW + 10 * 24 * 3600)

    def test_entryNodeCount(self):
        """At least one, at most eight entry nodes."""
        self.assertRaises(Exception, routingEntry, entryNodes=())
        self.assertRaises(Exception, routingEntry, entryNodes=(ENTRY,) * 9)


class StoreTests(SynchronousTestCase):
    """The record store keeps what is valid and current, for as long as it may."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = RecordStore(self.clock, maxValueTtl=100, maxBytes=10_000)

    def test_valueTtlClamped(self):
        """Values live for their TTL, clamped to the maximum."""
        self.store.put(Table.VALUE, b"k" * 32, b"value", ttl=5000)
        self.assertEqual(self.store.remaining(Table.VALUE, b"k" * 32), 100)
        self.clock.advance(100)
        self.assertIsNone(self.store.get(Table.VALUE, b"k" * 32))
        self.assertEqual(self.store.size, 0)

    def test_tablesSeparate(self):
        """A value under a node id does not touch that node's record."""
        record = nodeRecord()
        self.store.put(Table.NODE, IDENTITY.nodeId, record.encoded)
        self.store.put(Table.VALUE, IDENTITY.nodeId, b"squatting", ttl=10)
        self.assertEqual(self.store.get(Table.NODE, IDENTITY.nodeId).encoded, record.encoded)

    def test_olderRefused(self):
        """An older node record or routing entry does not replace a newer one."""
        self.store.put(Table.NODE, IDENTITY.nodeId, nodeRecord(NOW).encoded)
        self.assertRaises(InvalidRecord, self.store.put, Table.NODE, IDENTITY.nodeId, nodeRecord(NOW - 10).encoded)
        second = routingEntry(sequence=2)
        self.store.put(Table.ROUTE, second.key, second.encoded)
        first = routingEntry(sequence=1)
        self.assertRaises(InvalidRecord, self.store.put, Table.ROUTE, first.key, first.encoded)
        self.assertEqual(self.store.get(Table.ROUTE, second.key).sequence, 2)
        third = routingEntry(sequence=3)
        self.store.put(Table.ROUTE, third.key, third.encoded)
        self.assertEqual(self.store.get(Table.ROUTE, second.key).sequence, 3)

    def test_invalidLeavesStoredAlone(self):
        """A forged record neither lands nor disturbs the stored one."""
        good = nodeRecord()
        self.store.put(Table.NODE, IDENTITY.nodeId, good.encoded)
        self.assertRaises(InvalidRecord, self.store.put, Table.NODE, IDENTITY.nodeId, mutate(nodeRecord(NOW + 1).encoded, 20, 0))
        self.assertEqual(self.store.get(Table.NODE, IDENTITY.nodeId).encoded, good.encoded)

    def test_full(self):
        """
        New keys are refused once the budget is spent; existing keys can still be updated to
        records no larger (more: L{tests.netdb.test_storage}).
        """
        for i in range(6):
            self.store.put(Table.VALUE, bytes([i]) * 32, b"x" * 1000, ttl=50)
        size = self.store.size
        self.assertRaises(InvalidRecord, self.store.put, Table.VALUE, b"\xff" * 32, b"x" * 1000, ttl=50)
        self.store.put(Table.VALUE, bytes([0]) * 32, b"y" * 1000, ttl=50)
        self.assertEqual(self.store.size, size)

    def test_expire(self):
        """Expiry drops records whose time has come and keeps the others."""
        self.store.put(Table.VALUE, b"a" * 32, b"1", ttl=10)
        self.store.put(Table.VALUE, b"b" * 32, b"2", ttl=20)
        self.clock.advance(15)
        self.assertEqual(self.store.expire(), 1)
        self.assertEqual([r.key for r in self.store.records(Table.VALUE)], [b"b" * 32])

    def test_valueSize(self):
        """Empty and oversized values are refused."""
        self.assertRaises(InvalidRecord, self.store.put, Table.VALUE, b"k" * 32, b"", ttl=10)
        self.assertRaises(InvalidRecord, self.store.put, Table.VALUE, b"k" * 32, b"x" * (MAX_VALUE + 1), ttl=10)


def normal(message):
    """A parsed message as plain values, whichever parser made it."""

    def plain(value):
        if hasattr(value, "items"):
            return {k: plain(v) for k, v in value.items() if not k.startswith("_")}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str):
            return int(value)
        return value

    return plain(message)


contacts = st.builds(
    dict, node_id=st.binary(min_size=32, max_size=32), address=st.binary(min_size=16, max_size=16), port=st.integers(1, 65535)
)
requestIds = st.binary(min_size=8, max_size=8)
keys = st.binary(min_size=32, max_size=32)
ports = st.integers(0, 65535)
tables = st.sampled_from([t.name for t in Table])
values = st.binary(min_size=1, max_size=300)
rpcs = st.one_of(
    st.builds(lambda r, p: dict(kind="PING", request_id=r, content=dict(port=p)), requestIds, ports),
    st.builds(lambda r: dict(kind="PONG", request_id=r, content=None), requestIds),
    st.builds(lambda r, p, t: dict(kind="FIND_NODE", request_id=r, content=dict(port=p, target=t)), requestIds, ports, keys),
    st.builds(lambda r, c: dict(kind="NODES", request_id=r, content=dict(contacts=c)), requestIds, st.lists(contacts, max_size=20)),
    st.builds(lambda r, p, t, k: dict(kind="FIND_VALUE", request_id=r, content=dict(port=p, table=t, key=k)), requestIds, ports, tables, keys),
    st.builds(lambda r, v: dict(kind="VALUE", request_id=r, content=dict(value=v)), requestIds, values),
    st.builds(
        lambda r, p, t, k, ttl, v: dict(kind="STORE", request_id=r, content=dict(port=p, table=t, key=k, ttl=ttl, value=v)),
        requestIds, ports, tables, keys, st.integers(0, 2**32 - 1), values,
    ),
    st.builds(lambda r, a: dict(kind="STORED", request_id=r, content=dict(accepted=a)), requestIds, st.sampled_from([0, 1])),
    st.builds(lambda r, p: dict(kind="SAMPLE", request_id=r, content=dict(port=p)), requestIds, ports),
).map(wire.Rpc.build)


routeSets = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=wire.MAX_ROUTES).map(lambda entries: wire.RouteSet.build({"entries": entries}))


class RouteSetTests(SynchronousTestCase):
    """The routing entries of an AP-address, one per entry node, as stored, served and found."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = RecordStore(self.clock)

    def entryOf(self, sequence, index, others=()):
        """An entry of entry node C{index} that also names the entry nodes C{others}."""
        return routingEntry(sequence, entryNodes=[Contact(f"127.0.0.{i + 10}", 7402, bytes([i]) * 32) for i in (index, *others)])

    def test_oneEntryPerEntryNode(self):
        """Entries of two entry nodes are both kept, the highest sequence first; each entry node's is replaced only by a newer one."""
        a1, b2 = self.entryOf(1, 0), self.entryOf(2, 1, [0])
        for entry in (a1, b2):
            self.store.put(Table.ROUTE, entry.key, entry.encoded)
        found = self.store.get(Table.ROUTE, a1.key)
        self.assertEqual(found.entries, (b2, a1))
        self.assertEqual((found.sequence, [node.host for node in found.entryNodes]), (2, ["127.0.0.11", "127.0.0.10"]))
        a3 = self.entryOf(3, 0, [1])
        self.store.put(Table.ROUTE, a3.key, a3.encoded)
        self.assertEqual(self.store.get(Table.ROUTE, a1.key).entries, (a3, b2))
        self.assertRaises(InvalidRecord, self.store.put, Table.ROUTE, a1.key, a1.encoded)
        again = routingEntry(3, entryNodes=(Contact("127.0.0.99", 7402, bytes(32)),))
        self.assertRaises(InvalidRecord, self.store.put, Table.ROUTE, again.key, again.encoded)
        self.store.put(Table.ROUTE, a3.key, a3.encoded)
        self.assertEqual(len(self.store), 2)

    def test_fullSetGivesUpItsOldest(self):
        """A full set takes a new entry node's entry in place of its oldest, if it is newer."""
        for index in range(wire.MAX_ROUTES):
            entry = self.entryOf(10 + index, index, range(index))
            self.store.put(Table.ROUTE, entry.key, entry.encoded)
        older = self.entryOf(5, 100)
        self.assertRaises(InvalidRecord, self.store.put, Table.ROUTE, older.key, older.encoded)
        newer = self.entryOf(50, 100, range(1, wire.MAX_ROUTES))
        self.store.put(Table.ROUTE, newer.key, newer.encoded)
        found = self.store.get(Table.ROUTE, newer.key)
        self.assertEqual(len(found.entries), wire.MAX_ROUTES)
        self.assertEqual((found.entries[0], min(entry.sequence for entry in found.entries)), (newer, 11))
        self.assertEqual(self.store.size, sum(entryCost(entry) for entry in found.entries) + STORER_OVERHEAD)

    def test_expiredLeaveTheSet(self):
        """Each entry expires on its own; a set with none left is gone."""
        short = routingEntry(1, expires=NOW + 10, entryNodes=(Contact("127.0.0.10", 7402, bytes(32)),))
        long = self.entryOf(2, 1)
        for entry in (short, long):
            self.store.put(Table.ROUTE, entry.key, entry.encoded)
        self.clock.advance(10)
        self.assertEqual(self.store.get(Table.ROUTE, long.key).entries, (long,))
        self.clock.advance(3600)
        self.assertIsNone(self.store.get(Table.ROUTE, long.key))
        self.assertEqual((len(self.store), self.store.size), (0, 0))

    def test_parse(self):
        """A served set is believed only whole: every entry valid, for its key, one per entry node."""
        a, b = self.entryOf(1, 0), self.entryOf(2, 1, [0])
        served = wire.RouteSet.build({"entries": [a.encoded, b.encoded]})
        self.assertEqual(parseFound(Table.ROUTE, a.key, served, NOW).entries, (b, a))
        for bad in (
            wire.RouteSet.build({"entries": [a.encoded, mutate(b.encoded, 40, 0)]}),
            wire.RouteSet.build({"entries": [a.encoded, self.entryOf(3, 0).encoded]}),
            a.encoded,
            b"",
        ):
            self.assertRaises(InvalidRecord, parseFound, Table.ROUTE, a.key, bad, NOW)
        self.assertRaises(InvalidRecord, parseFound, Table.ROUTE, bytes(32), served, NOW)

    @given(st.integers(0, 1200), st.integers(0, 7))
    def test_anyBitFlipRefused(self, position, bit):
        """Any flipped bit of a served set makes it unbelievable."""
        a, b = self.entryOf(1, 0), self.entryOf(2, 1)
        served = wire.RouteSet.build({"entries": [a.encoded, b.encoded]})
        self.assertRaises(InvalidRecord, parseFound, Table.ROUTE, a.key, mutate(served, position, bit), NOW)


    def test_staleLeftOut(self):
        """
        The newest entry names every entry node of its owner: an older entry of one it does
        not name is stale (its entry path went) and left out, and so is any node only older
        entries name (issue 13).
        """
        a1, b2 = self.entryOf(1, 0, [1]), self.entryOf(2, 1, [0])
        for entry in (a1, b2):
            self.store.put(Table.ROUTE, entry.key, entry.encoded)
        self.assertEqual([node.host for node in self.store.get(Table.ROUTE, a1.key).entryNodes], ["127.0.0.11", "127.0.0.10"])
        c3 = self.entryOf(3, 2, [1])
        self.store.put(Table.ROUTE, c3.key, c3.encoded)
        found = self.store.get(Table.ROUTE, a1.key)
        self.assertEqual(found.entries, (c3, b2))
        self.assertEqual([node.host for node in found.entryNodes], ["127.0.0.12", "127.0.0.11"])
        served = wire.RouteSet.build({"entries": [a1.encoded, b2.encoded, c3.encoded]})
        self.assertEqual(parseFound(Table.ROUTE, a1.key, served, NOW).entries, (c3, b2))


def assertFieldsAsAttributes(testCase, message):
    """Every field of a decoded message, of its content and of each contact in it reads the same as an attribute and as an item."""
    parts = [message] + ([message.content] if message.content is not None else [])
    parts += list(message.content.get("contacts", [])) if message.content is not None else []
    for part in parts:
        for name, value in part.items():
            testCase.assertIs(getattr(part, name), value)


class SchemaTests(SynchronousTestCase):
    """Every DHT schema accepts exactly its canonical messages."""

    @given(routeSets)
    def test_routeSetRoundTrip(self, encoded):
        self.assertEqual(wire.RouteSet.build(parseStrict(wire.RouteSet, encoded)), encoded)

    @given(mutated(routeSets))
    def test_routeSetMutations(self, data):
        """A mutated route set is refused with ProtocolError or is itself canonical."""
        assertCanonicalOrRejected(self, wire.RouteSet, data)

    @given(rpcs)
    def test_rpcRoundTrip(self, message):
        self.assertEqual(wire.Rpc.build(parseStrict(wire.Rpc, message)), message)

    @given(mutated(rpcs))
    def test_rpcMutations(self, data):
        """A mutated message is refused with ProtocolError or is itself canonical."""
        assertCanonicalOrRejected(self, wire.Rpc, data)

    @given(st.integers(0, 400), st.integers(0, 7), st.sampled_from(["node", "route"]))
    def test_recordSchemaMutations(self, position, bit, which):
        """Mutated records are refused or canonical at the schema level."""
        schema, encoded = (wire.NodeRecord, nodeRecord().encoded) if which == "node" else (wire.RoutingEntry, routingEntry().encoded)
        assertCanonicalOrRejected(self, schema, mutate(encoded, position, bit))

    @given(rpcs)
    def test_fastPathAgreesOnValid(self, message):
        """decodeRpc reads every valid message as the schema does; encodeRpc rebuilds it."""
        parsed = parseStrict(wire.Rpc, message)
        fast = wire.decodeRpc(message)
        self.assertEqual(normal(fast), normal(parsed))
        self.assertIs(type(fast.kind), wire.RpcKind)
        assertFieldsAsAttributes(self, fast)
        content = None if fast.content is None else dict(fast.content)
        self.assertEqual(wire.encodeRpc(fast.kind, fast.request_id, content), message)

    @given(mutated(rpcs))
    def test_fastPathAgreesOnMutations(self, data):
        """decodeRpc refuses exactly what the schema refuses, and reads the rest alike."""
        try:
            parsed = parseStrict(wire.Rpc, data)
        except ProtocolError:
            self.assertRaises(ProtocolError, wire.decodeRpc, data)
            return
        fast = wire.decodeRpc(data)
        self.assertEqual(normal(fast), normal(parsed))
        assertFieldsAsAttributes(self, fast)

    @given(st.integers(-1, 300))
    def test_asTable(self, number):
        """asTable gives the Table of a number or member exactly as Table() does, and refuses the rest alike."""
        try:
            expected = Table(number)
        except ValueError:
            self.assertRaises(ValueError, wire.asTable, number)
            return
        self.assertIs(wire.asTable(number), expected)
        self.assertIs(wire.asTable(expected), expected)

    def test_fastPathBoundaries(self):
        """At every boundary mutation rarely reaches, both parsers refuse alike."""
        rid = b"r" * 8
        contact = b"n" * 32 + b"a" * 16
        cases = {
            "contact on port 0": bytes([4]) + rid + b"\x01" + contact + b"\x00\x00",
            "21 contacts": bytes([4]) + rid + b"\x15" + (contact + b"\x00\x01") * 21,
            "table 0": bytes([5]) + rid + b"\x00\x01" + b"\x00" + b"k" * 32,
            "table 4": bytes([5]) + rid + b"\x00\x01" + b"\x04" + b"k" * 32,
            "store into table 0": bytes([7]) + rid + b"\x00\x01\x00" + b"k" * 32 + b"\x00\x00\x00\x01v",
            "store without value": bytes([7]) + rid + b"\x00\x01\x03" + b"k" * 32 + b"\x00\x00\x00\x01",
            "stored 2": bytes([8]) + rid + b"\x02",
            "empty value": bytes([6]) + rid,
            "kind 0": bytes([0]) + rid,
            "kind 10": bytes([10]) + rid + b"\x00\x01",
            "kind 255": bytes([255]) + rid,
            "short id": bytes([2]) + b"r" * 7,
        }
        for name, data in cases.items():
            self.assertRaises(ProtocolError, parseStrict, wire.Rpc, data)
            self.assertRaises(ProtocolError, wire.decodeRpc, data)
        largest = bytes([6]) + rid + b"v" * MAX_VALUE
        self.assertEqual(normal(wire.decodeRpc(largest)), normal(parseStrict(wire.Rpc, largest)))

    def test_fastEncodeRefusesWhatTheSchemaRefuses(self):
        """Out-of-range fields are refused when building, as the schema does."""
        for kind, content in [
            (wire.RpcKind.VALUE, {"value": b""}),
            (wire.RpcKind.VALUE, {"value": b"x" * (MAX_VALUE + 1)}),
            (wire.RpcKind.NODES, {"contacts": [{"node_id": b"n" * 32, "address": b"a" * 16, "port": 0}]}),
            (wire.RpcKind.FIND_NODE, {"port": 1, "target": b"short"}),
            (wire.RpcKind.STORED, {"accepted": 2}),
        ]:
            self.assertRaises(ValueError, wire.encodeRpc, kind, b"r" * 8, content)

    def test_emptyContactsAndMaximum(self):
        """NODES carries 0 to 20 contacts; 21 is malformed."""
        contact = dict(node_id=b"n" * 32, address=b"a" * 16, port=1)
        wire.Rpc.build(dict(kind="NODES", request_id=b"r" * 8, content=dict(contacts=[])))
        body = wire.Rpc.build(dict(kind="NODES", request_id=b"r" * 8, content=dict(contacts=[contact] * 20)))
        tooMany = body[:9] + bytes([21]) + body[10:] + body[10:60]
        self.assertRaises(ProtocolError, parseStrict, wire.Rpc, tooMany)
