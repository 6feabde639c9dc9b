"""Twisted endpoints over tunnels, with end-to-end TLS pinned to AP-addresses."""

import os

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.path.interfaces import PathKind
from phantom.tunnel.endpoint import EndToEnd, TunnelClientEndpoint, TunnelServerEndpoint
from phantom.tunnel.transport import TunnelAddress
from tests.tunnel.helpers import SHAPE, Collector, Echo, buildEntry, startTunnelNetwork, untilClean


class PeerEcho(Echo):
    """An echo that remembers who it talks to."""

    def connectionMade(self):
        self.factory.made.append(self)


class EndpointTests(TestCase):
    timeout = 180

    async def test_echoOverEndToEndTLS(self):
        """
        A client endpoint reaches the server endpoint of an AP-address; the client sees that
        AP-address, the server the exit AP of the client's exit path; a MiB comes back intact;
        closing the client ends the server's side.
        """
        nodes = await startTunnelNetwork(self, 14, base=780)
        client, server = nodes[1], nodes[8]
        for node in (client, server):
            node.endToEnd = EndToEnd(node.identity.routingKey)
        await buildEntry(nodes, server)
        exitPath = await client.paths.build(PathKind.EXIT, SHAPE)
        factory = Factory.forProtocol(PeerEcho)
        factory.made = []
        port = await TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(factory)
        self.assertEqual(port.getHost(), TunnelAddress(server.apAddress))

        payload = os.urandom(1024 * 1024)
        collector = await TunnelClientEndpoint(client.tunnels, server.apAddress).connect(
            Factory.forProtocol(lambda: Collector(len(payload)))
        )
        self.assertEqual(collector.transport.getPeer(), TunnelAddress(server.apAddress))
        collector.transport.write(payload)
        self.assertEqual(await collector.arrived, payload)
        [echo] = factory.made
        self.assertEqual(echo.transport.getPeer(), TunnelAddress(client.tunnels.exits.ofPath(exitPath).apAddress))

        collector.transport.loseConnection()
        await collector.ended
        await echo.ended
        await untilClean(nodes)

    async def test_wrongOwnerRefused(self):
        """
        A tunnel whose far end does not hold the key of the AP-address asked for fails the
        end-to-end handshake: here the server presents another routing key.
        """
        nodes = await startTunnelNetwork(self, 12, base=790)
        client, server = nodes[2], nodes[7]
        client.endToEnd = EndToEnd(client.identity.routingKey)
        impostor = EndToEnd(nodes[5].identity.routingKey)
        await buildEntry(nodes, server)
        await client.paths.build(PathKind.EXIT, SHAPE)
        factory = Factory.forProtocol(PeerEcho)
        factory.made = []
        await TunnelServerEndpoint(server.tunnels, impostor).listen(factory)
        connecting = TunnelClientEndpoint(client.tunnels, server.apAddress).connect(Factory.forProtocol(Collector))
        failure = await self.assertFailure(connecting, ConnectionRefusedError)
        self.assertIn("AP-address", str(failure))
        await untilClean(nodes)


class EndToEndRecordsTests(SynchronousTestCase):
    def test_writeEncryptedAtOnce(self):
        """
        Once the end-to-end handshake is done, what a program writes is encrypted and handed to
        the tunnel at once, with no reactor turn (Twisted's default TLS transport waits for one),
        and the far end reads it.
        """
        clock = Clock()
        client, server = EndToEnd(ed25519.Ed25519PrivateKey.generate(), clock), EndToEnd(ed25519.Ed25519PrivateKey.generate(), clock)
        received = []
        reader = Factory.forProtocol(type("Reader", (Protocol,), {"dataReceived": lambda self, data: received.append(data)}))
        clientTLS, serverTLS, pump = iosim.connectedServerAndClient(
            lambda: server.serverFactory(reader).buildProtocol(None),
            lambda: client.clientFactory(server.apAddress, Factory.forProtocol(Protocol)).buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        written = len(b"".join(clientTLS.transport.stream))
        clientTLS.write(b"at once")
        self.assertGreater(len(b"".join(clientTLS.transport.stream)), written)
        pump.flush()
        self.assertEqual(b"".join(received), b"at once")
