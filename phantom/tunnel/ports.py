"""
Tunnels for programs that know nothing of Phantom: inbound tunnels answered by an echo or passed
on to a local TCP service (as a hidden service's port is), and local TCP ports whose connections
are carried through tunnels to an AP-address. Both run over end-to-end TLS
(L{phantom.tunnel.endpoint}); the byte shovelling is C{twisted.protocols.portforward}'s.
"""

from twisted.application.service import Service
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols import portforward

from phantom.address import parseAddress, parseHostPort, serverEndpoint
from phantom.tunnel.endpoint import TunnelClientEndpoint, TunnelServerEndpoint


class EchoService(Protocol):
    """Sends back whatever arrives: what a node serves on its AP-address unless told otherwise."""

    def dataReceived(self, data):
        self.transport.write(data)


class TunnelProxyServer(portforward.ProxyServer):
    """A local connection carried through a tunnel to the factory's AP-address."""

    def connectionMade(self):
        self.transport.pauseProducing()
        client = self.clientProtocolFactory()
        client.setServer(self)
        connecting = self.factory.endpoint.connect(client)
        connecting.addErrback(self._failed)

    def _failed(self, failure):
        self.factory.log.warn("no tunnel for a local connection: {why}", why=failure.getErrorMessage())
        self.transport.loseConnection()


class TunnelProxyFactory(Factory):
    """Makes a L{TunnelProxyServer} for each local connection, all to C{endpoint}."""

    protocol = TunnelProxyServer
    log = Logger()

    def __init__(self, endpoint):
        self.endpoint = endpoint


def inboundFactory(serve, reactor):
    """
    @param serve: L{phantom.config.TunnelSettings.serve}.
    @return: the factory of what answers inbound tunnels, or C{None} to refuse them.
    """
    if serve == "none":
        return None
    if serve == "echo":
        return Factory.forProtocol(EchoService)
    host, port = parseHostPort(serve)
    factory = portforward.ProxyFactory(host, port)
    factory.protocol = type("ProxyServer", (portforward.ProxyServer,), {"reactor": reactor})
    return factory


class TunnelPorts(Service):
    """
    Serves this node's AP-address and listens on its forwarded ports while running.

    @param tunnels: the node's L{phantom.tunnel.service.TunnelService}.
    @param endToEnd: the node's L{phantom.tunnel.endpoint.EndToEnd}.
    @param settings: L{phantom.config.TunnelSettings}.
    @param inbound: the factory of what answers inbound tunnels, overriding C{settings.serve}
        (the tun frontend's packet tunnels).
    """

    log = Logger()

    def __init__(self, tunnels, endToEnd, settings, reactor, inbound=None):
        self._tunnels = tunnels
        self._endToEnd = endToEnd
        self._settings = settings
        self._reactor = reactor
        self._inbound = inbound
        self._listening = []
        """The ports listening while running: the forwarded ones, and the tunnels' inbound one."""
        self.forwarded = []
        """C{(host, port, apText)} of each forwarded port, as bound."""

    def privilegedStartService(self):
        super().privilegedStartService()
        for (host, port), apText in self._settings.forwards():
            endpoint = TunnelClientEndpoint(self._tunnels, parseAddress(apText))
            server = serverEndpoint(self._reactor, host, port)
            listening = server.listen(TunnelProxyFactory(endpoint))
            listening.addCallback(self._forwarding, apText)
            listening.addErrback(lambda failure, where=f"{host}:{port}": self.log.failure("cannot forward {where}", failure, where=where))

    def _forwarding(self, port, apText):
        self._listening.append(port)
        bound = port.getHost()
        self.forwarded.append((bound.host, bound.port, apText))
        self.log.info("forwarding {host}:{port} through tunnels to {ap}", host=bound.host, port=bound.port, ap=apText)

    def startService(self):
        super().startService()
        factory = self._inbound or inboundFactory(self._settings.serve, self._reactor)
        if factory is not None:
            listening = TunnelServerEndpoint(self._tunnels, self._endToEnd).listen(factory)
            listening.addCallback(self._listening.append)
            listening.addErrback(lambda failure: self.log.failure("cannot serve this node's AP-address", failure))

    def stopService(self):
        super().stopService()
        ports, self._listening = self._listening, []
        for port in ports:
            port.stopListening()
