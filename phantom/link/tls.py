"""
TLS 1.3 contexts for links, authenticated by node-id pins instead of certificate authorities.

Both sides present their self-signed communication certificate. The server requires a client
certificate and learns the caller's node id from it; an outbound connection may pin the node id
it expects, and the handshake fails when the peer's key does not hash to it.
"""

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi, lib as _lib
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


# Records straight through OpenSSL
#
# pyOpenSSL's recv, send and bio_read allocate a fresh buffer per call (32 KiB for Twisted's
# reads), check three callback helpers and turn every "nothing yet" into a raised WantReadError:
# in a link's reading, each record ended in two of them (the read after the record, and the look
# into the send buffer that found nothing). The functions below call the same OpenSSL functions
# through pyOpenSSL's own bindings, on pyOpenSSL's own objects (C{Connection._ssl}, C{_into_ssl},
# C{_from_ssl}), into two buffers shared by every connection, and answer "nothing yet" with a
# value; every other outcome is left to pyOpenSSL's C{Connection._raise_ssl_error}, so errors
# raise what pyOpenSSL's own calls raise. C{tests/link/test_tlscalls.py} checks each of these
# internals and fails, naming them, when a pyOpenSSL release moves them.

RECORD_PLAINTEXT = 2**14
"""The most plaintext bytes one TLS record carries (RFC 8446, 5.1)."""

SEND_BIO_READ = 2**15
"""Bytes taken out of TLS's send buffer at most per read of it, as Twisted's TLS does."""

_plaintext = _ffi.new("char[]", RECORD_PLAINTEXT)
_ciphertext = _ffi.new("char[]", SEND_BIO_READ)
# One of each for every connection: a call fills one and its bytes are copied out at once.

_WANT_READ = _lib.SSL_ERROR_WANT_READ


def feed(connection, data):
    """
    Put bytes read from the socket into C{connection}'s receive buffer (C{bio_write}).

    @param data: bytes or a memoryview.
    """
    size = len(data)
    if _lib.BIO_write(connection._into_ssl, _ffi.from_buffer(data), size) != size:
        raise SSL.Error(f"OpenSSL's receive buffer took fewer than {size} bytes")


def receive(connection):
    """
    Decrypt the next record of application data (C{recv}).

    @return: its plaintext, or C{None} when C{connection} holds no whole record of it yet.
    @raise SSL.Error: what pyOpenSSL's C{recv} raises otherwise (C{ZeroReturnError} at the
        peer's close_notify).
    """
    ssl = connection._ssl
    size = _lib.SSL_read(ssl, _plaintext, RECORD_PLAINTEXT)
    if size > 0:
        return _ffi.buffer(_plaintext, size)[:]
    if _lib.SSL_get_error(ssl, size) == _WANT_READ:
        return None
    connection._raise_ssl_error(ssl, size)
    raise SSL.Error(f"SSL_read returned {size} without an error")


def seal(connection, data):
    """
    Encrypt C{data}, at most L{RECORD_PLAINTEXT} bytes, into one record (C{send}); take it
    with L{output}.

    @param data: bytes or a memoryview.
    @return: how many bytes were taken.
    @raise SSL.Error: what pyOpenSSL's C{send} raises (C{WantReadError} when TLS must read first).
    """
    ssl = connection._ssl
    size = _lib.SSL_write(ssl, _ffi.from_buffer(data), len(data))
    if size > 0:
        return size
    connection._raise_ssl_error(ssl, size)
    raise SSL.Error(f"SSL_write returned {size} without an error")


def output(connection):
    """
    @return: everything C{connection} has to send (C{bio_read} until it is empty), C{b""} if
        nothing: a look that finds nothing costs no exception.
    """
    source = connection._from_ssl
    size = _lib.BIO_read(source, _ciphertext, SEND_BIO_READ)
    if size <= 0:
        return b""
    data = _ffi.buffer(_ciphertext, size)[:]
    while size == SEND_BIO_READ:
        size = _lib.BIO_read(source, _ciphertext, SEND_BIO_READ)
        if size > 0:
            data += _ffi.buffer(_ciphertext, size)[:]
    return data
