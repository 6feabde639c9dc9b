"""
Eight ``twistd phantom`` processes on 127.0.0.x: a value PUT through one node's DHT module API is
answered by a GET through another's, with the exact VoidPhone bytes over plain TCP.
"""

import json
import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from phantom.testnet.loopback import sharedPort
from phantom.wire.api import DhtFailure, DhtSuccess, encodeGet, encodePut
from tests.netdb.helpers import apiClient
from tests.testnet.helpers import runCommand, shortTemporaryDirectory


class TwistdDhtTests(TestCase):
    timeout = 180

    async def test_putHereGetThere(self):
        """PUTs through some nodes' APIs are found by GETs through other nodes' APIs."""
        directory = shortTemporaryDirectory(self)
        port = sharedPort()
        out, err, code = await runCommand("up", "--nodes", "8", "--dir", directory, "--port", str(port), "--json")
        self.addCleanup(runCommand, "down", "--dir", directory)
        self.assertEqual(code, 0, err)
        nodes = json.loads(out)["nodes"]
        self.assertEqual(len(nodes), 8)
        hosts = [node["address"] for node in nodes]
        apiPort = port - 1

        values = {os.urandom(32): os.urandom(100) for _ in range(4)}
        for index, (key, value) in enumerate(values.items()):
            writer = await apiClient(hosts[index], apiPort)
            writer.transport.write(encodePut(key, value, ttl=600, replication=3) + encodeGet(key))
            # A PUT has no answer; the GET after it on the same connection shows it was taken.
            self.assertEqual(await writer.wait(1), [DhtSuccess(key, value)])
            writer.transport.loseConnection()

        for index, (key, value) in enumerate(values.items()):
            reader = await apiClient(hosts[7 - index], apiPort)
            for attempt in range(20):
                reader.transport.write(encodeGet(key))
                [reply] = (await reader.wait(attempt + 1))[attempt:]
                if isinstance(reply, DhtSuccess):
                    break
                await deferLater(reactor, 0.25, lambda: None)
            self.assertEqual(reply, DhtSuccess(key, value))
            reader.transport.write(encodeGet(os.urandom(32)))
            [missing] = (await reader.wait(attempt + 2))[attempt + 1 :]
            self.assertIsInstance(missing, DhtFailure)
            reader.transport.loseConnection()
