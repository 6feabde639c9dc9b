"""
The network database's upkeep on the injected clock: expiry, the node record, republishing,
bucket refresh. Each node's clock is a L{Clock} the test advances; its links are real.
"""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from phantom.address import Contact
from phantom.wire.dht import Table
from tests.netdb.helpers import FAST_DHT, startDhtNode

SETTINGS = FAST_DHT.__class__(**{**FAST_DHT.__dict__, "maintenanceInterval": 60.0, "nodeRecordInterval": 1800.0, "republishInterval": 3600.0, "refreshInterval": 3600.0})


def startClocked(testCase, index, bootstrap=(), base=500):
    clock = Clock()
    clock.advance(1_800_000_000)
    node = startDhtNode(testCase, index, bootstrap, settings=SETTINGS, base=base, clock=clock)
    node.clock = clock
    return node


async def startClockedNetwork(testCase, count, base=500):
    first = startClocked(testCase, 0, base=base)
    await first.joined
    nodes = [first] + [startClocked(testCase, i, [Contact(*first.address)], base) for i in range(1, count)]
    for node in nodes:
        await node.joined
    return nodes


class MaintenanceTests(TestCase):
    timeout = 120

    async def test_expiry(self):
        """A value is dropped when its TTL has passed, at the next upkeep."""
        node = startClocked(self, 0, base=520)
        await node.joined
        await node.put(b"k" * 32, b"v", ttl=30, replication=1)
        node.clock.advance(60)
        self.assertIsNone(node.store.get(Table.VALUE, b"k" * 32))
        self.assertNotIn((Table.VALUE, b"k" * 32), node.store._records)

    async def test_nodeRecordRepublished(self):
        """The node publishes a fresh node record every nodeRecordInterval."""
        nodes = await startClockedNetwork(self, 4, base=530)
        node = nodes[2]
        before = node.store.get(Table.NODE, node.nodeId).timestamp
        node.clock.advance(SETTINGS.nodeRecordInterval + SETTINGS.maintenanceInterval)
        await node.publishing
        after = node.store.get(Table.NODE, node.nodeId).timestamp
        self.assertGreater(after, before)
        holders = [other for other in nodes if other is not node and other.store.get(Table.NODE, node.nodeId)]
        self.assertTrue(holders)

    async def test_republishReachesNewNodes(self):
        """A value stored before a node joined reaches it when the holders republish."""
        nodes = await startClockedNetwork(self, 3, base=540)
        key = os.urandom(32)
        await nodes[1].put(key, b"kept alive", ttl=20000, replication=20)
        late = startClocked(self, 9, [Contact(*nodes[0].address)], base=540)
        await late.joined
        self.assertIsNone(late.store.get(Table.VALUE, key))
        nodes[1].clock.advance(SETTINGS.republishInterval + SETTINGS.maintenanceInterval)
        await nodes[1].republishing
        self.assertEqual(late.store.get(Table.VALUE, key).encoded, b"kept alive")

    async def test_bucketRefresh(self):
        """Buckets nobody touched for the refresh interval are looked up again."""
        nodes = await startClockedNetwork(self, 4, base=550)
        node = nodes[3]
        lookups = node.stats.lookups
        node.clock.advance(SETTINGS.refreshInterval + SETTINGS.maintenanceInterval)
        await node.refreshing
        self.assertGreater(node.stats.lookups, lookups)
