"""
End-to-end TLS inside tunnels (paper §7.3), and Twisted endpoints that run any protocol over it.

The two owners of a tunnel run TLS 1.3 over it, each presenting a self-signed certificate for
a routing key: the acceptor its own (that of its published AP-address), the opener that of the
exit path the tunnel was opened over (its exit AP, L{phantom.tunnel.identities}). The
AP-address is the pin: the side that opens a tunnel accepts only the key that hashes to the
AP-address it meant to reach, and the side that accepts learns the opener's exit AP from its key. Exit and entry nodes see only TLS records; one that reads, alters or
answers in the place of the far end gets nothing but a failed handshake or a closed connection.
"""

import os
from functools import partial

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from phantom.crypto import apAddressOf, selfSignedCertificate
from phantom.link.tls import ClientConnectionCreator, RecordTLSFactory, ServerConnectionCreator, makePinnedContext, rejectionOf
from phantom.tunnel.transport import TunnelAddress


def apAddressOfCertificate(certificate):
    """The AP-address of the routing key a certificate carries."""
    return apAddressOf(certificate.public_key())


class EndToEnd:
    """
    TLS contexts for the inside of tunnels, with a certificate for a routing key. Its records
    go through the links' own record path (L{phantom.link.tls.RecordTLSProtocol}): a write is
    encrypted at once, and the tunnel's end gathers a turn's records into cells.

    @param routingKey: an Ed25519 routing key: the node's own (its published AP-address's) for
        the tunnels it accepts, an exit path's for those opened over it.
    @param clock: C{IReactorTime} of TLS's timers (the global reactor if C{None}).
    """

    def __init__(self, routingKey, clock=None):
        self._clock = clock
        certificate = selfSignedCertificate(routingKey)
        self.apAddress = apAddressOfCertificate(certificate)
        self._client = makePinnedContext(routingKey, certificate, apAddressOfCertificate, "AP-address", server=False)
        self._server = makePinnedContext(routingKey, certificate, apAddressOfCertificate, "AP-address", server=True)

    def clientFactory(self, apAddress, factory):
        """A factory of TLS protocols that reach only C{apAddress}, wrapping C{factory}'s."""
        return RecordTLSFactory(ClientConnectionCreator(self._client, apAddress), True, factory, clock=self._clock)

    def serverFactory(self, factory):
        """A factory of TLS protocols that accept any AP-address's owner, wrapping C{factory}'s."""
        return RecordTLSFactory(ServerConnectionCreator(self._server), False, factory, clock=self._clock)


@implementer(IHandshakeListener)
class _Handshaking(Protocol):
    """
    Sits between the TLS layer and the application's protocol: passes everything on, and fires
    C{handshook} once the far end is authenticated (or fails it when the connection ends first).
    """

    def __init__(self, application, tunnel):
        self.application = application
        self._tunnel = tunnel
        self.handshook = Deferred()

    def makeConnection(self, transport):
        Protocol.makeConnection(self, transport)
        self.application.makeConnection(transport)

    def handshakeCompleted(self):
        presented = self.transport.getHandle().presentedNodeId
        self._tunnel.peerAddress = TunnelAddress(presented)
        if IHandshakeListener.providedBy(self.application):
            self.application.handshakeCompleted()
        self.handshook.callback(self.application)

    def dataReceived(self, data):
        self.application.dataReceived(data)

    def connectionLost(self, reason):
        if not self.handshook.called:
            rejection = rejectionOf(self.transport.getHandle()) if self.transport is not None else None
            why = rejection if rejection is not None else reason.getErrorMessage()
            self.handshook.errback(Failure(ConnectionRefusedError(f"end-to-end TLS failed: {why}")))
        self.application.connectionLost(reason)


class OneProtocolFactory:
    """A factory that hands out one protocol already made (what a TLS factory wraps, say)."""

    def __init__(self, protocol):
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol

    def doStart(self):
        pass

    def doStop(self):
        pass


def runOver(tunnel, tlsFactoryOf, application):
    """
    Run C{application} over end-to-end TLS over C{tunnel}.

    @param tlsFactoryOf: L{EndToEnd.serverFactory}, or L{EndToEnd.clientFactory} with the
        AP-address bound.
    @return: a Deferred that fires with C{application} once the far end is authenticated.
    """
    handshaking = _Handshaking(application, tunnel)
    tunnel.start(tlsFactoryOf(OneProtocolFactory(handshaking)).buildProtocol(tunnel.getPeer()))
    return handshaking.handshook


@implementer(IStreamClientEndpoint)
class TunnelClientEndpoint:
    """
    Connects to an AP-address through a tunnel over one of this node's exit paths, with
    end-to-end TLS pinned to the AP-address; the far end sees the exit AP of that path, never
    this node's published AP-address.

    @param tunnels: the node's L{phantom.tunnel.service.TunnelService}.
    @param apAddress: the 16-byte AP-address to reach.
    @param source: the exit AP to connect from (over its exit path); any if C{None}.
    """

    def __init__(self, tunnels, apAddress, source=None):
        self._tunnels = tunnels
        self._apAddress = apAddress
        self._source = source

    def connect(self, protocolFactory):
        """
        @return: a Deferred of the protocol C{protocolFactory} built, once the far end is
            authenticated; L{phantom.tunnel.service.TunnelFailed} or C{ConnectionRefusedError}
            if there is no tunnel or the far end is not the AP-address's owner.
        """
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, protocolFactory):
        tunnel = await self._tunnels.open(self._apAddress, self._source)
        identity = self._tunnels.exits.ofTunnel(tunnel)
        if identity is None:
            raise ConnectionRefusedError("the tunnel closed as it opened")
        application = protocolFactory.buildProtocol(TunnelAddress(self._apAddress))
        if application is None:
            tunnel.loseConnection()
            raise ConnectionRefusedError("the protocol factory built no protocol")
        return await runOver(tunnel, partial(identity.endToEnd.clientFactory, self._apAddress), application)


@implementer(IStreamServerEndpoint)
class TunnelServerEndpoint:
    """
    Accepts tunnels to this node's AP-address (over its entry paths), with end-to-end TLS; the
    accepted protocol's C{transport.getPeer()} is the opener's AP-address once authenticated.
    One listener at a time takes a node's inbound tunnels: L{listen} fails with
    C{CannotListenError} while another listens.

    @param tunnels: the node's L{phantom.tunnel.service.TunnelService}.
    @param endToEnd: the node's L{EndToEnd}.
    """

    def __init__(self, tunnels, endToEnd):
        self._tunnels = tunnels
        self._endToEnd = endToEnd

    def listen(self, protocolFactory):
        def accept(tunnel):
            application = protocolFactory.buildProtocol(tunnel.getPeer())
            if application is None:
                tunnel.loseConnection()
                return
            handshook = runOver(tunnel, self._endToEnd.serverFactory, application)
            handshook.addErrback(lambda failure: None)

        try:
            return succeed(self._tunnels.listen(accept))
        except CannotListenError:
            return fail()


class EchoProbe(Protocol):
    """Times one 1 KiB round trip to an echo at the far end of a tunnel."""

    SIZE = 1024

    def __init__(self):
        self._received = 0
        self._echoed = None

    def measure(self, clock, timeout):
        """
        @return: a Deferred of the seconds the probe took to come back, or -1.0 if it did not
            within C{timeout} (the far end serves something other than an echo).
        """
        started = clock.seconds()
        self._echoed = Deferred()
        self._echoed.addCallback(lambda echoed: clock.seconds() - started if echoed else -1.0)
        self._echoed.addTimeout(timeout, clock, onTimeoutCancel=lambda result, timeout: -1.0)
        self.transport.write(os.urandom(self.SIZE))
        return self._echoed

    def dataReceived(self, data):
        self._received += len(data)
        if self._received >= self.SIZE and self._echoed is not None and not self._echoed.called:
            self._echoed.callback(True)

    def connectionLost(self, reason):
        if self._echoed is not None and not self._echoed.called:
            self._echoed.callback(False)
