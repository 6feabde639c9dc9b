"""
L{LinkTLSProtocol}'s own record path (L{phantom.link.tls.receive} and the rest) against records
made by hand: a peer whose TLS handshake is pyOpenSSL's, and whose records after it are
encrypted here with its traffic secrets (from the key log), so that it can send what a TLS
library sends rarely or never on its own: a KeyUpdate, padded records, alerts, close_notify,
records cut at any byte, a forged record.
"""

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings, strategies as st
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LinkLimits
from phantom.identity import Identity
from phantom.link.echo import EchoHandler
from phantom.link import tls as tls_module
from phantom.link.service import RECEIVE_PIECE, LinkService, LinkTLSFactory, _LinkFactory
from phantom.link.tls import ServerConnectionCreator, feed, makeContext, receive
from phantom.wire.link import KEEPALIVE_FRAME, MAX_PAYLOAD, Purpose, dataHeader, encodeOpen
from tests.link.helpers import LogCollector

HANDSHAKE, ALERT, APPLICATION_DATA = 22, 21, 23
KEY_UPDATE = 24


def expandLabel(secret, label, length, algorithm):
    """HKDF-Expand-Label of RFC 8446, 7.1, with an empty context."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


class Sealer:
    """One direction of TLS 1.3 record protection, from a traffic secret: its key, IV and sequence number."""

    def __init__(self, cipherName, secret):
        self._aead, keySize = (ChaCha20Poly1305, 32) if "CHACHA20" in cipherName else (AESGCM, 32 if "256" in cipherName else 16)
        self._algorithm = hashes.SHA384() if cipherName.endswith("SHA384") else hashes.SHA256()
        self._keySize = keySize
        self._use(secret)

    def _use(self, secret):
        self._secret = secret
        self._cipher = self._aead(expandLabel(secret, b"key", self._keySize, self._algorithm))
        self._iv = expandLabel(secret, b"iv", 12, self._algorithm)
        self._sequence = 0

    def seal(self, innerType, content, padding=0):
        """@return: one record carrying C{content} of C{innerType}, with C{padding} zero bytes after its type."""
        inner = content + bytes([innerType]) + bytes(padding)
        header = struct.pack(">BHH", APPLICATION_DATA, 0x0303, len(inner) + 16)
        nonce = bytes(a ^ b for a, b in zip(self._iv, self._sequence.to_bytes(12, "big")))
        self._sequence += 1
        return header + self._cipher.encrypt(nonce, inner, header)

    def update(self):
        """Move to the next traffic secret, as a KeyUpdate does."""
        self._use(expandLabel(self._secret, b"traffic upd", self._algorithm.digest_size, self._algorithm))


class HandPeer(Protocol):
    """
    A client whose handshake is pyOpenSSL's and whose records after it are made by L{Sealer}:
    it reads with pyOpenSSL throughout (the node's records, its KeyUpdates included).

    @ivar received: the plaintext the node sent, after the handshake.
    @ivar closeNotified: whether the node's close_notify arrived.
    @ivar alerted: the C{SSL.Error} of the node's alert, if one arrived.
    """

    def __init__(self):
        self._secrets = {}
        context = makeContext(Identity.generate(), server=False)
        context.set_keylog_callback(self._logged)
        self.tls = SSL.Connection(context, None)
        self.tls.set_connect_state()
        self.received = b""
        self.closeNotified = False
        self.lost = None
        self.alerted = None
        self.sealer = None

    def _logged(self, connection, line):
        label, _, secret = line.split()
        self._secrets[label] = bytes.fromhex(secret.decode())

    def connectionMade(self):
        self._step()

    def dataReceived(self, data):
        self.tls.bio_write(data)
        self._step()

    def _step(self):
        if self.sealer is None:
            try:
                self.tls.do_handshake()
            except SSL.WantReadError:
                pass
            else:
                self.sealer = Sealer(self.tls.get_cipher_name(), self._secrets[b"CLIENT_TRAFFIC_SECRET_0"])
        if self.sealer is not None:
            while not self.closeNotified:
                try:
                    self.received += self.tls.recv(65536)
                except SSL.WantReadError:
                    break
                except SSL.ZeroReturnError:
                    self.closeNotified = True
                except SSL.Error as e:
                    self.alerted = e
                    break
        while True:
            try:
                self.transport.write(self.tls.bio_read(65536))
            except SSL.WantReadError:
                break

    def connectionLost(self, reason):
        self.lost = reason

    def frames(self, *payloads, padding=0):
        """@return: a record carrying DATA frames of C{payloads}."""
        return self.sealer.seal(APPLICATION_DATA, b"".join(dataHeader(len(payload)) + payload for payload in payloads), padding)

    def keyUpdate(self, requested):
        """@return: a KeyUpdate record; later records use the next secret."""
        record = self.sealer.seal(HANDSHAKE, bytes([KEY_UPDATE, 0, 0, 1, int(requested)]))
        self.sealer.update()
        return record

    def alert(self, level, description):
        """@return: an alert record."""
        return self.sealer.seal(ALERT, bytes([level, description]))


class Collecting:
    """A handler keeping its link's DATA frames."""

    def __init__(self, link):
        self.frames = []

    def frameReceived(self, payload):
        self.frames.append(payload)

    def linkClosed(self, reason):
        pass


def handPeerLink(testCase, purpose=Purpose.ECHO):
    """
    A node's link service and a L{HandPeer} connected to it in memory through L{LinkTLSFactory},
    the handshake done and the peer's OPEN frame (for C{purpose}) sent.

    @return: C{(service, peer, pump)}; C{service.collected} holds the frames of a DHT link.
    """
    reactor = MemoryReactorClock()
    service = LinkService(Identity.generate(), None, LinkLimits(), reactor)
    service.registerPurpose(Purpose.ECHO, EchoHandler)
    service.collected = []
    service.registerPurpose(Purpose.DHT, lambda link: service.collected.append(Collecting(link)) or service.collected[-1])
    factory = LinkTLSFactory(ServerConnectionCreator(service._serverContext), False, _LinkFactory(service))
    peer = HandPeer()
    clientAddress = IPv4Address("TCP", "127.0.0.2", 40000)
    serverAddress = IPv4Address("TCP", "127.0.0.1", 7402)
    _, _, pump = iosim.connectedServerAndClient(
        lambda: factory.buildProtocol(None),
        lambda: peer,
        clientTransportFactory=lambda p: iosim.FakeTransport(p, False, clientAddress, serverAddress),
        serverTransportFactory=lambda p: iosim.FakeTransport(p, True, serverAddress, clientAddress),
        clock=reactor,
    )
    pump.flush()
    testCase.assertIsNotNone(peer.sealer, "the handshake did not finish")
    send(peer, pump, peer.sealer.seal(APPLICATION_DATA, encodeOpen(purpose)))
    [link] = service.links
    testCase.assertEqual(link.purpose, purpose)
    return service, peer, pump


def splitRecords(data):
    """@return: the TLS records C{data} is made of, whole."""
    records = []
    while data:
        (length,) = struct.unpack_from(">H", data, 3)
        records.append(data[: 5 + length])
        data = data[5 + length :]
    return records


def send(peer, pump, *chunks):
    """Let the node read each of C{chunks} as one read from its socket, then move every byte."""
    for chunk in chunks:
        peer.transport.write(chunk)
        pump.pump()
    pump.flush()


class KeyUpdateTests(SynchronousTestCase):
    def test_updateRequested(self):
        """
        A KeyUpdate that requests one back: frames sealed with the peer's next key are read, and
        the node's own KeyUpdate (OpenSSL sends it with its next write, not when it reads the
        request) goes out before the answer sealed with the node's next key, in the same write.
        """
        service, peer, pump = handPeerLink(self)
        send(peer, pump, peer.frames(b"before"))
        self.assertEqual(peer.received, dataHeader(6) + b"before")
        written = []
        self.patch(peer, "dataReceived", lambda data: (written.append(data), HandPeer.dataReceived(peer, data)))
        send(peer, pump, peer.keyUpdate(requested=True))
        send(peer, pump, peer.frames(b"after"))
        self.assertEqual(peer.received, dataHeader(6) + b"before" + dataHeader(5) + b"after")
        [write] = written
        self.assertEqual([len(record) for record in splitRecords(write)], [5 + 5 + 1 + 16, 5 + 10 + 1 + 16])

    def test_updateAmongFramesInOneRead(self):
        """A KeyUpdate (not requesting one back) between records of one read: every frame is read, none lost or held back."""
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        first = peer.frames(b"one", b"two")
        update = peer.keyUpdate(requested=False)
        send(peer, pump, first + update + peer.frames(b"three") + peer.frames(b"four"))
        self.assertEqual(service.collected[0].frames, [b"one", b"two", b"three", b"four"])


class ChunkingTests(SynchronousTestCase):
    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(
            st.tuples(st.lists(st.binary(min_size=1, max_size=4000), min_size=1, max_size=4), st.integers(0, 300)),
            min_size=1,
            max_size=6,
        ),
        st.data(),
    )
    def test_anyChunkingSameFrames(self, records, data):
        """
        Records of any sizes, padded or not (their length not that of what they carry), with a
        KeyUpdate and full-size records among them, read in chunks cut at any bytes: the link
        gets the same frames, in order, with nothing held back.
        """
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        stream = b""
        expected = []
        for number, (payloads, padding) in enumerate(records):
            stream += peer.frames(*payloads, padding=min(padding, 2**14 - sum(len(p) + 5 for p in payloads)))
            expected += payloads
            if number == 1:
                stream += peer.keyUpdate(requested=False)
        full = b"\x5a" * (MAX_PAYLOAD - 5)
        stream += peer.sealer.seal(APPLICATION_DATA, dataHeader(len(full[: 2**14 - 5])) + full[: 2**14 - 5])
        expected.append(full[: 2**14 - 5])
        cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)))
        chunks = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]
        send(peer, pump, *chunks)
        self.assertEqual(service.collected[0].frames, expected)


class EndingTests(SynchronousTestCase):
    def test_closeNotify(self):
        """The peer's close_notify, after frames in the same read: the frames arrive, the node answers with its own close_notify and closes, logging no warning."""
        logs = LogCollector(self)
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        [link] = service.links
        send(peer, pump, peer.frames(b"last") + peer.alert(1, 0))
        self.assertEqual(service.collected[0].frames, [b"last"])
        self.assertTrue(peer.closeNotified)
        self.assertEqual(service.links, frozenset())
        self.assertEqual(logs.lines, [])
        self.assertTrue(logs.having("closed by the peer", level="info"))

    def test_fatalAlert(self):
        """A fatal alert closes the link with one warning naming the peer."""
        logs = LogCollector(self)
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        send(peer, pump, peer.alert(2, 80))
        self.assertEqual(service.links, frozenset())
        [line] = logs.lines
        self.assertIn("127.0.0.2:40000", line)

    def test_forgedRecord(self):
        """A record that does not decrypt (one bit flipped): the link is closed with one warning, the frames before it were handed over."""
        logs = LogCollector(self)
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        fine = peer.frames(b"fine")
        forged = bytearray(peer.frames(b"forged"))
        forged[-1] ^= 1
        send(peer, pump, fine + bytes(forged) + peer.frames(b"never"))
        self.assertEqual(service.collected[0].frames, [b"fine"])
        self.assertEqual(service.links, frozenset())
        [line] = logs.lines
        self.assertIn("127.0.0.2:40000", line)
        self.assertIsNotNone(peer.lost)

    def test_oversizedRecord(self):
        """A record header announcing more than TLS allows closes the link with one warning, before the record's bytes come."""
        logs = LogCollector(self)
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        send(peer, pump, struct.pack(">BHH", APPLICATION_DATA, 0x0303, 2**14 + 256 + 1))
        self.assertEqual(service.links, frozenset())
        [line] = logs.lines
        self.assertIn("127.0.0.2:40000", line)

    def test_keepalivesAndNothingElse(self):
        """Records carrying only KEEPALIVE frames are read as such (nothing handed to the handler)."""
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        send(peer, pump, peer.sealer.seal(APPLICATION_DATA, KEEPALIVE_FRAME * 100))
        self.assertEqual(service.collected[0].frames, [])
        self.assertEqual(len(service.links), 1)


class RecordPathTests(SynchronousTestCase):
    def test_noPyOpenSSLCallPerRecord(self):
        """
        Once the handshake is done, the node's records go in and out without pyOpenSSL's recv,
        send, bio_read or bio_write (a buffer allocated per call) and without one exception
        raised: a record read used to end in two WantReadErrors (the read after it, and the
        look into the send buffer that found nothing).
        """
        service, peer, pump = handPeerLink(self)
        [link] = service.links
        node = link.transport.getHandle()
        calls = []
        for name in ("recv", "send", "bio_read", "bio_write", "_raise_ssl_error"):
            original = getattr(SSL.Connection, name)
            self.patch(SSL.Connection, name, lambda connection, *args, name=name, original=original: (connection is node and calls.append(name), original(connection, *args))[1])
        payloads = [b"small", b"x" * 300, b"y" * (2**14 - 5), b"z" * 40000]
        send(peer, pump, *[peer.frames(payload) for payload in payloads[:3]])
        link.sendFrame(payloads[3])
        pump.flush()
        self.assertEqual(calls, [])
        self.assertEqual(peer.received, b"".join(dataHeader(len(payload)) + payload for payload in payloads))

    def test_emptyWrite(self):
        """Writing nothing into TLS sends nothing and leaves the link open (an empty SSL_write is an error to OpenSSL)."""
        service, peer, pump = handPeerLink(self)
        [link] = service.links
        link.transport.write(b"")
        pump.flush()
        self.assertEqual((peer.received, link.opened), (b"", True))

    def test_cellRecordsOnePieceEach(self):
        """
        A read of four full records (a cell each, as a tunnel's links carry them) goes into TLS
        one record a piece, and each piece's record is read by one SSL_read that finds it and one
        that finds nothing more (with 8 KiB pieces: nine pieces, and sixteen reads).
        """
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        pieces = []
        self.patch(tls_module, "feed", lambda connection, data: (pieces.append(bytes(data)), feed(connection, data)))
        reads = []
        self.patch(tls_module, "receive", lambda connection: (lambda data: (reads.append(data is not None), data)[1])(receive(connection)))
        payloads = [bytes([number]) * (2**14 - 5) for number in range(4)]
        records = [peer.frames(payload) for payload in payloads]
        send(peer, pump, b"".join(records))
        self.assertEqual(service.collected[0].frames, payloads)
        self.assertEqual(pieces, records)
        self.assertEqual(reads, [True, False] * 4)

    def test_readInPieces(self):
        """
        A read from the socket goes into TLS in pieces of at most RECEIVE_PIECE bytes, in order
        (OpenSSL's receive buffer keeps room for the largest piece for as long as the link lasts).
        """
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        pieces = []
        self.patch(tls_module, "feed", lambda connection, data: (pieces.append(bytes(data)), feed(connection, data)))
        payloads = [bytes([number]) * (2**14 - 5) for number in range(3)] + [b"tail"]
        data = b"".join(peer.frames(payload) for payload in payloads)
        send(peer, pump, data)
        self.assertEqual(service.collected[0].frames, payloads)
        self.assertEqual(b"".join(pieces), data)
        self.assertEqual([len(piece) for piece in pieces], [RECEIVE_PIECE] * (len(data) // RECEIVE_PIECE) + [len(data) % RECEIVE_PIECE])


class AfterReadTests(SynchronousTestCase):
    """A link's C{afterRead}: what a handler gathers from one socket read leaves when the read is handled."""

    def test_calledOnceEveryRecordIsHandled(self):
        """
        Frames in three records of one read all reach the handler before the call it asked for
        at the first runs; the call runs once the read is handled, and a later read asks anew.
        """
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        [link] = service.links
        log = []
        link.attach(_Noting(log, link))
        send(peer, pump, peer.frames(b"one") + peer.frames(b"two") + peer.frames(b"three"))
        self.assertEqual(log, [b"one", "asked", b"two", b"three", "after"])
        send(peer, pump, peer.frames(b"four"))
        self.assertEqual(log[5:], [b"four", "asked", "after"])

    def test_refusedOutsideARead(self):
        """Outside a socket read, C{afterRead} keeps nothing and says so."""
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        [link] = service.links
        called = []
        self.assertFalse(link.afterRead(lambda: called.append(True)))
        send(peer, pump, peer.frames(b"one"))
        self.assertEqual(called, [])

    def test_failingCallLogged(self):
        """A call that fails is logged; the calls after it still run and the link stays open."""
        service, peer, pump = handPeerLink(self, Purpose.DHT)
        [link] = service.links
        log = []

        class Failing(Collecting):
            def frameReceived(self, payload):
                link.afterRead(lambda: 1 / 0)
                link.afterRead(lambda: log.append("second"))

        link.attach(Failing(link))
        collector = LogCollector(self)
        send(peer, pump, peer.frames(b"one"))
        self.assertEqual(log, ["second"])
        self.assertTrue(link.opened)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(collector.events)


class _Noting:
    """A handler noting each frame in C{log}, asking at the first frame of a read to be called after it."""

    def __init__(self, log, link):
        self._log = log
        self._link = link
        self._asked = False

    def frameReceived(self, payload):
        self._log.append(payload)
        if not self._asked:
            self._asked = True
            self._log.append("asked" if self._link.afterRead(self._after) else "refused")

    def _after(self):
        self._asked = False
        self._log.append("after")

    def linkClosed(self, reason):
        pass
