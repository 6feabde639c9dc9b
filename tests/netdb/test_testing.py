"""The in-memory network database the tests of the rooms above run on."""

import random

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.identity import Identity
from phantom.netdb.records import NODE_RECORD_LIFETIME, InvalidRecord, RoutingEntry
from phantom.netdb.testing import MemoryDatabase
from phantom.wire.dht import Table

NOW = 1_800_000_000


def result(testCase, coroutine):
    return testCase.successResultOf(Deferred.fromCoroutine(coroutine))


class MemoryDatabaseTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.database = MemoryDatabase(self.clock, random.Random(1))
        self.nodes = [self.database.node(Identity.generate(), f"10.0.0.{i + 1}", 7402) for i in range(6)]

    def test_sampleNodes(self):
        """Samples are valid node records of other nodes, none excluded, at most as many as asked."""
        me, excluded = self.nodes[0], self.nodes[1]
        records = result(self, me.sampleNodes(10, exclude=[excluded.nodeId]))
        self.assertEqual({record.nodeId for record in records}, {node.nodeId for node in self.nodes[2:]})
        self.assertEqual({record.host for record in records}, {f"10.0.0.{i}" for i in range(3, 7)})
        self.assertEqual(len(result(self, me.sampleNodes(2))), 2)

    def test_offlineAndExpired(self):
        """Nodes taken off are not handed out; records past their lifetime are gone."""
        self.database.offline.add(self.nodes[2].nodeId)
        self.assertNotIn(self.nodes[2].nodeId, {r.nodeId for r in result(self, self.nodes[0].sampleNodes(10))})
        self.clock.advance(NODE_RECORD_LIFETIME)
        self.assertEqual(result(self, self.nodes[0].sampleNodes(10)), [])

    def test_storeAndFind(self):
        """A valid routing entry stored by one node is found by another; an invalid one is refused."""
        routingKey = Identity.generate().routingKey
        entry = RoutingEntry.create(routingKey, NOW, NOW + 600, [Contact("10.0.0.1", 7402, self.nodes[0].nodeId)], NOW)
        self.assertEqual(result(self, self.nodes[0].storeRecord(Table.ROUTE, entry.key, entry.encoded)), 1)
        self.assertEqual(self.nodes[0].stored, [(Table.ROUTE, entry.key)])
        found = result(self, self.nodes[3].findRecord(Table.ROUTE, entry.key))
        self.assertEqual(found.entries, (entry,))
        self.assertIsNone(result(self, self.nodes[3].findRecord(Table.ROUTE, bytes(32))))
        failure = self.failureResultOf(Deferred.fromCoroutine(self.nodes[1].storeRecord(Table.ROUTE, bytes(32), entry.encoded)))
        failure.trap(InvalidRecord)
