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
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

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
# C{_from_ssl}), into buffers shared by every connection, and answer "nothing yet" with a
# value; every other outcome is left to pyOpenSSL's C{Connection._raise_ssl_error}, so errors
# raise what pyOpenSSL's own calls raise. C{tests/link/test_writenow.py} checks each of these
# internals and fails, naming them, when a pyOpenSSL release moves them.

RECORD_PLAINTEXT = 2**14
"""The most plaintext bytes one TLS record carries (RFC 8446, 5.1)."""

_plaintext = _ffi.new("char[]", RECORD_PLAINTEXT)
# One for every connection: a read fills it and its bytes are copied out at once.

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


OUTGOING = 2**19
"""Bytes of records a write gathers in shared memory (31 full records: an outbox's 17 cells)."""

_MOST_RECORD = RECORD_PLAINTEXT + 256
# What one record may take at most: its plaintext, the inner content type, the AEAD tag and
# the header, with room to spare.

_gathered = _ffi.new("char[]", RECORD_PLAINTEXT)
_gatheredView = memoryview(_ffi.buffer(_gathered))
_outgoing = _ffi.new("char[]", OUTGOING)
_outgoingView = memoryview(_ffi.buffer(_outgoing))
# Shared by every connection, like the two above. A write fills them and calls its send once,
# at the end, when nothing waits in them but the records it hands over; the send takes or
# copies those before it calls anything that may write again (a producer paused by a full
# buffer may write to a link: the same one, or another).


class _Records:
    """The records of one write: in the shared buffer, and those that did not fit, copied out."""

    def __init__(self):
        self.offset = 0
        self._overflow = []

    def makeRoom(self):
        """Make room in the shared buffer for one more record."""
        if OUTGOING - self.offset < _MOST_RECORD:
            self._overflow.append(bytes(_outgoingView[: self.offset]))
            self.offset = 0

    def seal(self, connection, chunk, length):
        """
        Encrypt C{length} bytes at C{chunk} into one record and move it into the shared buffer.

        @return: C{None}, or what C{SSL_write} returned when it did not take them.
        """
        self.makeRoom()
        written = _lib.SSL_write(connection._ssl, chunk, length)
        if written != length:
            return written
        self.drain(connection._from_ssl)
        return None

    def drain(self, source):
        """Move what TLS has to send (C{source}, its send buffer) into the shared buffer."""
        while True:
            size = _lib.BIO_read(source, _outgoing + self.offset, OUTGOING - self.offset)
            if size <= 0:
                return
            self.offset += size
            if self.offset == OUTGOING:
                self._overflow.append(bytes(_outgoingView))
                self.offset = 0

    def sendTo(self, send):
        """
        Hand every record to C{send} in one call (so that what it writes in turn comes after
        them all): from the shared buffer, or joined when they did not fit.
        """
        if self._overflow:
            self._overflow.append(bytes(_outgoingView[: self.offset]))
            data, self._overflow, self.offset = b"".join(self._overflow), [], 0
            send(memoryview(data))
        elif self.offset:
            offset, self.offset = self.offset, 0
            send(_outgoingView[:offset])


def sendPending(connection, send):
    """
    Pass what C{connection} has to send (its send buffer: a key update, an alert, a
    close_notify) to C{send}, as L{sealParts} passes records, or nothing when there is nothing:
    a look that finds nothing costs no exception.
    """
    records = _Records()
    records.drain(connection._from_ssl)
    records.sendTo(send)


def sealParts(connection, parts, send):
    """
    Encrypt the bytes of C{parts}, in order, into records of L{RECORD_PLAINTEXT} bytes (the
    last may be shorter; C{SSL_write}, C{send} of pyOpenSSL), and pass the records to C{send}
    side by side, once every part is sealed: in one call for up to L{OUTGOING} bytes of
    records, the parts neither joined nor copied but into one record at a time.

    @param parts: bytes-like objects, any sizes (a link's frames: header, payload, ...).
    @param send: called with a memoryview of the records; it must take or copy them before it
        calls anything that may write to a link (the memory is shared).
    @return: C{b""}, or the plaintext not sealed when TLS must read first (C{WantReadError}):
        the records made before it have been sent.
    @raise SSL.Error: another error; the records made before it have been sent.
    """
    if not isinstance(parts, (list, tuple)):
        parts = list(parts)
    if len(parts) == 1 and 0 < len(parts[0]) <= RECORD_PLAINTEXT:
        # One record from one part, the usual write (a frame of a small message, or a cell's):
        # what TLS then has to send fits the shared buffer, and one read of its buffer takes it.
        chunk, length = _ffi.from_buffer(parts[0]), len(parts[0])
        written = _lib.SSL_write(connection._ssl, chunk, length)
        if written != length:
            return _unsealed(connection, written, chunk, length, b"", (), _Records(), send)
        size = _lib.BIO_read(connection._from_ssl, _outgoing, OUTGOING)
        if size > 0:
            send(_outgoingView[:size])
        return b""
    records = _Records()
    filled = 0
    for index, part in enumerate(parts):
        part = memoryview(part).cast("B")
        size = len(part)
        start = 0
        while start < size:
            if filled == 0 and size - start >= RECORD_PLAINTEXT:
                # A whole record within this part: sealed from it, not gathered.
                chunk, length = _ffi.from_buffer(part[start : start + RECORD_PLAINTEXT]), RECORD_PLAINTEXT
                start += RECORD_PLAINTEXT
            else:
                taken = min(RECORD_PLAINTEXT - filled, size - start)
                _gatheredView[filled : filled + taken] = part[start : start + taken]
                filled += taken
                start += taken
                if filled < RECORD_PLAINTEXT:
                    continue
                chunk, length, filled = _gathered, RECORD_PLAINTEXT, 0
            failed = records.seal(connection, chunk, length)
            if failed is not None:
                return _unsealed(connection, failed, chunk, length, part[start:], parts[index + 1 :], records, send)
    if filled:
        failed = records.seal(connection, _gathered, filled)
        if failed is not None:
            return _unsealed(connection, failed, _gathered, filled, b"", (), records, send)
    records.sendTo(send)
    return b""


def _unsealed(connection, written, chunk, length, restOfPart, laterParts, records, send):
    """
    A record that C{SSL_write} did not take (C{written}: what it returned): send the records
    made before it, then return the plaintext from that record on if TLS must read first, or
    raise what pyOpenSSL raises.
    """
    # Copied before the records go: sending them may call code that writes (and seals).
    plaintext = b"".join([_ffi.buffer(chunk, length)[:], bytes(restOfPart), *map(bytes, laterParts)])
    records.sendTo(send)
    if written > 0:
        raise SSL.Error(f"SSL_write took {written} of {length} bytes")
    try:
        connection._raise_ssl_error(connection._ssl, written)
    except SSL.WantReadError:
        return plaintext
    raise SSL.Error(f"SSL_write returned {written} without an error")


class RecordTLSProtocol(TLSMemoryBIOProtocol):
    """
    TLS whose records, once the handshake is done, go in and out through OpenSSL's own calls
    (L{receive}, L{sealParts}: no allocation and no exception per record, a write's parts
    neither joined nor copied), and whose writes go into TLS at once: Twisted's default
    transport gathers small writes and encrypts them a reactor turn later. What it reads is
    fed to TLS whole; its records go to the transport's C{write} (a subclass may send them
    otherwise, L{_sendRecords}).

    Until the handshake is done, Twisted's own code runs (it buffers writes made meanwhile).
    """

    def dataReceived(self, data):
        if not self._handshakeDone:
            return super().dataReceived(data)
        if self._readRecordsIn(data):
            # What reading made TLS send (a key update, an alert): rarely anything.
            self._flushSendBIO()

    def _readRecordsIn(self, data):
        """
        Feed C{data} to TLS and hand over every whole record it completes.

        @return: whether the connection reads on.
        """
        if self._lostTLSConnection or self._aborted:
            return False
        feed(self._tlsConnection, data)
        if self._appSendBuffer:
            self._unbufferPendingWrites()
        self._readRecords()
        return not (self._lostTLSConnection or self._aborted)

    def _flushReceiveBIO(self):
        if not self._handshakeDone:
            # Errors in the handshake's callbacks are raised by pyOpenSSL's own recv.
            return super()._flushReceiveBIO()
        self._readRecords()
        self._flushSendBIO()

    def _readRecords(self):
        """Hand every whole record of application data to the protocol, as C{_flushReceiveBIO} does."""
        connection = self._tlsConnection
        while not self._lostTLSConnection:
            try:
                data = receive(connection)
            except SSL.ZeroReturnError:
                # The peer's close_notify.
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except SSL.Error:
                self._tlsShutdownFinished(Failure())
            else:
                if data is None:
                    return
                if not self._aborted:
                    self.wrappedProtocol.dataReceived(data)

    def _write(self, data):
        if self._lostTLSConnection or not data:
            return
        if not self._handshakeDone:
            return super()._write(data)
        self._seal((data,))

    def writeSequence(self, parts):
        if self.disconnecting and self._producer is None:
            return
        if not self._handshakeDone:
            return super().writeSequence(parts)
        if not self._lostTLSConnection:
            self._seal(parts)

    def _seal(self, parts):
        """Encrypt C{parts} and send the records with one write (L{sealParts}), or buffer what TLS cannot take yet."""
        try:
            unsealed = sealParts(self._tlsConnection, parts, self._sendRecords)
        except SSL.Error:
            self._tlsShutdownFinished(Failure())
        else:
            if unsealed:
                self._bufferedWrite(unsealed)

    def _sendRecords(self, records):
        """Send C{records} (a memoryview of shared memory: taken or copied before this returns)."""
        self.transport.write(bytes(records))

    def _flushSendBIO(self):
        sendPending(self._tlsConnection, self._sendRecords)


class RecordTLSFactory(TLSMemoryBIOFactory):
    """Makes L{RecordTLSProtocol}s."""

    protocol = RecordTLSProtocol
    noisy = False
