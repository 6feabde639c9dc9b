"""
Addresses on real networks: an address advertised other than the one bound, bootstrap contacts
by host name (resolved on every try), and a node bound to every address that learns the
address to publish.
"""

import shutil
import tempfile

from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHostnameResolver
from twisted.protocols import portforward
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from phantom.address import Contact, unmapped
from phantom.addressing import EveryAddressEndpoint, resolveContacts, sourceAddressTo
from phantom.config import parseAdvertised, resolveConfig
from phantom.errors import ConfigError
from phantom.node import PhantomNode
from phantom.wire.dht import Table
from phantom.wire.link import Purpose
from tests.link.helpers import freePort, freshLoopbackAddress, until


@implementer(IHostnameResolver)
class FakeResolver:
    """Resolves names from C{answers} (name to a list of addresses), counting the questions."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for host in self.answers.get(hostName, []):
            receiver.addressResolved((IPv6Address if ":" in host else IPv4Address)("TCP", host, portNumber))
        receiver.resolutionComplete()
        return None


class ParseTests(SynchronousTestCase):
    @given(st.text(max_size=60))
    def test_anyTextParsesOrIsRefused(self, text):
        """Any text is an advertised address, a list of named contacts, or a ConfigError; nothing else."""
        for option in ("advertiseAddress", "bootstrap"):
            try:
                resolveConfig(dataDir="/d", **{option: text})
            except ConfigError:
                pass

    @given(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9](\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True), st.integers(1, 65535))
    def test_namesRoundTrip(self, name, port):
        """Every host name with a port parses back to itself."""
        self.assertEqual(parseAdvertised(f"{name}:{port}"), (name, port))
        self.assertEqual(resolveConfig(dataDir="/d", bootstrap=f"{name}:{port}").bootstrap, (Contact(name, port),))

    def test_advertised(self):
        """HOST[:PORT]: IPv4, IPv6 bare or in brackets, host names; the port is optional."""
        self.assertEqual(parseAdvertised("203.0.113.5"), ("203.0.113.5", None))
        self.assertEqual(parseAdvertised("203.0.113.5:9000"), ("203.0.113.5", 9000))
        self.assertEqual(parseAdvertised("2001:db8::5"), ("2001:db8::5", None))
        self.assertEqual(parseAdvertised("[2001:db8::5]:9000"), ("2001:db8::5", 9000))
        self.assertEqual(parseAdvertised("node.example.org:9000"), ("node.example.org", 9000))
        self.assertEqual(parseAdvertised("node.example.org"), ("node.example.org", None))
        for bad in ("", "a b", "1.2.3:4", "node.example.org:0", "[::1]:x", "-x-:1"):
            self.assertRaises(ConfigError, resolveConfig, dataDir="/d", advertiseAddress=bad)

    def test_bootstrapNames(self):
        """Bootstrap contacts may be host names; the config keeps them as names, to be resolved on every try."""
        config = resolveConfig(dataDir="/d", bootstrap="localhost:7402, 127.0.0.2:7402")
        self.assertEqual(config.bootstrap, (Contact("localhost", 7402), Contact("127.0.0.2", 7402)))
        self.assertRaises(ConfigError, resolveConfig, dataDir="/d", bootstrap="under_score:7402")

    def test_everywhere(self):
        """No listen address and a bare port: every address; a listen address or an endpoint string: not."""
        self.assertTrue(resolveConfig(dataDir="/d").listenEverywhere)
        self.assertFalse(resolveConfig(dataDir="/d", listenAddress="127.0.0.1").listenEverywhere)
        self.assertFalse(resolveConfig(dataDir="/d", port="tcp:7402").listenEverywhere)

    def test_unmapped(self):
        """An IPv4 peer of a socket on :: comes back as the IPv4 address it is."""
        self.assertEqual(unmapped(IPv6Address("TCP", "::ffff:127.0.0.1", 5)), IPv4Address("TCP", "127.0.0.1", 5))
        self.assertEqual(unmapped(IPv6Address("TCP", "::1", 5)), IPv6Address("TCP", "::1", 5))
        self.assertEqual(unmapped(IPv4Address("TCP", "10.0.0.1", 5)), IPv4Address("TCP", "10.0.0.1", 5))


class ResolveTests(SynchronousTestCase):
    def test_resolveContacts(self):
        """Names become their addresses (node id kept); addresses stay; a name that resolves to nothing is left out."""
        resolver = FakeResolver({"two.example": ["192.0.2.1", "2001:db8::1"], "none.example": []})
        nodeId = bytes(range(32))
        contacts = [Contact("two.example", 7402, nodeId), Contact("198.51.100.9", 7403), Contact("none.example", 1)]
        resolved = self.successResultOf(Deferred.fromCoroutine(resolveContacts(resolver, contacts)))
        self.assertEqual(
            resolved, [Contact("192.0.2.1", 7402, nodeId), Contact("2001:db8::1", 7402, nodeId), Contact("198.51.100.9", 7403)]
        )

    def test_resolvedOnEveryTry(self):
        """
        A node that cannot join through a named contact asks the resolver again on each try, so
        a contact whose address changed is found.
        """
        from twisted.internet.task import Clock

        from phantom.identity import Identity
        from phantom.link.testing import MemoryNetwork
        from phantom.netdb.service import DhtNode

        clock = Clock()
        network = MemoryNetwork(clock)
        resolver = FakeResolver({})
        links = network.linkService(nodeId=Identity.generate().nodeId)
        dht = DhtNode(
            Identity.generate(), links, clock, address=links.address, bootstrap=(Contact("boot.example", 7402),),
            resolve=lambda contacts: resolveContacts(resolver, contacts),
        )
        dht.startService()
        self.addCleanup(dht.stopService)
        for _ in range(300):
            clock.advance(1)
        self.assertGreater(len(resolver.asked), 3)
        self.assertEqual(set(resolver.asked), {"boot.example"})
        self.assertFalse(dht.joined.called)


class SourceAddressTests(SynchronousTestCase):
    def test_loopback(self):
        """The kernel reaches a loopback address from the loopback."""
        self.assertEqual(sourceAddressTo("127.0.0.1"), "127.0.0.1")


def dataDirectory(testCase):
    directory = tempfile.mkdtemp(prefix="ph", dir="/tmp")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


class TwoNodesTests(TestCase):
    timeout = 60

    def start(self, **options):
        config = resolveConfig(dataDir=dataDirectory(self), apiAddress=f"127.0.0.1:{freePort()}", serve="none", **options)
        node = PhantomNode(config, reactor)
        node.privilegedStartService()
        node.startService()
        self.addCleanup(node.stopService)
        return node

    async def test_advertisedAndEveryAddress(self):
        """
        Node A binds 127.0.0.1 and advertises another loopback address that reaches it (a port
        forward, as a NAT gives); node B binds every address and joins through C{localhost:PORT}.
        B learns the address to publish (127.0.0.1, what A sees) and A learns B; B finds A's node
        record at the advertised address and reaches A through it.
        """
        forwarded = freshLoopbackAddress()
        port = freePort("127.0.0.1")
        a = self.start(port=str(port), listenAddress="127.0.0.1", advertiseAddress=forwarded)
        self.assertEqual(a.links.address, (forwarded, port))
        self.assertEqual(a.dht.address, (forwarded, port))
        forward = portforward.ProxyFactory("127.0.0.1", port)
        connections = []
        forward.protocol = type("Counted", (portforward.ProxyServer,), {"connectionMade": lambda self: (connections.append(1), portforward.ProxyServer.connectionMade(self))})
        listening = reactor.listenTCP(port, forward, interface=forwarded)
        self.addCleanup(listening.stopListening)

        b = self.start(port="0", bootstrap=f"localhost:{port}")
        self.assertTrue(b.config.listenEverywhere)
        await b.dht.joined
        await until(lambda: b.dht.address is not None)
        bPort = b.links.listeningAddress.port
        self.assertEqual(b.dht.address, ("127.0.0.1", bPort))
        self.assertEqual(b.links.address, ("127.0.0.1", bPort))
        await until(lambda: any(contact.nodeId == b.nodeId and contact.port == bPort for contact in a.dht.table))

        record = await b.dht.findRecord(Table.NODE, a.nodeId)
        self.assertEqual((record.host, record.port), (forwarded, port))
        link = await b.links.connect(forwarded, port, Purpose.ECHO, nodeId=a.nodeId)
        self.addCleanup(link.close)
        self.assertTrue(connections)
        aRecord = await a.dht.findRecord(Table.NODE, b.nodeId)
        self.assertEqual((aRecord.host, aRecord.port), ("127.0.0.1", bPort))


class EveryAddressTests(TestCase):
    async def test_listensOnIPv6AndIPv4(self):
        """One port takes IPv4 and IPv6 connections (where the host has IPv6)."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Factory, Protocol

        port = await EveryAddressEndpoint(reactor, 0).listen(Factory.forProtocol(Protocol))
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        for endpoint in (TCP4ClientEndpoint(reactor, "127.0.0.1", number), TCP6ClientEndpoint(reactor, "::1", number)):
            if isinstance(endpoint, TCP6ClientEndpoint) and port.getHost().type == "TCP" and isinstance(port.getHost(), IPv4Address):
                continue
            protocol = await connectProtocol(endpoint, Protocol())
            protocol.transport.loseConnection()
