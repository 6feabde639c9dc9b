"""
Every node of a network serving the module API: PUT through one, GET through all. Fifty nodes
in memory with the API on string transports; six real nodes with the API over real TCP.
"""

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.wire.api import DhtSuccess, encodeGet, encodePut
from phantom.wire.dht import Table
from tests.netdb.helpers import MemoryDht, apiClient, startApi, startDhtNetwork
from tests.netdb.test_api import Connection


class FiftyNodesTests(SynchronousTestCase):
    def test_putAnywhereGetEverywhere(self):
        """A value PUT through any node's API is found by a GET through every other node's API."""
        dht = MemoryDht(self)
        nodes = dht.start(50)
        settings = nodes[0].settings
        for writerIndex in (0, 17, 42):
            key, value = os.urandom(32), os.urandom(64)
            writer = Connection(nodes[writerIndex], dht.clock, getTimeout=settings.getTimeout)
            writer.send(encodePut(key, value, ttl=600, replication=3))
            dht.runFor(settings.rpcTimeout * 3)
            holding = sum(node.store.get(Table.VALUE, key) is not None for node in nodes)
            self.assertGreaterEqual(holding, settings.minReplication)
            writer.lose()
            readers = [Connection(node, dht.clock, getTimeout=settings.getTimeout) for node in nodes if node is not nodes[writerIndex]]
            for reader in readers:
                reader.send(encodeGet(key))
            dht.runFor(settings.getTimeout)
            for reader in readers:
                self.assertEqual(reader.replies(), [DhtSuccess(key, value)])
                reader.lose()


class RealApiNetworkTests(TestCase):
    timeout = 60

    async def test_putAnywhereGetEverywhere(self):
        """Over real TCP to real nodes: a value PUT through one node's API is found through every other's."""
        nodes = await startDhtNetwork(self, 6)
        for node in nodes:
            startApi(self, node)
        key, value = os.urandom(32), os.urandom(64)
        writer = await apiClient(*nodes[2].api)
        writer.transport.write(encodePut(key, value, ttl=600, replication=3) + encodeGet(key))
        self.assertEqual(await writer.wait(1), [DhtSuccess(key, value)])  # the PUT was taken
        writer.transport.loseConnection()
        clients = [await apiClient(*node.api) for node in nodes if node is not nodes[2]]
        for client in clients:
            client.transport.write(encodeGet(key))
        for client in clients:
            self.assertEqual(await client.wait(1), [DhtSuccess(key, value)])
            client.transport.loseConnection()
