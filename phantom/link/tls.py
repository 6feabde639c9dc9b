"""
TLS 1.3 contexts for links, authenticated by node-id pins instead of certificate authorities.

Both sides present their self-signed communication certificate. The server requires a client
certificate and learns the caller's node id from it; an outbound connection may pin the node id
it expects, and the handshake fails when the peer's key does not hash to it.
"""

from OpenSSL import SSL
from zope.interface import implementer
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator

from phantom.crypto import isCommunicationKey, nodeIdOfCertificate
from phantom.errors import PinMismatch


class _PinnedConnection(SSL.Connection):
    """A TLS connection that remembers the pin it expects and the one the peer presented."""

    expectedNodeId = None
    presentedNodeId = None
    rejection = None


def _peerVerifier(pinOf, what):
    """
    The verify callback of contexts that authenticate by pin: the peer's single self-signed
    certificate must carry an Ed25519 key, and C{pinOf(certificate)} must be the expected pin
    where one is set.
    """

    def verifyPeer(connection, certificate, errno, depth, ok):
        # Self-signed certificates fail the CA check (errno); the pin is the authentication.
        if depth != 0:
            connection.rejection = "peer sent a certificate chain; a single self-signed certificate is expected"
            return False
        peerCertificate = certificate.to_cryptography()
        if not isCommunicationKey(peerCertificate.public_key()):
            connection.rejection = "peer certificate does not carry an Ed25519 key"
            return False
        presented = pinOf(peerCertificate)
        connection.presentedNodeId = presented
        expected = getattr(connection, "expectedNodeId", None)
        if expected is not None and presented != expected:
            connection.rejection = PinMismatch(expected, presented, what)
            return False
        return True

    return verifyPeer


def makeContext(identity, *, server):
    """
    A TLS context for one side of every link of this node; build it once and reuse it.

    @param identity: the node's L{phantom.identity.Identity}.
    @param server: whether the context accepts connections (it then requires a client certificate).
    """
    return makePinnedContext(identity.communicationKey, identity.certificate, nodeIdOfCertificate, "node id", server=server)


def makePinnedContext(privateKey, certificate, pinOf, what, *, server):
    """
    A TLS 1.3 context presenting C{certificate}, that authenticates the peer by the pin
    C{pinOf(peerCertificate)} alone (L{ClientConnectionCreator} sets the one expected).

    @param privateKey: the Ed25519 key of C{certificate} (C{cryptography}).
    @param certificate: a self-signed C{cryptography} certificate.
    @param what: what the pin is, for error messages.
    @param server: whether the context accepts connections (it then requires a client certificate).
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.use_certificate(certificate)
    context.use_privatekey(privateKey)
    context.check_privatekey()
    # No resumption: every connection shows its certificate, so every pin is checked.
    context.set_options(SSL.OP_NO_TICKET)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # OpenSSL frees a connection's record buffers (about 25 KiB) while it has nothing to read
    # or write, as most links and tunnel links are most of the time (docs/scale.md).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server else 0)
    context.set_verify(mode, _peerVerifier(pinOf, what))
    return context


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator:
    """Makes the TLS connection for each inbound link from one shared server context."""

    def __init__(self, context):
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol):
        return _PinnedConnection(self._context, None)


@implementer(IOpenSSLClientConnectionCreator)
class ClientConnectionCreator:
    """
    Makes the TLS connection for one outbound link, pinned to C{expectedNodeId} when given.

    @ivar connection: the connection made, to read the rejection reason from after a failure.
    """

    def __init__(self, context, expectedNodeId=None):
        self._context = context
        self._expectedNodeId = expectedNodeId
        self.connection = None

    def clientConnectionForTLS(self, tlsProtocol):
        connection = _PinnedConnection(self._context, None)
        connection.expectedNodeId = self._expectedNodeId
        connection.set_connect_state()
        self.connection = connection
        return connection


def rejectionOf(connection):
    """
    @return: why our side refused the peer's certificate during the handshake, or C{None}.
    """
    return getattr(connection, "rejection", None)
