"""
A relay that tampers with stream data, over real links and end-to-end TLS: a bit flipped in a
cell garbles it under the next hop's layer, and the tunnel closes before anything of it reaches
the far end, raw or under end-to-end TLS; a setup block flipped on an exit path fails the open. (Tampered setup blocks
and bad TUNNEL and ENTRY links: test_network, on an in-memory network.)
"""

import os

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from phantom.errors import TunnelFailed
from phantom.path.interfaces import PathKind
from phantom.tunnel.endpoint import EndToEnd, TunnelClientEndpoint, TunnelServerEndpoint
from phantom.wire.tunnel import BLOCK_SIZE
from twisted.internet.defer import gatherResults

from tests.tunnel.helpers import Collector, Recorder, hopNode, relayedOn, startClientAndServer, untilClean

BITS = (0, 200, 8 * BLOCK_SIZE - 1)
"""Bits flipped in a setup block: in its first, second and last AES block."""
DATA_BIT = 8 * 20 + 3
"""The bit flipped in a cell: among its first data bytes, where the first TLS record begins."""


async def tunnelNetwork(testCase, base):
    """
    A network of tampering (but unarmed) nodes, a server with an entry path that echoes, and a
    client with an exit path; the middle X-node of each path is ready to tamper.

    @return: C{(nodes, client, server, accepted, relays)}: C{accepted} as for C{acceptInto};
        C{relays[PathKind.EXIT]} and C{relays[PathKind.ENTRY]} the C{(node, relayed)} of the middle X-node of
        that path (its L{tests.tunnel.tampering.Tampering} is C{node.tampering}).
    """
    nodes, client, server, entryPath, exitPath, accepted = await startClientAndServer(testCase, 16, base, 3, 12, tampering=True)
    relays = {}
    for kind, owner, path in ((PathKind.EXIT, client, exitPath), (PathKind.ENTRY, server, entryPath)):
        node = hopNode(nodes, path, 1)
        # Each X-node joined the path in round 2, before the array came back to the owner.
        relays[kind] = (node, relayedOn(node, owner, path, 1))
        testCase.assertIsNotNone(relays[kind][1])
    return nodes, client, server, accepted, relays


class TamperingTests(TestCase):
    timeout = 120

    async def test_tamperedDataOverEndToEndTLS(self):
        """
        A relay that flips a bit of a cell: over a raw tunnel, the tunnel closes and neither end
        gets a byte of the message (nor of anything after it). Over end-to-end TLS, whether
        the bit is flipped on the way to the server or back, or in the setup block the exit
        path passes on (so that the layers of the hops after the relay do not match the
        client's), the connection fails or closes, and neither application gets a byte other
        than was sent. Then an untampered connection echoes.
        """
        nodes, client, server, accepted, relays = await tunnelNetwork(self, 900)
        exitNode, exitRelayed = relays[PathKind.EXIT]
        entryNode, entryRelayed = relays[PathKind.ENTRY]

        tunnel = await client.tunnels.open(server.apAddress)
        collector = Collector(len(b"first"))
        tunnel.start(collector)
        tunnel.write(b"first")
        await collector.arrived  # echoed: the server has it
        self.assertEqual(bytes(accepted[0][1].received), b"first")
        exitNode.tampering.armNext(exitRelayed, PathKind.EXIT, "fromOwner", DATA_BIT)
        message = os.urandom(1000)
        tunnel.write(message)
        await gatherResults([collector.ended, accepted[0][1].ended])
        self.assertEqual(exitNode.tampering.tampered, 1)
        self.assertEqual(bytes(accepted[0][1].received), b"first")
        self.assertEqual(bytes(collector.received), b"first")
        exitNode.tampering.disarm()
        await untilClean(nodes)

        for node in (client, server):
            node.endToEnd = EndToEnd(node.identity.routingKey)
        served = []

        class Served(Recorder):
            def connectionMade(self):
                served.append(self)

        server.tunnels.listener.stopListening()  # the raw tunnels' acceptor
        await TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(Factory.forProtocol(Served))
        endpoint = TunnelClientEndpoint(client.tunnels, server.apAddress)

        # A bit of the client's message, on the client's exit path; of the echo, on the server's
        # entry path.
        for node, relayed, kind, direction in ((exitNode, exitRelayed, PathKind.EXIT, "fromOwner"), (entryNode, entryRelayed, PathKind.ENTRY, "fromOwner")):
            message = os.urandom(3000)
            collector = await endpoint.connect(Factory.forProtocol(lambda: Collector(len(message))))
            node.tampering.armNext(relayed, kind, direction, DATA_BIT)
            collector.transport.write(message)
            await gatherResults([collector.ended, served[-1].ended])
            self.assertEqual(node.tampering.tampered, 1, kind)
            self.assertTrue(message.startswith(bytes(served[-1].received)), kind)
            self.assertTrue(message.startswith(bytes(collector.received)), kind)
            self.assertNotEqual(bytes(collector.received), message, kind)
            node.tampering.disarm()
            await untilClean(nodes)

        exitNode.tampering.arm(exitRelayed, PathKind.EXIT, "setup block", BITS[1])
        before = len(served)
        connecting = endpoint.connect(Factory.forProtocol(Collector))
        await self.assertFailure(connecting, ConnectionRefusedError, TunnelFailed)
        self.assertEqual(exitNode.tampering.tampered, 1)
        exitNode.tampering.disarm()
        await untilClean(nodes)
        await gatherResults([application.ended for application in served])
        self.assertEqual([bytes(application.received) for application in served[before:]], [b""] * (len(served) - before))

        message = os.urandom(3000)
        collector = await endpoint.connect(Factory.forProtocol(lambda: Collector(len(message))))
        collector.transport.write(message)
        self.assertEqual(await collector.arrived, message)
        collector.transport.loseConnection()
        await served[-1].ended
        await untilClean(nodes)
