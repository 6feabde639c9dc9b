"""
L{writeNow} and L{LinkTLSProtocol} lean on Twisted and pyOpenSSL internals that no public API
offers: a TCP transport's buffer (C{FileDescriptor._tempDataLen}, C{dataBuffer}, C{offset}) tells
whether anything is still unsent; C{TLSMemoryBIOProtocol}'s C{_write}, C{_flushSendBIO} and
C{_flushReceiveBIO} are where TLS takes the link's writes, hands its records to the transport
and reads records, and its state attributes say where the connection is; pyOpenSSL's
C{Connection._ssl}, C{_into_ssl}, C{_from_ssl}, C{_raise_ssl_error} and the bindings in
C{OpenSSL._util} are what L{phantom.link.tls.receive} and the rest call. Should a release move
any of them, links could stop working, every record could wait a reactor turn, or a record
could overtake buffered bytes: these tests fail loudly instead, naming what to check.
"""

import struct

import OpenSSL
from hypothesis import given, settings, strategies as st
from OpenSSL import SSL
from OpenSSL._util import ffi, lib
from twisted.internet import abstract, tcp
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

import twisted

from phantom.identity import Identity
from phantom.link import service, tls
from phantom.link.service import LinkTLSProtocol, writeNow
from tests.link.helpers import connectionPairs, handshakeInMemory
from tests.link.test_service import echoLink

VERIFIED_TWISTED = (26, 10)
"""The newest Twisted release whose internals these tests were checked against by reading its
source (C{twisted/internet/abstract.py}, C{twisted/protocols/tls.py}); older ones back to the
lowest C{setup.cfg} allows have the same."""

VERIFIED_PYOPENSSL = (26, 4)
"""The newest pyOpenSSL release whose internals L{phantom.link.tls} calls were checked against by
reading its source (C{OpenSSL/SSL.py}: C{Connection.__init__}, C{recv}, C{send}, C{bio_read},
C{bio_write}, C{_raise_ssl_error})."""

WHAT_TO_CHECK = (
    "phantom.link.service.writeNow reads FileDescriptor._tempDataLen, dataBuffer and offset, and "
    "RecordTLSProtocol (and LinkTLSProtocol) override TLSMemoryBIOProtocol's dataReceived, _write, "
    "writeSequence, _flushSendBIO and _flushReceiveBIO, call its _bufferedWrite, _unbufferPendingWrites, "
    "_shutdownTLS and _tlsShutdownFinished and read its _handshakeDone, _appSendBuffer, _lostTLSConnection, "
    "_aborted and _tlsConnection; check that Twisted {version} still has them with the same meaning, then "
    "raise VERIFIED_TWISTED in {module}"
)

PYOPENSSL_TO_CHECK = (
    "phantom.link.tls (feed, receive, sealParts, sendPending) calls OpenSSL._util.lib's SSL_read, SSL_write, "
    "BIO_read, BIO_write and SSL_get_error on Connection._ssl, _into_ssl and _from_ssl, and leaves "
    "errors to Connection._raise_ssl_error; check that pyOpenSSL {version} still has them with the "
    "same meaning, then raise VERIFIED_PYOPENSSL in {module}"
)


def pyOpenSSLToCheck():
    return PYOPENSSL_TO_CHECK.format(version=OpenSSL.__version__, module=__name__)


class Descriptor(abstract.FileDescriptor):
    """A file descriptor whose writes are recorded, taking all or C{room} bytes at a time."""

    def __init__(self):
        super().__init__(reactor=MemoryReactor())
        self.connected = True
        self.written = []
        self.room = None

    SEND_LIMIT = 2**17

    def writeSomeData(self, data):
        taken = bytes(data[: min(self.SEND_LIMIT, self.room if self.room is not None else len(data))])
        self.written.append(taken)
        return len(taken)


class TwistedVersionTests(SynchronousTestCase):
    def test_verifiedRelease(self):
        """The installed Twisted is no newer than the release these internals were checked on."""
        version = twisted.version
        self.assertLessEqual(
            (version.major, version.minor),
            VERIFIED_TWISTED,
            WHAT_TO_CHECK.format(version=version.public(), module=__name__),
        )

    def test_verifiedPyOpenSSL(self):
        """The installed pyOpenSSL is no newer than the release its internals were checked on."""
        release = tuple(int(part) for part in OpenSSL.__version__.split(".")[:2])
        self.assertLessEqual(release, VERIFIED_PYOPENSSL, pyOpenSSLToCheck())


class WriteNowTests(SynchronousTestCase):
    """What L{writeNow} relies on in a C{FileDescriptor}, checked on Twisted's own class."""

    def test_idleWritesAtOnce(self):
        """With nothing buffered, the bytes go straight to C{writeSomeData}, and nothing waits."""
        fd = Descriptor()
        writeNow(fd, b"record")
        self.assertEqual(fd.written, [b"record"], WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
        self.assertNotIn(fd, fd.reactor.getWriters())

    def test_behindBufferedBytes(self):
        """
        Bytes a plain C{write} buffered make C{writeNow} buffer too, behind them: a record never
        overtakes one that is waiting.
        """
        fd = Descriptor()
        fd.write(b"first")
        writeNow(fd, b"second")
        self.assertEqual(fd.written, [])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"firstsecond")

    def test_behindPartlySentBuffer(self):
        """The same when the buffer was partly sent (its C{offset} not at its end)."""
        fd = Descriptor()
        fd.write(b"first")
        fd.room = 2
        fd.doWrite()  # "fi" sent; "rst" still in dataBuffer
        fd.room = None
        writeNow(fd, b"second")
        self.assertEqual(fd.written, [b"fi"])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"firstsecond")

    def test_restBuffered(self):
        """What the socket does not take is buffered, in order, for the reactor to send."""
        fd = Descriptor()
        fd.room = 3
        writeNow(fd, b"record")
        fd.room = None
        writeNow(fd, b"next")
        self.assertEqual(fd.written, [b"rec"])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"recordnext")

    def test_beyondTheSendLimit(self):
        """
        A write longer than the transport's SEND_LIMIT (what one C{writeSomeData} offers the
        socket, 128 KiB for TCP) goes on in further calls while the socket takes all it is
        offered; once it takes less, the rest is buffered.
        """
        fd = Descriptor()
        fd.SEND_LIMIT = 4
        writeNow(fd, memoryview(b"0123456789"))
        self.assertEqual((fd.written, fd.dataBuffer, fd._tempDataLen), ([b"0123", b"4567", b"89"], b"", 0))
        fd = Descriptor()
        fd.SEND_LIMIT, fd.room = 4, 3
        writeNow(fd, b"0123456789")
        self.assertEqual(fd.written, [b"012"])
        fd.room = None
        for _ in range(3):
            fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"0123456789")

    def test_tcpConnectionHasTheBuffer(self):
        """Twisted's TCP connections are the C{FileDescriptor}s checked here."""
        self.assertTrue(issubclass(tcp.Connection, abstract.FileDescriptor))
        self.assertIs(tcp.Connection.doWrite, abstract.FileDescriptor.doWrite)


class TLSHookTests(TestCase):
    """L{LinkTLSProtocol}'s overrides are where Twisted's TLS reads and writes records."""

    def test_overridesTwistedsMethods(self):
        """The methods overridden are Twisted's, and ours replace them."""
        for name in ("dataReceived", "_write", "_flushSendBIO", "_flushReceiveBIO"):
            self.assertTrue(callable(getattr(TLSMemoryBIOProtocol, name, None)), WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
            self.assertIsNot(getattr(LinkTLSProtocol, name), getattr(TLSMemoryBIOProtocol, name), name)
        for name in ("_shutdownTLS", "_tlsShutdownFinished", "_bufferedWrite", "_unbufferPendingWrites"):
            self.assertTrue(callable(getattr(TLSMemoryBIOProtocol, name, None)), WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))

    async def test_stateOfARealLink(self):
        """A real link's TLS has the state attributes read, with the meanings they are read for."""
        server, client, link, handler = await echoLink(self)
        protocol = link.transport
        self.assertIsInstance(protocol, LinkTLSProtocol)
        state = {name: getattr(protocol, name, "missing") for name in ("_handshakeDone", "_appSendBuffer", "_lostTLSConnection", "_aborted")}
        self.assertEqual(state, {"_handshakeDone": True, "_appSendBuffer": [], "_lostTLSConnection": False, "_aborted": False}, WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
        self.assertIs(protocol._tlsConnection, protocol.getHandle())

    async def test_recordsLeaveThroughTheOverrides(self):
        """A frame sent on a real link goes into TLS through L{LinkTLSProtocol._write} and reaches the socket through L{writeNow}."""
        server, client, link, handler = await echoLink(self)
        calls = []
        original = LinkTLSProtocol._write

        def counted(protocol, data):
            calls.append(protocol)
            original(protocol, data)

        self.patch(LinkTLSProtocol, "_write", counted)
        written = []
        self.patch(service, "writeNow", lambda transport, data: (written.append(transport), writeNow(transport, data)))
        echoed = handler.nextFrame()
        link.sendFrame(b"through the hook")
        self.assertIn(link.transport, calls, WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
        self.assertIn(link.transport.transport, written)
        self.assertEqual(await echoed, b"through the hook")


class PyOpenSSLCallsTests(SynchronousTestCase):
    """What L{phantom.link.tls}'s calls rely on in pyOpenSSL, checked on its own connections."""

    def pair(self):
        pair = connectionPairs(Identity.generate(), Identity.generate())()
        handshakeInMemory(pair)
        return pair

    def test_internals(self):
        """A connection over memory BIOs has the pointers called with, and the bindings have the functions."""
        server, client = self.pair()
        for name, kind in (("_ssl", "SSL *"), ("_into_ssl", "BIO *"), ("_from_ssl", "BIO *")):
            pointer = getattr(server, name, None)
            self.assertIsInstance(pointer, ffi.CData, pyOpenSSLToCheck())
            self.assertEqual(ffi.typeof(pointer).cname, kind, pyOpenSSLToCheck())
        self.assertTrue(callable(getattr(server, "_raise_ssl_error", None)), pyOpenSSLToCheck())
        for name in ("SSL_read", "SSL_write", "BIO_read", "BIO_write", "SSL_get_error"):
            self.assertTrue(callable(getattr(lib, name, None)), pyOpenSSLToCheck())
        self.assertEqual(lib.SSL_ERROR_WANT_READ, 2, pyOpenSSLToCheck())

    @staticmethod
    def pending(connection):
        """@return: what L{tls.sendPending} passes on for C{connection}, joined."""
        sent = []
        tls.sendPending(connection, lambda records: sent.append(bytes(records)))
        return b"".join(sent)

    def test_sameAsPyOpenSSL(self):
        """
        Records made by L{tls.sealParts} are read by pyOpenSSL's recv, and records made by its send
        are read by L{tls.receive}; nothing yet is C{None} or C{b""}, not an exception.
        """
        server, client = self.pair()
        self.assertIsNone(tls.receive(server))
        self.assertEqual(self.pending(server), b"")
        sent = []
        self.assertEqual(tls.sealParts(server, [b"to the ", b"client"], lambda records: sent.append(bytes(records))), b"")
        self.assertEqual(self.pending(server), b"")
        client.bio_write(b"".join(sent))
        self.assertEqual(client.recv(100), b"to the client")
        big = bytes(range(256)) * 64
        client.send(big)
        tls.feed(server, memoryview(client.bio_read(2**16))[:100])
        self.assertIsNone(tls.receive(server))
        with self.assertRaises(SSL.WantReadError):
            client.bio_read(2**16)

    def test_sameErrors(self):
        """At the peer's close_notify, L{tls.receive} raises what pyOpenSSL's recv raises; at a forged record, the same error."""
        server, client = self.pair()
        client.shutdown()
        tls.feed(server, client.bio_read(2**16))
        with self.assertRaises(SSL.ZeroReturnError, msg=pyOpenSSLToCheck()):
            tls.receive(server)
        server, client = self.pair()
        client.send(b"forged")
        record = bytearray(client.bio_read(2**16))
        record[-1] ^= 1
        tls.feed(server, bytes(record))
        with self.assertRaises(SSL.Error, msg=pyOpenSSLToCheck()) as raised:
            tls.receive(server)
        self.assertIn("bad record mac", str(raised.exception))


class SealPartsTests(SynchronousTestCase):
    """L{tls.sealParts}: a write's parts into full records, sent side by side without joining them."""

    def pair(self):
        pair = connectionPairs(Identity.generate(), Identity.generate())()
        handshakeInMemory(pair)
        return pair

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.integers(0, 3 * tls.RECORD_PLAINTEXT + 7), max_size=12))
    def test_anyParts(self, sizes):
        """
        Parts of any sizes, empty ones among them: the peer reads their bytes in order, every
        record but the last carries L{tls.RECORD_PLAINTEXT} bytes, and the records go out in as
        few calls as the outgoing buffer allows (one for a write of up to 200 KiB).
        """
        server, client = self.pair()
        parts = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
        sent = []
        self.assertEqual(tls.sealParts(server, iter(parts), lambda records: sent.append(bytes(records))), b"")
        stream = b"".join(sent)
        records = []
        while stream:
            (length,) = struct.unpack_from(">H", stream, 3)
            records.append(length)
            stream = stream[5 + length :]
        total = sum(sizes)
        # AES-256-GCM: a record's plaintext, its content type byte and a 16-byte tag.
        self.assertEqual(records, [tls.RECORD_PLAINTEXT + 17] * (total // tls.RECORD_PLAINTEXT) + ([total % tls.RECORD_PLAINTEXT + 17] if total % tls.RECORD_PLAINTEXT else []))
        if total <= 200 * 1024:
            self.assertLessEqual(len(sent), 1)
        self.assertTrue(all(len(records) <= tls.OUTGOING for records in sent))
        if sent:
            client.bio_write(b"".join(sent))
        received = b""
        while len(received) < total:
            received += client.recv(2**16)
        self.assertEqual(received, b"".join(parts))
        self.assertEqual(PyOpenSSLCallsTests.pending(server), b"")

    def test_mustReadFirst(self):
        """Before its handshake a client cannot write: nothing is sent, and all the plaintext comes back, in order."""
        context = SSL.Context(SSL.TLS_METHOD)
        connection = SSL.Connection(context, None)
        connection.set_connect_state()
        sent = []
        self.assertEqual(tls.sealParts(connection, [b"one ", memoryview(b"two "), b"x" * tls.RECORD_PLAINTEXT], sent.append), b"one two " + b"x" * tls.RECORD_PLAINTEXT)
        self.assertEqual(tls.sealParts(connection, (b"alone",), sent.append), b"alone")
        self.assertEqual(sent, [])

    def test_errorAfterRecords(self):
        """After its own close_notify a connection refuses to write: the error is pyOpenSSL's."""
        server, client = self.pair()
        server.shutdown()
        for parts in ([b"late"], [b"late", b"r"]):
            with self.assertRaises(SSL.Error):
                tls.sealParts(server, parts, lambda records: None)


class SealPartsReentryTests(SynchronousTestCase):
    """What a write's C{send} calls may write again, to another connection or the same one."""

    def pair(self):
        pair = connectionPairs(Identity.generate(), Identity.generate())()
        handshakeInMemory(pair)
        return pair

    def read(self, peer, sent, size):
        peer.bio_write(b"".join(sent))
        received = b""
        while len(received) < size:
            received += peer.recv(2**16)
        return received

    def test_sendWritesElsewhere(self):
        """
        A write of many parts, whose records do not all fit the shared buffer, and whose send
        writes to another connection (as a producer paused by a full buffer may): both peers
        read exactly what was written to them (before, the nested write's bytes were sealed
        into the first connection's stream: the shared buffers were in use when send ran).
        """
        (first, firstPeer), (other, otherPeer) = self.pair(), self.pair()
        firstSent, otherSent = [], []
        nested = [b"B" * 30000]

        def send(records):
            firstSent.append(bytes(records))
            if nested:
                tls.sealParts(other, [nested.pop()], lambda records: otherSent.append(bytes(records)))

        parts = [bytes([65 + index % 26]) * 10000 for index in range(60)]
        self.assertEqual(tls.sealParts(first, parts, send), b"")
        self.assertEqual(self.read(firstPeer, firstSent, 600000), b"".join(parts))
        self.assertEqual(self.read(otherPeer, otherSent, 30000), b"B" * 30000)

    def test_sendWritesToTheSameConnection(self):
        """
        A write made from a write's send, on the same connection, comes after all of it, for
        a write whose records fit the shared buffer and one whose records do not (before, the
        latter's send ran in its middle, and the nested write's bytes went in between).
        """
        for size in (37000, 3 * tls.OUTGOING):
            connection, peer = self.pair()
            sent = []
            nested = [b"after"]

            def send(records):
                sent.append(bytes(records))
                if nested:
                    tls.sealParts(connection, [nested.pop()], send)

            parts = [bytes([65 + index % 26]) * 7000 for index in range(size // 7000)]
            tls.sealParts(connection, parts, send)
            self.assertEqual(self.read(peer, sent, len(b"".join(parts)) + 5), b"".join(parts) + b"after")
