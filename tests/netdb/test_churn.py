"""Churn: a quarter of the network stops; stored values survive; a restarted node rejoins."""

import os
import random

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tests.control.test_control import shortDirectory
from tests.netdb.helpers import startDhtNetwork, startDhtNode


def stop(node):
    """Stop a node and close its links; a Deferred that fires when they are closed."""
    node.stopService()
    return node.links.stopService()


class ChurnTests(TestCase):
    timeout = 180

    async def test_quarterStops(self):
        """
        40 nodes, 20 values stored with replication 3; a quarter of the nodes stop. Every value
        is still found from every node that runs.
        """
        nodes = await startDhtNetwork(self, 40, base=300)
        chooser = random.Random(3)
        values = {os.urandom(32): os.urandom(20) for _ in range(20)}
        await gatherResults([chooser.choice(nodes).put(key, value, 600, 3) for key, value in values.items()])
        stopped = chooser.sample(nodes, 10)
        await gatherResults([stop(node) for node in stopped])
        running = [node for node in nodes if node not in stopped]
        for key, value in values.items():
            for node in chooser.sample(running, 6):
                self.assertEqual(await node.get(key), value)

    async def test_restartRejoinsFromSavedContacts(self):
        """A node stopped and started again without bootstrap contacts rejoins from the contacts it saved."""
        nodes = await startDhtNetwork(self, 10, base=350)
        dataDir = shortDirectory(self)
        wanderer = startDhtNode(self, 20, bootstrap=[nodes[0].contact], base=350, dataDir=dataDir)
        await wanderer.joined
        self.assertGreater(len(wanderer.table), 3)
        await stop(wanderer)
        self.assertTrue(os.path.exists(os.path.join(dataDir, "contacts.json")))

        key = os.urandom(32)
        await nodes[4].put(key, b"written while away", 600, 3)
        again = startDhtNode(self, 20, bootstrap=(), base=350, dataDir=dataDir, identity=wanderer.identity)
        await again.joined
        self.assertGreater(len(again.table), 3)
        self.assertEqual(await again.get(key), b"written while away")
        # The others learn the returning node's new port when it talks to them.
        self.assertTrue(any(again.nodeId in {c.nodeId for c in node.table} for node in nodes))
