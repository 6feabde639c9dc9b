"""
The network database's upkeep on the injected clock: expiry, the node record, republishing,
bucket refresh. Nodes in memory, on one clock the test drives.
"""

import dataclasses
import os

from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.wire.dht import Table
from tests.netdb.helpers import FAST_DHT, MemoryDht

SETTINGS = dataclasses.replace(FAST_DHT, maintenanceInterval=60.0, nodeRecordInterval=1800.0, republishInterval=3600.0, refreshInterval=3600.0)


class MaintenanceTests(SynchronousTestCase):
    def setUp(self):
        self.dht = MemoryDht(self, SETTINGS)

    def test_expiry(self):
        """A value is dropped when its TTL has passed, at the next upkeep."""
        [node] = self.dht.start(1)
        self.dht.run(node.put(b"k" * 32, b"v", ttl=30, replication=1))
        self.assertEqual(len(node.store), 2)  # the value and the node's own record
        self.dht.runFor(60)
        self.assertIsNone(node.store.get(Table.VALUE, b"k" * 32))
        self.assertEqual(len(node.store), 1)

    def test_nodeRecordRepublished(self):
        """The node publishes a fresh node record every nodeRecordInterval."""
        nodes = self.dht.start(4)
        node = nodes[2]
        before = node.store.get(Table.NODE, node.nodeId).timestamp
        self.dht.runFor(SETTINGS.nodeRecordInterval + SETTINGS.maintenanceInterval)
        self.dht.run(node.publishing)
        after = node.store.get(Table.NODE, node.nodeId).timestamp
        self.assertGreater(after, before)
        holders = [other for other in nodes if other is not node and other.store.get(Table.NODE, node.nodeId).timestamp == after]
        self.assertTrue(holders)

    def test_republishReachesNewNodes(self):
        """A value stored before a node joined reaches it when the holders republish."""
        nodes = self.dht.start(3)
        key = os.urandom(32)
        self.dht.run(nodes[1].put(key, b"kept alive", ttl=20000, replication=20))
        late = self.dht.startNode(9, [Contact(*nodes[0].address)])
        self.dht.run(late.joined)
        self.assertIsNone(late.store.get(Table.VALUE, key))
        self.dht.runFor(SETTINGS.republishInterval + SETTINGS.maintenanceInterval)
        self.dht.run(nodes[1].republishing)
        self.assertEqual(late.store.get(Table.VALUE, key).encoded, b"kept alive")

    def test_bucketRefresh(self):
        """Buckets nobody touched for the refresh interval are looked up again."""
        nodes = self.dht.start(4)
        node = nodes[3]
        lookups = node.stats.lookups
        self.dht.runFor(SETTINGS.refreshInterval + SETTINGS.maintenanceInterval)
        self.dht.run(node.refreshing)
        self.assertGreater(node.stats.lookups, lookups)

    def test_lookupAndRpcCounts(self):
        """Each lookup's duration goes to whoever watches; each request is counted by kind and outcome."""
        nodes = self.dht.start(4)
        node = nodes[3]
        durations = []
        node.stats.onLookup(durations.append)
        lookups, answered = node.stats.lookups, node.stats.rpcs[("FIND_NODE", "answered")]
        self.dht.runFor(SETTINGS.refreshInterval + SETTINGS.maintenanceInterval)
        self.dht.run(node.refreshing)
        self.assertEqual(len(durations), node.stats.lookups - lookups)
        self.assertTrue(durations and all(seconds >= 0 for seconds in durations))
        self.assertGreater(node.stats.rpcs[("FIND_NODE", "answered")], answered)

    def test_upkeepSurvivesItsFailures(self):
        """A failing step of the upkeep is logged and the upkeep goes on at the next interval."""
        [node] = self.dht.start(1)
        calls = []

        def brokenSave():
            calls.append(self.dht.clock.seconds())
            raise OSError("disk full")

        node.saveContacts = brokenSave
        self.dht.runFor(3 * SETTINGS.maintenanceInterval)
        del node.saveContacts
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 3)
