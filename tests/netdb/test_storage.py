"""
The record store's budget: every entry charged at what it costs in memory (measured here with
tracemalloc), updates included; a share per storing peer; a reserve for the node records and
routing entries a node is responsible for. And what a node does when its store is full.
"""

import gc
import os
import tracemalloc
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.identity import Identity
from phantom.netdb import records
from phantom.netdb.records import InvalidRecord, NodeRecord, RoutingEntry
from phantom.netdb import storage
from phantom.netdb.storage import RecordStore
from phantom.wire.dht import MAX_VALUE, RpcKind, Table, decodeRpc, encodeRpc
from tests.netdb.helpers import FAST_DHT, MemoryDht
from tests.netdb.test_adversarial import closestIdentity

NOW = 1_800_000_000
IDENTITIES = [Identity.generate() for _ in range(3)]


def nodeRecord(identity, timestamp=NOW):
    return NodeRecord.create(identity, "10.0.0.1", 7402, timestamp)


def routingEntry(entryNodes=8, sequence=1):
    nodes = [Contact(f"10.9.{i}.{i}", 7402, os.urandom(32)) for i in range(entryNodes)]
    return RoutingEntry.create(ed25519.Ed25519PrivateKey.generate(), sequence, NOW + 3600, nodes, NOW)


def fresh(data):
    """A copy of C{data} nobody else holds, as a record arrives off the wire."""
    return bytes(bytearray(data))


def made(table, count, entryNodes=8):
    """C{count} encoded records of C{table} as C{(key, encoded)}, each with a key of its own."""
    if table == Table.VALUE:
        return [(os.urandom(32), b"v") for _ in range(count)]
    if table == Table.NODE:
        identities = [Identity.generate() for _ in range(count)]
        return [(identity.nodeId, nodeRecord(identity).encoded) for identity in identities]
    entries = [routingEntry(entryNodes) for _ in range(count)]
    return [(entry.key, entry.encoded) for entry in entries]


def measure(store, table, inputs, storers=False):
    """
    Store C{inputs} (fresh copies of them, each by a storer of its own if C{storers}) and
    measure the memory they take.

    @return: the memory traced per entry, and the bytes the store charged per entry.
    """
    records._contact.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        copies = [(fresh(key), fresh(encoded), fresh(os.urandom(32)) if storers else None) for key, encoded in inputs]
        before = store.size
        for key, encoded, storer in copies:
            store.put(table, key, encoded, 600, storer=storer)
        del copies, key, encoded, storer
        # The contacts cache is bounded on its own; what is left is what the store holds.
        records._contact.cache_clear()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used / len(inputs), (store.size - before) / len(inputs)


def bigStore(clock):
    return RecordStore(clock, maxBytes=1 << 40)


class StoreMemoryTests(SynchronousTestCase):
    """
    The store charges each entry at least the memory it takes (and not much more): the
    measurements behind L{phantom.netdb.storage.ENTRY_OVERHEAD}.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        # The cache of checked node records is bounded on its own: kept out, as the contacts cache.
        self.patch(records, "VERIFIED_NODE_RECORDS", records.VerifiedRecords(0))
        # construct and the signature checks allocate what they keep on first use: not the store's.
        warm = bigStore(self.clock)
        for table, (key, encoded) in ((Table.VALUE, made(Table.VALUE, 1)[0]), (Table.NODE, made(Table.NODE, 1)[0]), (Table.ROUTE, made(Table.ROUTE, 1)[0])):
            warm.put(table, key, encoded, 60)

    def assertCharged(self, table, count, entryNodes=8, storers=False):
        used, charged = measure(bigStore(self.clock), table, made(table, count, entryNodes), storers)
        what = f"{table.name}{f' with {entryNodes} entry nodes' if table == Table.ROUTE else ''}{', storers of their own' if storers else ''}"
        figures = f"{what}: {used:.0f} bytes traced per entry, {charged:.0f} charged"
        self.assertGreaterEqual(charged, used, figures)
        self.assertLessEqual(charged, used * 1.3, figures)

    def test_values(self):
        """One-byte values, the cheapest entries there are: several hundred bytes each."""
        self.assertCharged(Table.VALUE, 4000)

    def test_valuesDistinctStorers(self):
        """Each value stored by a peer of its own: the storers' accounts are charged too."""
        self.assertCharged(Table.VALUE, 4000, storers=True)

    def test_nodeRecords(self):
        self.assertCharged(Table.NODE, 300)

    def test_routingEntries(self):
        """Routing entries with eight entry nodes (the most) and with one."""
        self.assertCharged(Table.ROUTE, 200, entryNodes=8)
        self.assertCharged(Table.ROUTE, 200, entryNodes=1)

    def test_budgetBoundsMemory(self):
        """
        A store filled with 1-byte values until it refuses them takes no more memory than its
        budget (it used to count value bytes only: 1-byte values took 400 times their count).
        """
        store = RecordStore(self.clock, maxBytes=256 * 1024)
        inputs = made(Table.VALUE, 4096)
        records._contact.cache_clear()
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for key, value in inputs:
                try:
                    store.put(Table.VALUE, fresh(key), fresh(value), 600)
                except InvalidRecord:
                    break
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        self.assertLess(len(store), len(inputs))
        self.assertLessEqual(used, store.maxBytes)


class StoreBudgetTests(SynchronousTestCase):
    """What the budget refuses and what it still takes."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)

    def test_growingUpdateCounted(self):
        """Updating a key to a larger value is charged like a new one: past the budget it is refused."""
        store = RecordStore(self.clock, maxBytes=2000)
        store.put(Table.VALUE, b"k" * 32, b"x", ttl=60)
        self.assertRaises(InvalidRecord, store.put, Table.VALUE, b"k" * 32, b"x" * MAX_VALUE, ttl=60)
        self.assertEqual(store.get(Table.VALUE, b"k" * 32).encoded, b"x")
        self.assertLessEqual(store.size, 2000)
        store.put(Table.VALUE, b"k" * 32, b"y" * 1000, ttl=60)
        self.assertEqual(store.size, storage.entryCost(store.get(Table.VALUE, b"k" * 32)) + storage.STORER_OVERHEAD)

    def test_shrinkingUpdateWhenFull(self):
        """A full store still takes an update that makes a record no larger."""
        store = RecordStore(self.clock, maxBytes=2800)
        store.put(Table.VALUE, b"a" * 32, b"x" * 1000, ttl=60)
        self.assertRaises(storage.StoreFull, store.put, Table.VALUE, b"b" * 32, b"x" * 1000, ttl=60)
        store.put(Table.VALUE, b"a" * 32, b"y" * 10, ttl=60)
        store.put(Table.VALUE, b"b" * 32, b"x" * 1000, ttl=60)

    def test_peerShare(self):
        """A storer that spent its share is refused; another storer is still served."""
        store = RecordStore(self.clock, maxBytes=100_000, peerShare=10_000)
        hostile, honest = b"h" * 32, b"w" * 32
        stored = 0
        with self.assertRaises(storage.StoreFull) as refused:
            while True:
                store.put(Table.VALUE, os.urandom(32), b"x", ttl=60, storer=hostile)
                stored += 1
        self.assertIn("share", str(refused.exception))
        self.assertLessEqual(store.usage(hostile), 10_000)
        self.assertGreater(stored, 10)
        store.put(Table.VALUE, b"k" * 32, b"x" * 5000, ttl=60, storer=honest)
        self.assertRaises(storage.StoreFull, store.put, Table.VALUE, b"k" * 32, b"x" * 20_000, ttl=60, storer=honest)

    def test_overwriteMovesTheCharge(self):
        """A value overwritten by another storer is charged to it; the same bytes again are not."""
        store = RecordStore(self.clock, maxBytes=100_000, peerShare=10_000)
        first, second = b"1" * 32, b"2" * 32
        store.put(Table.VALUE, b"k" * 32, b"x" * 100, ttl=60, storer=first)
        store.put(Table.VALUE, b"k" * 32, b"x" * 100, ttl=60, storer=second)
        self.assertEqual((store.usage(first) > 0, store.usage(second)), (True, 0))
        store.put(Table.VALUE, b"k" * 32, b"y" * 100, ttl=60, storer=second)
        self.assertEqual((store.usage(first), store.usage(second) > 0), (0, True))
        store.expire()
        self.clock.advance(60)
        store.expire()
        self.assertEqual((store.size, store.usage(second)), (0, 0))

    def test_reserve(self):
        """
        Past C{maxBytes - reserve} only the records C{reserved} names are taken, up to
        C{maxBytes}: a node record it is responsible for, not a value or another node's record.
        """
        near, far, third = IDENTITIES
        reserved = lambda table, key: table == Table.NODE and key != far.nodeId
        store = RecordStore(self.clock, maxBytes=10_000, reserve=4000, reserved=reserved)
        with self.assertRaises(storage.StoreFull):
            while True:
                store.put(Table.VALUE, os.urandom(32), b"x" * 100, ttl=60)
        self.assertRaises(storage.StoreFull, store.put, Table.NODE, far.nodeId, nodeRecord(far).encoded)
        store.put(Table.NODE, near.nodeId, nodeRecord(near).encoded)
        store.put(Table.NODE, third.nodeId, nodeRecord(third).encoded)
        self.assertLessEqual(store.size, 10_000)

    def test_reserveNotPastTheShare(self):
        """A storer's share holds in the reserve too."""
        near = IDENTITIES[0]
        store = RecordStore(self.clock, maxBytes=100_000, peerShare=1500, reserve=50_000, reserved=lambda table, key: True)
        store.put(Table.VALUE, b"k" * 32, b"x" * 500, ttl=60, storer=b"h" * 32)
        self.assertRaises(storage.StoreFull, store.put, Table.NODE, near.nodeId, nodeRecord(near).encoded, storer=b"h" * 32)

    def test_reserveMustFit(self):
        self.assertRaises(ValueError, RecordStore, self.clock, maxBytes=1000, reserve=1000)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["put", "advance", "expire"]),
                st.integers(0, 7),  # key
                st.integers(0, 3),  # storer
                st.integers(1, 3000),  # value size
                st.integers(1, 100),  # ttl or seconds
            ),
            max_size=60,
        )
    )
    def test_accountsAlwaysAddUp(self, steps):
        """
        Whatever is put, overwritten, refused or expired: the store's size is the cost of its
        live entries and their storers', within the budget; each storer within its share.
        """
        clock = Clock()
        clock.advance(NOW)
        store = RecordStore(clock, maxBytes=12_000, peerShare=5000, reserve=2000, reserved=lambda table, key: key[0] % 2 == 0)
        storers = [None, b"a" * 32, b"b" * 32, b"c" * 32]
        for action, key, storer, size, number in steps:
            if action == "put":
                try:
                    store.put(Table.VALUE, bytes([key]) * 32, b"v" * size, ttl=number, storer=storers[storer])
                except storage.StoreFull:
                    pass
            elif action == "advance":
                clock.advance(number)
            else:
                store.expire()
            held = store._records.values()
            owners = {stored.storer for stored in held}
            self.assertEqual(store.size, sum(stored.cost for stored in held) + storage.STORER_OVERHEAD * len(owners))
            self.assertLessEqual(store.size, store.maxBytes)
            for owner in storers:
                expected = sum(stored.cost for stored in held if stored.storer == owner)
                self.assertEqual(store.usage(owner), expected + storage.STORER_OVERHEAD if expected else 0)
                self.assertLessEqual(store.usage(owner), store.peerShare)


def storeRequest(table, key, value, ttl=600):
    return {"port": 0, "table": table, "key": key, "ttl": ttl, "value": value}


class FullStoreTests(SynchronousTestCase):
    """Nodes whose store is full, in memory on a driven clock."""

    def test_putReplicatesWhenLocalStoreFull(self):
        """
        A module-API PUT through a node whose store is full still reaches the closest nodes, and
        a GET through any other node finds the value.
        """
        dht = MemoryDht(self)
        nodes = dht.start(12)
        full = nodes[3]
        full.store.maxBytes = full.store.size
        key, value = os.urandom(32), b"put through a full node"
        accepted = dht.run(full.put(key, value, ttl=600, replication=3))
        self.assertIsNone(full.store.get(Table.VALUE, key))
        self.assertGreaterEqual(accepted, full.settings.minReplication)
        self.assertFalse(accepted.here)
        self.assertEqual(dht.run(nodes[7].get(key)), value)

    def test_republishedWhenNotHeld(self):
        """A value put through a full node is republished by it to the closest nodes all the same."""
        dht = MemoryDht(self)
        nodes = dht.start(12)
        full = nodes[3]
        full.store.maxBytes = full.store.size
        key = os.urandom(32)
        dht.run(full.put(key, b"kept alive", ttl=600, replication=3))
        holders = [node for node in nodes if node.store.get(Table.VALUE, key) is not None]
        for node in holders:
            node.store._drop((Table.VALUE, key, b""))
        dht.run(full.republish())
        self.assertEqual([node for node in nodes if node.store.get(Table.VALUE, key) is not None], holders)

    def test_putStoredNowhere(self):
        """A PUT that no node stored, not even this one, is reported: a warning, and 0 accepted."""
        dht = MemoryDht(self)
        alone = dht.start(1)[0]
        alone.store.maxBytes = alone.store.size
        with capturedLogs() as events:
            accepted = dht.run(alone.put(b"k" * 32, b"nowhere", ttl=600, replication=3))
        self.assertEqual((accepted, accepted.here), (0, False))
        self.assertEqual([formatEvent(e) for e in events if e["log_level"] == LogLevel.warn], [
            f"module API value for {(b'k' * 32).hex()} stored on no node: this store is full and no other node took it"
        ])

    def test_hostileIdentityHitsItsShare(self):
        """
        One identity STOREing value after value is refused once its share is spent; another
        peer's STORE to the same node is still accepted, and so is the hostile node's own
        record when the general part is full.
        """
        settings = replace(FAST_DHT, maxStoreBytes=200_000, maxStoreBytesPerPeer=20_000, storeReserveBytes=50_000)
        dht = MemoryDht(self, settings)
        nodes = dht.start(5)
        victim, hostile, honest = nodes[1], nodes[2], nodes[3]
        target = Contact(*victim.address, victim.nodeId)
        accepted = 0
        while True:
            kind, content = dht.run(hostile.rpc.call(target, RpcKind.STORE, storeRequest("VALUE", os.urandom(32), b"x")))
            if not content.accepted:
                break
            accepted += 1
        self.assertLessEqual(victim.store.usage(hostile.nodeId), 20_000)
        self.assertGreater(accepted, 20)
        kind, content = dht.run(honest.rpc.call(target, RpcKind.STORE, storeRequest("VALUE", os.urandom(32), b"y" * 1000)))
        self.assertEqual(content.accepted, 1)
        self.assertEqual(dht.run(victim.rpc.channels[hostile.nodeId].request(RpcKind.PING, {"port": 0}))[0], RpcKind.PONG)

    def test_fullStoreKeepsNeighbourRecords(self):
        """
        A store whose general part is full (filled by many storers) refuses values and the
        node records of far nodes, and still takes the node records of the nodes closest to it.
        """
        settings = replace(FAST_DHT, maxStoreBytes=300_000, maxStoreBytesPerPeer=300_000, storeReserveBytes=100_000)
        dht = MemoryDht(self, settings)
        nodes = dht.start(30)
        victim, filler, sender = nodes[5], nodes[6], nodes[7]
        target = Contact(*victim.address, victim.nodeId)
        for size in (1000, 1):
            # Large values first, then the smallest, so that what is left is less than any record costs.
            while dht.run(filler.rpc.call(target, RpcKind.STORE, storeRequest("VALUE", os.urandom(32), b"x" * size)))[1].accepted:
                pass
        self.assertGreater(victim.store.size, 150_000)
        self.assertLess(victim.store.size, 200_000)
        near = closestIdentity(victim.nodeId, [node for node in nodes if node is not victim])
        far = farIdentity(victim)
        for identity, stored in ((far, 0), (near, 1)):
            record = nodeRecord(identity, int(dht.clock.seconds()))
            kind, content = dht.run(sender.rpc.call(target, RpcKind.STORE, storeRequest("NODE", identity.nodeId, record.encoded)))
            self.assertEqual(content.accepted, stored)
        self.assertIsNotNone(victim.store.get(Table.NODE, near.nodeId))
        kind, content = dht.run(sender.rpc.call(target, RpcKind.STORE, storeRequest("VALUE", os.urandom(32), b"x")))
        self.assertEqual(content.accepted, 0)


def farIdentity(node):
    """An identity for whose id C{node} knows K nodes closer than itself."""
    while True:
        identity = Identity.generate()
        if not node.responsibleFor(Table.NODE, identity.nodeId):
            return identity


PEERS = [os.urandom(32) for _ in range(3)]


class StoreHandlerTests(SynchronousTestCase):
    """The STORE handler under any sequence of STOREs from a few peers."""

    def setUp(self):
        settings = replace(FAST_DHT, maxStoreBytes=40_000, maxStoreBytesPerPeer=12_000, storeReserveBytes=8000)
        self.dht = MemoryDht(self, settings)
        self.node = self.dht.startNode(0)

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, len(PEERS) - 1),
                st.sampled_from([table.name for table in Table]),
                st.binary(min_size=32, max_size=32) | st.sampled_from([b"a" * 32, b"b" * 32]),
                st.integers(0, 2**32 - 1),
                st.binary(min_size=1, max_size=4000),
            ),
            max_size=25,
        )
    )
    def test_anyStoreAnswered(self, stores):
        """
        Every STORE is answered STORED, accepted exactly when the record is then held; no
        peer gets past its share, the store not past its budget.
        """
        node = self.node
        for peer, table, key, ttl, value in stores:
            content = decodeRpc(encodeRpc(RpcKind.STORE, b"r" * 8, storeRequest(table, key, value, ttl))).content
            kind, reply = node.respond(Contact("10.0.0.1", 0, PEERS[peer]), RpcKind.STORE, content)
            self.assertEqual(kind, RpcKind.STORED)
            held = node.store.get(Table[table], key)
            if reply["accepted"]:
                self.assertEqual(held.encoded, value)
            else:
                self.assertTrue(held is None or held.encoded != value or table != "VALUE")
            self.assertLessEqual(node.store.usage(PEERS[peer]), node.settings.maxStoreBytesPerPeer)
            self.assertLessEqual(node.store.size, node.settings.maxStoreBytes)
