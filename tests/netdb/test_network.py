"""
A DHT of many nodes: joining, storing and finding, in memory on a driven clock; and one small
network of real nodes over real TLS links on loopback addresses.
"""

import gc
import os
import weakref

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.config import DhtSettings
from phantom.netdb.records import NodeRecord
from phantom.netdb.service import DhtNode
from phantom.wire.dht import RpcKind, Table
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


class Silent(DhtNode):
    """A node that never answers FIND_VALUE."""

    def respond(self, sender, kind, content):
        if kind == RpcKind.FIND_VALUE:
            return Deferred()
        return super().respond(sender, kind, content)


class FirstRequestTests(SynchronousTestCase):
    """A lookup's closest contact is asked first, on its own; the others a turn later."""

    def test_closestFirstOthersNextTurn(self):
        """
        A GET's first request leaves at once, to the closest contact; the other alpha - 1
        leave on the clock's next turn, all of them: the GET asks what it asked before.
        """
        dht = MemoryDht(self)
        nodes = dht.start(30)
        key = os.urandom(32)
        dht.run(nodes[1].put(key, b"value", ttl=600, replication=20))
        asker = next(node for node in nodes if node.store.get(Table.VALUE, key) is None)
        closest = asker.table.closest(key, 3, replacements=True)

        def inFlight():
            return {nodeId for nodeId, channel in asker.rpc.channels.items() if channel.pendingCount}

        before = asker.stats.requests
        gotten = asker.get(key)
        self.assertEqual(inFlight(), {closest[0].nodeId})
        self.assertEqual(dht.run(gotten), b"value")
        dht.network.settle()
        self.assertEqual(asker.stats.requests - before, 3)
        self.assertEqual(asker.stats.rpcs[("FIND_VALUE", "answered")], 3)


class GetTimeoutTests(SynchronousTestCase):
    """A GET answers within the GET timeout, on one timer for all of a node's GETs."""

    def setUp(self):
        # Requests wait longer than a GET: only the GET timeout can answer.
        self.dht = MemoryDht(self, DhtSettings(rpcTimeout=30.0, getTimeout=8.0, maintenanceInterval=3600.0))
        first = self.dht.startNode(0, cls=Silent)
        self.dht.run(first.joined)
        self.silent = [first] + [self.dht.startNode(index, [first.contact], cls=Silent) for index in range(1, 4)]
        self.asker = self.dht.startNode(9, [first.contact])
        self.dht.run(gatherResults([node.joined for node in self.silent + [self.asker]]))
        self.dht.runFor(30)

    def test_answersNoneAtTheTimeout(self):
        """A GET nobody answers fires with None at the GET timeout, not before."""
        clock = self.dht.clock
        started = clock.seconds()
        answers = []
        self.asker.get(os.urandom(32)).addCallback(lambda value: answers.append((value, clock.seconds() - started)))
        self.dht.runFor(7.9)
        self.assertEqual(answers, [])
        self.dht.runFor(0.1)
        self.assertEqual(answers, [(None, 8.0)])

    def test_getsShareOneTimer(self):
        """
        GETs in flight together add one timer for all of them, and their requests one more,
        not one per GET (a Deferred timeout each) or per link; each GET still answers at its
        own deadline.
        """
        clock = self.dht.clock
        timers = len(clock.getDelayedCalls())
        answers = []
        for index in range(5):
            self.asker.get(os.urandom(32)).addCallback(lambda value, index=index: answers.append((index, clock.seconds())))
            self.dht.runFor(0.5)
        self.assertEqual(len(clock.getDelayedCalls()), timers + 2)
        started = clock.seconds() - 2.5
        self.dht.runFor(8)
        self.assertEqual(answers, [(index, started + 8 + 0.5 * index) for index in range(5)])

    def test_stoppingAnswersGets(self):
        """
        A node that stops answers its GETs under way with None, and leaves no GET timer (its
        requests keep theirs until their links close).
        """

        def deadlineTimers():
            return len([call for call in self.dht.clock.getDelayedCalls() if "Deadlines._expire" in repr(call)])

        answers = []
        self.asker.get(os.urandom(32)).addCallback(answers.append)
        self.assertEqual(deadlineTimers(), 2)
        self.asker.stopService()
        self.assertEqual(answers, [None])
        self.assertEqual(deadlineTimers(), 1)


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


    def test_answeredGetsHeldByNothing(self):
        """
        A GET that answered is held by nothing of the node's: its deadline's entry waits for
        the timer, and must not keep the result (a value of up to 64 KiB) alive until then.
        """
        dht = MemoryDht(self)
        nodes = dht.start(4)
        key = os.urandom(32)
        dht.run(nodes[1].put(key, b"value", ttl=600, replication=3))
        asker = dht.startNode(9, bootstrap=[nodes[0].contact])
        dht.run(asker.joined)
        gotten = asker.get(key)
        self.assertEqual(dht.run(gotten), b"value")
        gone = weakref.ref(gotten)
        del gotten
        self.assertIsNone(gone())


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
