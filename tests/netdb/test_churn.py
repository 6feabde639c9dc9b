"""Churn, in memory: a quarter of the network stops; stored values survive; a restarted node rejoins."""

import os
import random

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact, addressBytes
from phantom.netdb.service import DhtNode
from phantom.wire.dht import RpcKind
from tests.netdb.helpers import MemoryDht


class MisdirectingNode(DhtNode):
    """Answers FIND_NODE and FIND_VALUE with C{victim}'s node id at an address where nothing listens."""

    victim = None

    def respond(self, sender, kind, content):
        kind, reply = super().respond(sender, kind, content)
        if kind == RpcKind.NODES and self.victim is not None:
            others = [c for c in reply["contacts"] if c["node_id"] != self.victim]
            reply = {"contacts": [{"node_id": self.victim, "address": addressBytes("10.99.99.99"), "port": 9}] + others}
        return kind, reply


class ChurnTests(SynchronousTestCase):
    def test_quarterStops(self):
        """
        40 nodes, 20 values stored with replication 3; a quarter of the nodes stop. Every value
        is still found from every node that runs.
        """
        dht = MemoryDht(self)
        nodes = dht.start(40)
        chooser = random.Random(3)
        values = {os.urandom(32): os.urandom(20) for _ in range(20)}
        dht.run(gatherResults([chooser.choice(nodes).put(key, value, 600, 3) for key, value in values.items()]))
        stopped = chooser.sample(nodes, 10)
        for node in stopped:
            dht.stop(node)
        running = [node for node in nodes if node not in stopped]
        for key, value in values.items():
            for node in chooser.sample(running, 6):
                self.assertEqual(dht.run(node.get(key)), value)

    def test_restartRejoinsFromSavedContacts(self):
        """A node stopped and started again without bootstrap contacts rejoins from the contacts it saved."""
        dht = MemoryDht(self)
        nodes = dht.start(10)
        dataDir = self.mktemp()
        os.makedirs(dataDir)
        wanderer = dht.startNode(20, bootstrap=[nodes[0].contact], dataDir=dataDir)
        dht.run(wanderer.joined)
        self.assertGreater(len(wanderer.table), 3)
        dht.stop(wanderer)
        self.assertTrue(os.path.exists(os.path.join(dataDir, "contacts.json")))

        key = os.urandom(32)
        dht.run(nodes[4].put(key, b"written while away", 600, 3))
        again = dht.startNode(20, bootstrap=(), dataDir=dataDir, identity=wanderer.identity)
        self.assertNotEqual(again.address, wanderer.address)
        dht.run(again.joined)
        self.assertGreater(len(again.table), 3)
        self.assertEqual(dht.run(again.get(key)), b"written while away")
        # The others learn the returning node's new address when it talks to them.
        self.assertTrue(any(again.contact in set(node.table) for node in nodes))


class UnansweredTests(SynchronousTestCase):
    def test_lastRequestFailed(self):
        """
        A node that this node's last request could not reach (no link opened) is unanswered
        (what the path service drops kept ends by, issue 16) until it is heard from again.
        """
        dht = MemoryDht(self)
        nodes = dht.start(6)
        asker, gone = nodes[0], nodes[1]
        self.assertFalse(asker.unanswered(gone.nodeId))
        dht.stop(gone)
        dht.run(asker.lookup(os.urandom(32)))
        self.assertTrue(asker.unanswered(gone.nodeId))
        self.assertFalse(any(asker.unanswered(node.nodeId) for node in nodes[2:]))
        again = dht.startNode(30, bootstrap=[asker.contact], identity=gone.identity)
        dht.run(again.joined)
        self.assertFalse(asker.unanswered(gone.nodeId))

    def test_notGoneAtAnAddressSomeoneElseGave(self):
        """
        A node is gone only where its own record says it is: a hostile node that names an
        honest node's id at an address where nothing listens makes the asker's request fail,
        but cannot make the honest node count as gone (an owner would drop it as a kept end,
        and steer its next choice, issue 16).
        """
        dht = MemoryDht(self)
        nodes = dht.start(6)
        # Alive, at its address, and in no routing table here: the owner knows it from its record.
        victim = dht.startNode(32)
        liar = dht.startNode(30, bootstrap=[Contact(*nodes[0].address)], cls=MisdirectingNode)
        dht.run(liar.joined)
        liar.victim = victim.nodeId
        asker = nodes[2]
        dht.run(asker.lookup(victim.nodeId))
        self.assertFalse(asker.unanswered(victim.nodeId, victim.address))
        self.assertTrue(asker.unanswered(victim.nodeId, ("10.99.99.99", 9)))

    def test_goneAtItsAddressStaysGone(self):
        """A contact made up for a node found gone at its own address does not hide that it is gone."""
        dht = MemoryDht(self)
        first = dht.startNode(0, cls=MisdirectingNode)
        dht.run(first.joined)
        bootstrap = [Contact(*first.address)]
        liars = [first] + [dht.startNode(i, bootstrap, cls=MisdirectingNode) for i in range(1, 5)]
        gone, asker = dht.startNode(5, bootstrap), dht.startNode(6, bootstrap)
        dht.run(gatherResults([node.joined for node in liars[1:] + [gone, asker]]))
        dht.stop(gone)
        dht.run(asker.lookup(os.urandom(32)))
        self.assertTrue(asker.unanswered(gone.nodeId, gone.address))
        while any(contact.nodeId == gone.nodeId for contact in asker.table):
            asker.table.failed(gone.contact)
        for liar in liars:
            liar.victim = gone.nodeId
        dht.run(asker.lookup(gone.nodeId))
        self.assertTrue(asker.unanswered(gone.nodeId, ("10.99.99.99", 9)))
        self.assertTrue(asker.unanswered(gone.nodeId, gone.address))
