"""Fifty nodes in this process, each serving the module API: PUT through one, GET through all."""

import os

from twisted.trial.unittest import TestCase

from phantom.wire.api import DhtSuccess, encodeGet, encodePut
from phantom.wire.dht import Table
from tests.link.helpers import until
from tests.netdb.helpers import apiClient, startApi, startDhtNetwork


class FiftyNodesTests(TestCase):
    timeout = 300

    async def test_putAnywhereGetEverywhere(self):
        """A value PUT through any node's API is found by a GET through every other node's API."""
        nodes = await startDhtNetwork(self, 50, base=400)
        for node in nodes:
            startApi(self, node)
        for writerIndex in (0, 17, 42):
            key, value = os.urandom(32), os.urandom(64)
            writer = await apiClient(*nodes[writerIndex].api)
            writer.transport.write(encodePut(key, value, ttl=600, replication=3))
            holding = lambda: sum(node.store.get(Table.VALUE, key) is not None for node in nodes)
            await until(lambda: holding() >= nodes[0].settings.minReplication, timeout=60)
            writer.transport.loseConnection()
            clients = [await apiClient(*node.api) for node in nodes if node is not nodes[writerIndex]]
            for client in clients:
                client.transport.write(encodeGet(key))
            for client in clients:
                [reply] = await client.wait(1)
                self.assertEqual(reply, DhtSuccess(key, value))
                client.transport.loseConnection()
