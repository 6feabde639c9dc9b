"""
Tunnels for programs that know nothing of Phantom: inbound tunnels answered by an echo or passed
on to a local TCP service (as a hidden service's port is), and local TCP ports whose connections
are carried through tunnels to an AP-address. Both run over end-to-end TLS
(L{phantom.tunnel.endpoint}); the byte shovelling is C{twisted.protocols.portforward}'s.
"""

import os

from twisted.application.service import Service
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols import portforward

from phantom.address import formatHostPort, parseAddress, serverEndpoint
from phantom.tunnel.endpoint import TunnelClientEndpoint, TunnelServerEndpoint


class EchoService(Protocol):
    """Sends back whatever arrives: what a node serves on its AP-address unless told otherwise."""

    def dataReceived(self, data):
        self.transport.write(data)


class TunnelProxyServer(portforward.ProxyServer):
    """A connection passed on through the factory's client endpoint: a tunnel, or a served program."""

    def connectionMade(self):
        self.transport.pauseProducing()
        client = self.clientProtocolFactory()
        client.setServer(self)
        connecting = self.factory.endpoint.connect(client)
        connecting.addErrback(self._failed)

    def _failed(self, failure):
        self.factory.log.warn("{what}: {why}", what=self.factory.failed, why=failure.getErrorMessage())
        self.transport.loseConnection()


class TunnelProxyFactory(Factory):
    """
    Makes a L{TunnelProxyServer} for each connection, all to C{endpoint}.

    @param failed: what the warning says when C{endpoint} cannot be reached.
    """

    protocol = TunnelProxyServer
    log = Logger()

    def __init__(self, endpoint, failed="no tunnel for a local connection"):
        self.endpoint = endpoint
        self.failed = failed


def inboundFactory(served, reactor):
    """
    @param served: what L{phantom.config.TunnelSettings.served} gives: C{echo}, C{none},
        C{(host, port)} or a client endpoint string.
    @return: the factory of what answers inbound tunnels, or C{None} to refuse them.
    """
    if served == "none":
        return None
    if served == "echo":
        return Factory.forProtocol(EchoService)
    if isinstance(served, str):
        return TunnelProxyFactory(clientFromString(reactor, served), failed=f"cannot pass an inbound tunnel on to {served}")
    factory = portforward.ProxyFactory(*served)
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
        """C{(host, port, apText)} of each forwarded port, as bound (a unix socket: C{(path, None, apText)})."""

    def privilegedStartService(self):
        super().privilegedStartService()
        for listen, apText in self._settings.forwards():
            endpoint = TunnelClientEndpoint(self._tunnels, parseAddress(apText))
            if isinstance(listen, str):
                server, where = serverFromString(self._reactor, listen), listen
            else:
                server, where = serverEndpoint(self._reactor, *listen), formatHostPort(*listen)
            listening = server.listen(TunnelProxyFactory(endpoint))
            listening.addCallback(self._forwarding, apText)
            listening.addErrback(lambda failure, where=where: self.log.failure("cannot forward {where}", failure, where=where))

    def _forwarding(self, port, apText):
        self._listening.append(port)
        bound = port.getHost()
        host, portNumber = (bound.host, bound.port) if hasattr(bound, "port") else (os.fsdecode(bound.name), None)
        self.forwarded.append((host, portNumber, apText))
        where = formatHostPort(host, portNumber) if portNumber is not None else host
        self.log.info("forwarding {where} through tunnels to {ap}", where=where, ap=apText)

    def startService(self):
        super().startService()
        factory = self._inbound or inboundFactory(self._settings.served(), self._reactor)
        if factory is not None:
            listening = TunnelServerEndpoint(self._tunnels, self._endToEnd).listen(factory)
            listening.addCallback(self._listening.append)
            listening.addErrback(lambda failure: self.log.failure("cannot serve this node's AP-address", failure))

    def stopService(self):
        super().stopService()
        ports, self._listening = self._listening, []
        for port in ports:
            port.stopListening()
