"""
A DHT of many nodes: joining, storing and finding, in memory on a driven clock; and one small
network of real nodes over real TLS links on loopback addresses.
"""

import gc
import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.netdb.records import NodeRecord
from phantom.wire.dht import Table
from tests.netdb.helpers import MemoryDht, startDhtNetwork


class NetworkTests(SynchronousTestCase):
    """Joining, storing and finding across a network in memory."""

    def test_putGetEverywhere(self):
        """A value put through one node is found through every other node."""
        dht = MemoryDht(self)
        nodes = dht.start(20)
        self.assertTrue(all(len(node.table) >= 5 for node in nodes), [len(n.table) for n in nodes])
        key, value = os.urandom(32), b"the value"
        replicated = nodes[3].put(key, value, ttl=600, replication=3)
        self.assertEqual(nodes[3].get(key).result, value)  # the local copy, at once
        self.assertGreaterEqual(dht.run(replicated), nodes[3].settings.minReplication)
        answers = [dht.run(node.get(key)) for node in nodes]
        self.assertEqual(answers, [value] * len(nodes))

    def test_missingValue(self):
        """A key nobody stored is answered with None."""
        dht = MemoryDht(self)
        nodes = dht.start(8)
        self.assertIsNone(dht.run(nodes[5].get(os.urandom(32))))

    def test_nodeRecordsAndSampling(self):
        """Every node's record can be found; sampling returns distinct verified records."""
        dht = MemoryDht(self)
        nodes = dht.start(20)
        for node in nodes[:5]:
            record = dht.run(nodes[-1].findRecord(Table.NODE, node.nodeId))
            self.assertIsInstance(record, NodeRecord)
            self.assertEqual((record.host, record.port), node.address)
        sample = dht.run(nodes[2].sampleNodes(8, exclude=[nodes[0].nodeId]))
        ids = {record.nodeId for record in sample}
        self.assertEqual(len(ids), 8)
        self.assertNotIn(nodes[2].nodeId, ids)
        self.assertNotIn(nodes[0].nodeId, ids)
        self.assertTrue(ids <= {node.nodeId for node in nodes})


class GarbageTests(SynchronousTestCase):
    """What a GET leaves behind is freed as soon as it is done, not by the garbage collector."""

    def test_getsLeaveNoCycles(self):
        """
        GETs that run lookups leave no cycle of objects behind: each one would be work for the
        collector, which then runs in the middle of later GETs.
        """
        dht = MemoryDht(self)
        nodes = dht.start(4)
        keys = [os.urandom(32) for _ in range(5)]
        for key in keys:
            dht.run(nodes[1].put(key, b"value", ttl=600, replication=3))
        asker = dht.startNode(9, bootstrap=[nodes[0].contact])  # holds none of the values
        dht.run(asker.joined)
        gc.collect()
        self.addCleanup(gc.enable)
        gc.disable()
        answers = [dht.run(asker.get(key)) for key in keys]
        dht.network.settle()
        self.assertEqual(answers, [b"value"] * len(keys))
        self.assertEqual(gc.collect(), 0)


class RealNetworkTests(TestCase):
    """A few real nodes, real TLS links, real time: what the in-memory network stands in for."""

    timeout = 60

    async def test_joinPutGetFind(self):
        """Eight nodes join; a value put through one is found through every other; node records are found; a missing key is None."""
        nodes = await startDhtNetwork(self, 8)
        self.assertTrue(all(len(node.table) >= 5 for node in nodes), [len(n.table) for n in nodes])
        key, value = os.urandom(32), b"the value"
        await nodes[3].put(key, value, ttl=600, replication=3)
        answers = [await node.get(key) for node in nodes]
        self.assertEqual(answers, [value] * len(nodes))
        record = await nodes[-1].findRecord(Table.NODE, nodes[0].nodeId)
        self.assertEqual((record.host, record.port), nodes[0].address)
        self.assertIsNone(await nodes[5].get(os.urandom(32)))
