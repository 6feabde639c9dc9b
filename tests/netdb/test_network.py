"""A DHT of real nodes in this process, over real TLS links on loopback addresses."""

import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from phantom.netdb.records import NodeRecord
from phantom.wire.dht import Table
from tests.netdb.helpers import startDhtNetwork


async def eventually(check, timeout=15.0, step=0.1):
    """Wait until the coroutine function C{check} returns something true; return it."""
    waited = 0.0
    while True:
        result = await check()
        if result:
            return result
        if waited >= timeout:
            raise AssertionError("not reached in time")
        await deferLater(reactor, step, lambda: None)
        waited += step


class NetworkTests(TestCase):
    """Joining, storing and finding across a small network."""

    timeout = 120

    async def test_putGetEverywhere(self):
        """A value put through one node is found through every other node."""
        nodes = await startDhtNetwork(self, 20)
        self.assertTrue(all(len(node.table) >= 5 for node in nodes), [len(n.table) for n in nodes])
        key, value = os.urandom(32), b"the value"
        nodes[3].put(key, value, ttl=600, replication=3)
        await eventually(lambda: nodes[17].get(key))
        answers = [await node.get(key) for node in nodes]
        self.assertEqual(answers, [value] * len(nodes))

    async def test_missingValue(self):
        """A key nobody stored is answered with None."""
        nodes = await startDhtNetwork(self, 8, base=130)
        self.assertIsNone(await nodes[5].get(os.urandom(32)))

    async def test_nodeRecordsAndSampling(self):
        """Every node's record can be found; sampling returns distinct verified records."""
        nodes = await startDhtNetwork(self, 20, base=160)
        for node in nodes[:5]:
            record = await nodes[-1].findRecord(Table.NODE, node.nodeId)
            self.assertIsInstance(record, NodeRecord)
            self.assertEqual((record.host, record.port), node.address)
        sample = await nodes[2].sampleNodes(8, exclude=[nodes[0].nodeId])
        ids = {record.nodeId for record in sample}
        self.assertEqual(len(ids), 8)
        self.assertNotIn(nodes[2].nodeId, ids)
        self.assertNotIn(nodes[0].nodeId, ids)
        self.assertTrue(ids <= {node.nodeId for node in nodes})
