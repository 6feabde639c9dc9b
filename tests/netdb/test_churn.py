"""Churn, in memory: a quarter of the network stops; stored values survive; a restarted node rejoins."""

import os
import random

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase

from tests.netdb.helpers import MemoryDht


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
