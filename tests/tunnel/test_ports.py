"""Served and forwarded ports: the short forms and Twisted endpoint strings (--serve, --forward)."""

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import TunnelSettings
from phantom.errors import ConfigError
from phantom.tunnel.ports import EchoService, TunnelPorts, TunnelProxyFactory, inboundFactory


class PausableTransport(StringTransport):
    """What a tunnel gives a served connection: a transport that can be paused."""


class ServeTests(SynchronousTestCase):
    """What answers inbound tunnels."""

    def inbound(self, serve):
        reactor = MemoryReactorClock()
        factory = inboundFactory(TunnelSettings(serve=serve).served(), reactor)
        return reactor, factory

    def test_echoAndNone(self):
        self.assertIsNone(self.inbound("none")[1])
        self.assertIs(self.inbound("echo")[1].protocol, EchoService)

    def test_hostPort(self):
        """HOST:PORT: each inbound tunnel is passed on over TCP."""
        reactor, factory = self.inbound("127.0.0.1:8080")
        factory.buildProtocol(None).makeConnection(PausableTransport())
        self.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients], [("127.0.0.1", 8080)])

    def test_unixEndpoint(self):
        """unix:PATH: each inbound tunnel is passed on to a unix socket."""
        reactor, factory = self.inbound("unix:/run/app.sock")
        self.assertIsInstance(factory, TunnelProxyFactory)
        factory.buildProtocol(None).makeConnection(PausableTransport())
        self.assertEqual([address for address, *_ in reactor.unixClients], ["/run/app.sock"])

    def test_tcpEndpoint(self):
        """tcp:host=H:port=P, as Twisted users write it."""
        reactor, factory = self.inbound("tcp:host=127.0.0.1:port=8081")
        factory.buildProtocol(None).makeConnection(PausableTransport())
        self.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients], [("127.0.0.1", 8081)])


class ForwardTests(SynchronousTestCase):
    """Local ports carried through tunnels."""

    def test_forms(self):
        """HOST:PORT=AP and ENDPOINT=AP listen where they say."""
        reactor = MemoryReactorClock()
        settings = TunnelSettings(forward="127.0.0.1:9000=fd00::1, tcp:9001:interface=127.0.0.2=fd00::2, unix:/run/ap.sock=fd00::3")
        ports = TunnelPorts(None, None, settings, reactor)
        ports.privilegedStartService()
        self.assertEqual([(port, interface) for port, _, _, interface in reactor.tcpServers], [(9000, "127.0.0.1"), (9001, "127.0.0.2")])
        self.assertEqual([address for address, *_ in reactor.unixServers], ["/run/ap.sock"])
        self.assertEqual([ap for _, _, ap in ports.forwarded], ["fd00::1", "fd00::2", "fd00::3"])

    def test_refused(self):
        """Malformed forwards and serves are configuration errors naming the option."""
        for bad in ("tcp:x=fd00::1", "bogus:1=fd00::1", "127.0.0.1:9000=10.0.0.1", "127.0.0.1:9000"):
            self.assertRaises(ConfigError, TunnelSettings, forward=bad)
        for bad in ("nowhere", "bogus:x", "tcp:host=x"):
            self.assertRaises(ConfigError, TunnelSettings, serve=bad)

    @given(st.text(alphabet=string.ascii_letters + string.digits + ":=./,[]\\ ", max_size=40))
    def test_anyText(self, text):
        """Any text is a forward and a serve, or a ConfigError; nothing else."""
        for key in ("forward", "serve"):
            try:
                TunnelSettings(**{key: text})
            except ConfigError:
                pass
