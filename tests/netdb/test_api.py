"""
The VoidPhone DHT module API server: the sans-io decoder (property tests), the protocol over a
C{StringTransport} with a C{Clock} (answers, deadlines, limits, bad input), and the service
over real sockets on 127.0.0.1.

The value stores here are small but real L{IValueStore}s kept in dicts; the thing under test
is the API server.
"""

from dataclasses import replace

from hypothesis import given, strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from phantom.config import DhtSettings
from phantom.link import quota
from phantom.netdb.api import NEXT_API_STATES, ApiDecoder, ApiFactory, ApiProtocol, ApiService, ApiState
from phantom.netdb.interfaces import IValueStore
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.api import (
    REPLIES,
    REQUESTS,
    DhtFailure,
    DhtGet,
    DhtPut,
    DhtSuccess,
    Message,
    encodeGet,
    encodeMessage,
    encodePut,
)
from tests.link.helpers import LogCollector
from tests.properties import feedInPieces
from tests.wire.test_api import (
    LOLZ,
    OFFICIAL_FAILURE,
    OFFICIAL_GET,
    OFFICIAL_PUT,
    OFFICIAL_SUCCESS,
    messages,
    mutatedMessages,
    requestMessages,
)

KEY_A, KEY_B, KEY_C = (bytes([n]) * 32 for n in b"abc")

MALFORMED = {
    "size below the header": (b"\x00\x03\x02\x8b", "below the 4-byte header"),
    "GET of the wrong size": (b"\x00\x25\x02\x8b" + LOLZ + b"x", "DHT GET of 37 bytes; exactly 36 allowed"),
    "PUT with an empty value": (
        b"\x00\x28\x02\x8a\x00\x01\x01\x00" + LOLZ,
        "DHT PUT of 40 bytes carries an empty value",
    ),
    "PUT shorter than its fixed part": (b"\x00\x20\x02\x8a" + bytes(28), "DHT PUT of 32 bytes; 41 to 65535 allowed"),
    "unknown type": (b"\x00\x24\x02\x9a" + LOLZ, "unknown message type 666"),
    "SUCCESS from a client": (OFFICIAL_SUCCESS, "DHT SUCCESS (652) is not a message this side receives"),
    "FAILURE from a client": (OFFICIAL_FAILURE, "DHT FAILURE (653) is not a message this side receives"),
}
"""Each kind of malformed input a client can send, and the reason logged when it is closed."""


@implementer(IValueStore)
class DictStore:
    """Values in a dict, found at once; remembers every PUT and GET it was given."""

    def __init__(self, values=None):
        self.values = dict(values or {})
        self.puts = []
        self.asked = []

    def put(self, key, value, ttl, replication):
        self.puts.append((key, value, ttl, replication))
        self.values[key] = value

    def get(self, key):
        self.asked.append(key)
        return succeed(self.values.get(key))


class DelayedStore(DictStore):
    """
    Values in a dict, found C{delay} seconds after they are asked for on C{clock}, or after
    C{delays[key]}; a delay of C{None} means never.
    """

    def __init__(self, clock, delay=1.0, values=None):
        super().__init__(values)
        self.clock = clock
        self.delay = delay
        self.delays = {}

    def get(self, key):
        self.asked.append(key)
        delay = self.delays.get(key, self.delay)
        if delay is None:
            return Deferred()
        return deferLater(self.clock, delay, lambda: self.values.get(key))


class BrokenStore(DictStore):
    """
    A faulty store: C{get} fails, or raises (and so does C{put}), or answers with a value no
    SUCCESS can carry.
    """

    def __init__(self, how):
        super().__init__()
        self.how = how

    def put(self, key, value, ttl, replication):
        if self.how == "raises":
            raise RuntimeError("the store broke")
        super().put(key, value, ttl, replication)

    def get(self, key):
        self.asked.append(key)
        if self.how == "fails":
            return fail(RuntimeError("the store broke"))
        if self.how == "raises":
            raise RuntimeError("the store broke")
        return succeed(b"")


def ApiLogCollector(testCase):
    """The warnings the DHT API logs while installed."""
    return LogCollector(testCase, "phantom.netdb.api")


# The decoder


class ApiDecoderTests(SynchronousTestCase):
    """L{ApiDecoder} splits a stream into exactly the messages the strict schema accepts."""

    @given(st.lists(messages, min_size=1, max_size=8), st.data())
    def test_anySplitGivesTheSameMessages(self, sent, data):
        """However the stream is cut into chunks, the same messages come out."""
        stream = b"".join(encodeMessage(message) for message in sent)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
        decoder = ApiDecoder(REQUESTS | REPLIES)
        self.assertEqual(feedInPieces(decoder, stream, cuts), sent)
        self.assertEqual(decoder.pending, 0)

    @given(mutatedMessages())
    def test_agreesWithSchema(self, data):
        """
        Where the schema accepts bytes as one message, the decoder yields exactly that
        message; otherwise it rejects them, or yields canonical messages and keeps the rest.
        """
        try:
            parseStrict(Message, data)
            accepted = True
        except ProtocolError:
            accepted = False
        decoder = ApiDecoder(REQUESTS | REPLIES)
        try:
            decoded = decoder.feed(data)
        except ProtocolError:
            self.assertFalse(accepted)
            return
        rebuilt = b"".join(encodeMessage(message) for message in decoded)
        if accepted:
            self.assertEqual((rebuilt, decoder.pending), (data, 0))
        else:
            self.assertEqual(rebuilt, data[: len(data) - decoder.pending])

    def test_partialMessageWaits(self):
        """A partial message yields nothing and is kept until the rest arrives."""
        decoder = ApiDecoder(REQUESTS)
        self.assertEqual(decoder.feed(OFFICIAL_PUT[:3]), [])
        self.assertEqual(decoder.feed(OFFICIAL_PUT[3:44]), [])
        self.assertEqual(decoder.pending, 44)
        self.assertEqual(decoder.feed(OFFICIAL_PUT[44:] + OFFICIAL_GET), [DhtPut(LOLZ, b"bernd", 1, 1), DhtGet(LOLZ)])
        self.assertEqual(decoder.pending, 0)

    def test_headerJudgedBeforeTheBody(self):
        """A wrong size or type is refused as soon as the 4 header bytes are there."""
        for what, (data, reason) in MALFORMED.items():
            with self.subTest(what):
                with self.assertRaises(ProtocolError) as caught:
                    ApiDecoder(REQUESTS).feed(data[:4])
                self.assertIn(reason, str(caught.exception))

    def test_oneMessageAtATime(self):
        """L{ApiDecoder.nextMessage} decodes one message per call and leaves the rest."""
        decoder = ApiDecoder(REQUESTS)
        decoder.receive(encodeGet(KEY_A) + encodeGet(KEY_B) + b"\x00")
        self.assertEqual(decoder.nextMessage(), DhtGet(KEY_A))
        self.assertEqual(decoder.pending, 37)
        self.assertEqual(decoder.nextMessage(), DhtGet(KEY_B))
        self.assertIsNone(decoder.nextMessage())
        self.assertEqual(decoder.pending, 1)

    def test_clientSide(self):
        """A client's decoder takes SUCCESS and FAILURE and refuses requests."""
        decoder = ApiDecoder(REPLIES)
        self.assertEqual(
            decoder.feed(OFFICIAL_SUCCESS + OFFICIAL_FAILURE), [DhtSuccess(LOLZ, b"bernd"), DhtFailure(LOLZ)]
        )
        self.assertRaises(ProtocolError, ApiDecoder(REPLIES).feed, OFFICIAL_GET)
        self.assertRaises(ProtocolError, ApiDecoder(REPLIES).feed, OFFICIAL_PUT)


# The protocol, without sockets


def answerTimers(clock):
    """The timers pending on C{clock} but a connection's idle check, which lives as long as it."""
    return [call for call in clock.getDelayedCalls() if call.func.__name__ != "_idleCheck"]


class Connection:
    """An L{ApiProtocol} on a C{StringTransport} from 127.0.0.1:40001, with its own clock."""

    PEER = IPv4Address("TCP", "127.0.0.1", 40001)

    def __init__(self, store, clock=None, **limits):
        self.store = store
        self.clock = clock or Clock()
        self.protocol = ApiProtocol(store, self.clock, **limits)
        self.transport = StringTransport(peerAddress=self.PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)

    def replies(self):
        """Every message written to the client so far."""
        return ApiDecoder(REPLIES).feed(self.transport.value())

    @property
    def aborted(self):
        return self.transport.disconnected

    @property
    def reading(self):
        return self.transport.producerState == "producing"

    def lose(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


class ProtocolTests(SynchronousTestCase):
    """What one connection does with well-formed requests."""

    def test_storesAreValueStores(self):
        """The test stores provide the interface the server serves."""
        for store in (DictStore(), DelayedStore(Clock()), BrokenStore("fails")):
            self.assertTrue(verifyObject(IValueStore, store))

    def test_putStoresAndIsNotAnswered(self):
        """A PUT goes to the store with its TTL and replication; nothing is sent back."""
        connection = Connection(DictStore())
        connection.send(encodePut(KEY_A, b"value", 300, 7))
        self.assertEqual(connection.store.puts, [(KEY_A, b"value", 300, 7)])
        self.assertEqual(connection.transport.value(), b"")
        self.assertFalse(connection.transport.disconnecting)

    def test_officialExchange(self):
        """The official client's PUT then GET on one connection get exactly its SUCCESS bytes."""
        connection = Connection(DictStore())
        connection.send(OFFICIAL_PUT)
        connection.send(OFFICIAL_GET)
        self.assertEqual(connection.transport.value(), OFFICIAL_SUCCESS)
        self.assertEqual(connection.store.puts, [(LOLZ, b"bernd", 1, 1)])

    def test_officialMiss(self):
        """The official client's GET for a key nobody stored gets exactly its FAILURE bytes."""
        connection = Connection(DictStore())
        connection.send(OFFICIAL_GET)
        self.assertEqual(connection.transport.value(), OFFICIAL_FAILURE)

    def test_manyRequestsOnOneConnection(self):
        """A connection stays open for as many requests as the client sends."""
        connection = Connection(DictStore())
        for round in range(100):
            connection.send(encodePut(KEY_A, b"%d" % round, 60, 1))
            connection.send(encodeGet(KEY_A))
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_A, b"%d" % round) for round in range(100)])
        self.assertFalse(connection.transport.disconnecting)

    def test_pipelined(self):
        """Requests in one write are all handled, in order; a key asked twice is answered twice."""
        connection = Connection(DictStore({KEY_A: b"a"}))
        connection.send(
            encodeGet(KEY_A) + encodePut(KEY_B, b"b", 60, 1) + encodeGet(KEY_B) + encodeGet(KEY_C) + encodeGet(KEY_A)
        )
        self.assertEqual(
            connection.replies(),
            [DhtSuccess(KEY_A, b"a"), DhtSuccess(KEY_B, b"b"), DhtFailure(KEY_C), DhtSuccess(KEY_A, b"a")],
        )

    @given(st.lists(requestMessages, min_size=1, max_size=12), st.data())
    def test_anySplitGivesTheSameAnswers(self, requests, data):
        """However the requests are cut into reads, the store and the client see the same."""
        stream = b"".join(encodeMessage(request) for request in requests)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        whole, pieces = Connection(DictStore()), Connection(DictStore())
        whole.send(stream)
        start = 0
        for cut in cuts + [len(stream)]:
            pieces.send(stream[start:cut])
            start = cut
        self.assertEqual(pieces.transport.value(), whole.transport.value())
        self.assertEqual(pieces.store.puts, whole.store.puts)
        self.assertEqual(len(whole.replies()), sum(isinstance(request, DhtGet) for request in requests))

    def test_answersInCompletionOrder(self):
        """An answer goes out when the store has it, not after the answers asked for before it."""
        clock = Clock()
        store = DelayedStore(clock, values={KEY_A: b"a", KEY_B: b"b"})
        store.delays = {KEY_A: 3.0, KEY_B: 1.0}
        connection = Connection(store, clock)
        connection.send(encodeGet(KEY_A) + encodeGet(KEY_B))
        clock.advance(1.0)
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_B, b"b")])
        clock.advance(2.0)
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_B, b"b"), DhtSuccess(KEY_A, b"a")])
        self.assertEqual(answerTimers(clock), [])

    def test_sameKeyOutstandingTwice(self):
        """Two GETs for one key waiting at once get one answer each."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, 2.0, {KEY_A: b"a"}), clock)
        connection.send(encodeGet(KEY_A))
        clock.advance(1.0)
        connection.send(encodeGet(KEY_A))
        self.assertEqual(connection.protocol.outstanding, 2)
        clock.advance(1.0)
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_A, b"a")])
        clock.advance(1.0)
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_A, b"a")] * 2)
        self.assertEqual(connection.protocol.outstanding, 0)


class DeadlineTests(SynchronousTestCase):
    """Every GET is answered within the GET timeout, whatever the store does."""

    def test_storeNeverAnswers(self):
        """A GET the store never answers gets FAILURE after the default 10 seconds, not before."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, None), clock)
        connection.send(encodeGet(KEY_A))
        clock.advance(9.999)
        self.assertEqual(connection.replies(), [])
        clock.advance(0.001)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)])
        self.assertEqual(connection.protocol.outstanding, 0)
        self.assertFalse(connection.transport.disconnecting)

    def test_configurable(self):
        """The GET timeout is a parameter."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, None), clock, getTimeout=2.5)
        connection.send(encodeGet(KEY_A))
        clock.advance(2.4)
        self.assertEqual(connection.replies(), [])
        clock.advance(0.1)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)])

    def test_lateAnswerIgnored(self):
        """A value the store finds after the deadline is not sent: one answer per GET."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, 15.0, {KEY_A: b"a"}), clock)
        connection.send(encodeGet(KEY_A))
        clock.advance(10.0)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)])
        clock.advance(5.0)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)])

    def test_answerInTimeCancelsTheDeadline(self):
        """An answer before the deadline is the only one; no timer is left behind."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, 3.0, {KEY_A: b"a"}), clock)
        connection.send(encodeGet(KEY_A))
        clock.advance(3.0)
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_A, b"a")])
        self.assertEqual(answerTimers(clock), [])

    def test_answerAfterTheConnectionClosed(self):
        """An answer for a connection that has closed is dropped, silently; no timer is left."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, 3.0, {KEY_A: b"a"}), clock)
        connection.send(encodeGet(KEY_A) + encodeGet(KEY_B))
        connection.lose()
        self.assertEqual(len(clock.getDelayedCalls()), 2)  # the store's own two lookups
        clock.advance(3.0)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_brokenStorePut(self):
        """A store whose C{put} raises: logged, and the connection goes on."""
        connection = Connection(BrokenStore("raises"))
        connection.send(encodePut(KEY_A, b"a", 1, 1) + encodeGet(KEY_A))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)])
        self.assertFalse(connection.transport.disconnecting)

    def test_brokenStore(self):
        """A store that fails, raises or answers with an empty value still gives one FAILURE, logged."""
        for how, logged in [("fails", RuntimeError), ("raises", RuntimeError), ("empty", None)]:
            with self.subTest(how):
                connection = Connection(BrokenStore(how))
                connection.send(encodeGet(KEY_A) + encodeGet(KEY_B))
                self.assertEqual(connection.replies(), [DhtFailure(KEY_A), DhtFailure(KEY_B)])
                if logged is not None:
                    self.assertEqual(len(self.flushLoggedErrors(logged)), 2)


class LimitTests(SynchronousTestCase):
    """A connection never has more than C{maxOutstanding} GETs waiting, nor buffers without end."""

    def test_stopsReadingAtTheLimit(self):
        """
        Beyond the limit the connection is paused and further GETs wait in the decoder; as
        answers go out, the waiting GETs are taken and reading resumes.
        """
        clock = Clock()
        store = DelayedStore(clock, 5.0)
        connection = Connection(store, clock, maxOutstanding=4)
        keys = [bytes([n]) * 32 for n in range(10)]
        connection.send(b"".join(encodeGet(key) for key in keys))
        self.assertEqual((store.asked, connection.protocol.outstanding), (keys[:4], 4))
        self.assertFalse(connection.reading)
        self.assertEqual(connection.protocol.buffered, 6 * 36)
        clock.advance(5.0)
        self.assertEqual(connection.replies(), [DhtFailure(key) for key in keys[:4]])
        self.assertEqual((store.asked, connection.protocol.outstanding), (keys[:8], 4))
        self.assertFalse(connection.reading)
        clock.advance(5.0)
        self.assertEqual(store.asked, keys)
        self.assertEqual(connection.protocol.outstanding, 2)
        self.assertTrue(connection.reading)
        clock.advance(5.0)
        self.assertEqual(connection.replies(), [DhtFailure(key) for key in keys])
        self.assertTrue(connection.reading)

    def test_defaultLimit(self):
        """By default 64 GETs may wait; the 65th is not taken until one is answered."""
        clock = Clock()
        store = DelayedStore(clock, None)
        connection = Connection(store, clock)
        connection.send(encodeGet(KEY_A) * 65)
        self.assertEqual((len(store.asked), connection.protocol.outstanding), (64, 64))
        self.assertFalse(connection.reading)

    def test_timeoutsFreeTheLimit(self):
        """GETs the store never answers still end, so a full connection moves on."""
        clock = Clock()
        store = DelayedStore(clock, None)
        connection = Connection(store, clock, maxOutstanding=2, getTimeout=1.0)
        connection.send(encodeGet(KEY_A) * 5)
        clock.pump([1.0] * 3)
        self.assertEqual(connection.replies(), [DhtFailure(KEY_A)] * 5)
        self.assertTrue(connection.reading)

    def test_answeredAtOnceNeverPauses(self):
        """GETs a store answers at once never fill the limit, and PUTs never count."""
        connection = Connection(DictStore({KEY_A: b"a"}), maxOutstanding=2)
        connection.send((encodeGet(KEY_A) + encodePut(KEY_B, b"b", 1, 1)) * 100)
        self.assertEqual(len(connection.replies()), 100)
        self.assertTrue(connection.reading)

    def test_clientNotReadingItsAnswers(self):
        """
        When the transport's write buffer is full (it pauses its producer, the protocol), no
        request is taken until the client has read its answers.
        """
        connection = Connection(DictStore({KEY_A: b"a"}))
        self.assertIs(connection.transport.producer, connection.protocol)
        connection.protocol.pauseProducing()
        self.assertFalse(connection.reading)
        connection.send(encodeGet(KEY_A) * 3)
        self.assertEqual((connection.store.asked, connection.replies()), ([], []))
        connection.protocol.resumeProducing()
        self.assertEqual(connection.replies(), [DhtSuccess(KEY_A, b"a")] * 3)
        self.assertTrue(connection.reading)


class HostileClientTests(SynchronousTestCase):
    """
    Clients that hold connections without finishing a message, sit idle, or flood GETs: each
    hits its bound while a well-behaved client on the same service is served.
    """

    def factory(self, store=None, **changes):
        self.clock = Clock()
        return ApiFactory(store or DictStore({KEY_A: b"a"}), self.clock, replace(DhtSettings(), **changes))

    def connect(self, factory, host="127.0.0.1", port=40001):
        """A connection the factory admitted, or C{None}."""
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        if protocol is None:
            return None
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return protocol, transport

    def served(self, factory, host="127.0.0.2"):
        """Whether a fresh well-behaved connection gets its GET answered now."""
        protocol, transport = self.connect(factory, host)
        protocol.dataReceived(encodeGet(KEY_A))
        return ApiDecoder(REPLIES).feed(transport.value()) == [DhtSuccess(KEY_A, b"a")]

    def test_tricklingHeaderClosed(self):
        """
        A client sending a header a byte at a time is closed when its message is not whole
        within the header timeout after its first byte; the bytes do not extend it.
        """
        factory = self.factory(apiHeaderTimeout=10)
        protocol, transport = self.connect(factory)
        logs = ApiLogCollector(self)
        for byte in encodeGet(KEY_A)[:3]:
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(4)
        self.assertTrue(transport.disconnected)
        [line] = logs.lines
        self.assertIn("a message not completed within 10 s (3 bytes of it)", line)
        self.assertTrue(self.served(factory))

    def test_wholeMessagesRestartTheClock(self):
        """Each message has its own deadline: one begun in the read that ends another gets a full one."""
        factory = self.factory(apiHeaderTimeout=10)
        protocol, transport = self.connect(factory)
        get = encodeGet(KEY_A)
        protocol.dataReceived(get[:2])
        self.clock.advance(9)
        protocol.dataReceived(get[2:] + get[:2])
        self.clock.advance(9)
        protocol.dataReceived(get[2:])
        self.clock.advance(9)
        self.assertFalse(transport.disconnected)
        self.assertEqual(len(ApiDecoder(REPLIES).feed(transport.value())), 2)

    def test_idleClosed(self):
        """A connection that asks nothing is closed after the idle timeout; one waiting for an answer is not."""
        factory = self.factory(DelayedStore(Clock(), None), apiIdleTimeout=60, getTimeout=1000)
        idle, idleTransport = self.connect(factory)
        waiting, waitingTransport = self.connect(factory, port=40002)
        waiting.dataReceived(encodeGet(KEY_A))
        self.clock.advance(59)
        self.assertFalse(idleTransport.disconnected)
        self.clock.advance(1)
        self.assertTrue(idleTransport.disconnected)
        self.clock.advance(300)
        self.assertFalse(waitingTransport.disconnected)

    def test_connectionCaps(self):
        """Beyond its share of connections an address is refused at accept, once logged; another is still served."""
        factory = self.factory(apiMaxConnections=8, apiMaxConnectionsPerAddress=3)
        logs = LogCollector(self, "phantom.link.quota")
        held = [self.connect(factory, "127.0.0.9", 40000 + n) for n in range(10)]
        self.assertEqual([c is not None for c in held], [True] * 3 + [False] * 7)
        self.assertEqual(factory.refusals.total, 7)
        self.assertEqual(len(logs.lines), 1)
        self.assertTrue(self.served(factory))
        held[0][0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.connect(factory, "127.0.0.9"))

    def test_descriptorReserve(self):
        """
        Under a low descriptor limit the API takes at most an eighth of what is left after the
        reserve, so a flood of API connections leaves descriptors for the control socket.
        """
        self.patch(quota, "descriptorLimit", lambda: 256)
        factory = self.factory(apiMaxConnectionsPerAddress=1000)
        held = [self.connect(factory, "127.0.0.9", 40000 + n) for n in range(100)]
        self.assertEqual(sum(c is not None for c in held), (256 - quota.DESCRIPTOR_RESERVE) // 8)

    def test_outstandingTotal(self):
        """
        Many connections flooding GETs a store never answers take at most the total between
        them; a client asking one GET at a time is still read from and answered.
        """
        store = DelayedStore(Clock(), None, {KEY_A: b"a"})
        store.delays = {KEY_A: 0}
        factory = self.factory(store, apiMaxOutstanding=16, apiMaxOutstandingTotal=20, getTimeout=1000)
        flooders = [self.connect(factory, f"127.0.1.{n}") for n in range(5)]
        for protocol, _ in flooders:
            protocol.dataReceived(encodeGet(KEY_B) * 100)
        self.assertLessEqual(factory.budget.count, 20 + len(flooders))
        self.assertEqual(len(store.asked), factory.budget.count)
        protocol, transport = self.connect(factory, "127.0.0.2")
        for _ in range(3):
            protocol.dataReceived(encodeGet(KEY_A))
            self.clock.advance(0)
            store.clock.advance(0)
        self.assertEqual(ApiDecoder(REPLIES).feed(transport.value()), [DhtSuccess(KEY_A, b"a")] * 3)
        self.clock.advance(1000)
        self.assertLessEqual(factory.budget.count, 20 + len(flooders))
        self.assertGreater(len(store.asked), 40)  # the flooders took the room their timed-out GETs freed


class StateTests(SynchronousTestCase):
    """A connection's L{ApiState}: every move it makes is one of L{NEXT_API_STATES}."""

    def test_pausedAtTheLimitAndBack(self):
        """READING; PAUSED while the GETs waiting fill the limit; READING once answered; CLOSED when lost."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, 1.0), clock, maxOutstanding=2)
        self.assertEqual(connection.protocol.state, ApiState.READING)
        connection.send(encodeGet(KEY_A) * 3)
        self.assertEqual(connection.protocol.state, ApiState.PAUSED)
        clock.advance(1.0)
        self.assertEqual((connection.protocol.state, connection.protocol.outstanding), (ApiState.READING, 1))
        connection.lose()
        self.assertEqual(connection.protocol.state, ApiState.CLOSED)

    def test_pausedByTheClient(self):
        """The transport's pause moves a reading connection to PAUSED, its resume back to READING."""
        connection = Connection(DictStore())
        connection.protocol.pauseProducing()
        self.assertEqual(connection.protocol.state, ApiState.PAUSED)
        connection.protocol.resumeProducing()
        self.assertEqual(connection.protocol.state, ApiState.READING)

    def test_closingThenClosed(self):
        """Malformed input: CLOSING until the connection is lost, then CLOSED; no way back."""
        logs = ApiLogCollector(self)
        connection = Connection(DictStore())
        connection.send(b"\x00\x03\x02\x8b")
        self.assertEqual(connection.protocol.state, ApiState.CLOSING)
        connection.lose()
        self.assertEqual(connection.protocol.state, ApiState.CLOSED)
        self.assertEqual(len(logs.lines), 1)
        self.assertRaises(RuntimeError, connection.protocol._moveTo, ApiState.READING)
        self.assertEqual(set(NEXT_API_STATES), set(ApiState))


class MalformedInputTests(SynchronousTestCase):
    """Malformed input closes its connection, with one log line naming the peer and why."""

    def test_eachKindCloses(self):
        """Every kind of malformed input aborts the connection and logs the reason once."""
        for what, (data, reason) in MALFORMED.items():
            with self.subTest(what):
                logs = ApiLogCollector(self)
                connection = Connection(DictStore({LOLZ: b"bernd"}))
                connection.send(data)
                self.assertTrue(connection.aborted)
                [line] = logs.lines
                self.assertIn("127.0.0.1:40001", line)
                self.assertIn(reason, line)
                connection.send(OFFICIAL_GET)
                self.assertEqual(connection.transport.value(), b"")
                self.assertEqual(len(logs.lines), 1)

    def test_requestsBeforeTheBadOneHandled(self):
        """Requests before malformed bytes in the same read are handled; nothing after them."""
        logs = ApiLogCollector(self)
        connection = Connection(DictStore())
        connection.send(OFFICIAL_PUT + OFFICIAL_GET + b"\x00\x02\x02\x8b" + encodePut(KEY_A, b"a", 1, 1))
        self.assertEqual(connection.store.puts, [(LOLZ, b"bernd", 1, 1)])
        self.assertEqual(connection.transport.value(), OFFICIAL_SUCCESS)
        self.assertTrue(connection.aborted)
        self.assertEqual(len(logs.lines), 1)

    def test_closingDropsOutstandingAnswers(self):
        """GETs still waiting when malformed input arrives are never answered, and no timer remains."""
        clock = Clock()
        connection = Connection(DelayedStore(clock, None), clock)
        connection.send(encodeGet(KEY_A))
        connection.send(b"\x00\x24\x02\x8c" + KEY_A)
        self.assertTrue(connection.aborted)
        connection.lose()
        clock.advance(60)
        self.assertEqual(connection.transport.value(), b"")
        self.assertEqual(clock.getDelayedCalls(), [])


# The service, over real sockets


class ApiClient(Protocol):
    """A module-API client: sends requests, decodes the replies, notices the close."""

    def __init__(self):
        self.decoder = ApiDecoder(REPLIES)
        self.replies = []
        self.received = b""
        self.closed = Deferred()
        self._waiting = []

    def connectionMade(self):
        self.localPort = self.transport.getHost().port

    def dataReceived(self, data):
        self.received += data
        self.replies += self.decoder.feed(data)
        self._check()

    def connectionLost(self, reason):
        self.reason = reason
        self.closed.callback(None)

    def send(self, data):
        self.transport.write(data)

    def nextReplies(self, count):
        """
        @return: a Deferred that fires with the next C{count} replies, counted from now.
        """
        d = Deferred()
        self._waiting.append((len(self.replies), count, d))
        self._check()
        return d

    def _check(self):
        for entry in list(self._waiting):
            start, count, d = entry
            if len(self.replies) >= start + count:
                self._waiting.remove(entry)
                d.callback(self.replies[start : start + count])


def startApiService(testCase, store, **changes):
    """A started L{ApiService} on 127.0.0.1, port chosen by the kernel, stopped on cleanup."""
    service = ApiService(store, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), reactor, **changes)
    service.startService()
    testCase.addCleanup(service.stopService)
    return service


async def connectClient(testCase, service):
    """A connected L{ApiClient}, closed on cleanup."""
    client = ApiClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", service.listeningAddress.port), client)

    def close():
        client.transport.loseConnection()
        return client.closed

    testCase.addCleanup(close)
    return client


class ServiceTests(TestCase):
    """The API service on 127.0.0.1 with real clients."""

    async def test_putThenGetOnOneConnection(self):
        """The official exchange, then a miss, on one connection that stays open."""
        service = startApiService(self, DictStore())
        client = await connectClient(self, service)
        replies = client.nextReplies(1)
        client.send(OFFICIAL_PUT)
        client.send(OFFICIAL_GET)
        self.assertEqual(await replies, [DhtSuccess(LOLZ, b"bernd")])
        replies = client.nextReplies(1)
        client.send(encodeGet(KEY_A))
        self.assertEqual(await replies, [DhtFailure(KEY_A)])
        self.assertEqual(client.received, OFFICIAL_SUCCESS + encodeMessage(DhtFailure(KEY_A)))
        self.assertFalse(client.closed.called)

    async def test_pipelinedGets(self):
        """Several GETs in one write, one key twice, each get their own answer."""
        big = bytes(range(256)) * 200
        service = startApiService(self, DictStore({KEY_A: b"a", KEY_B: big}))
        client = await connectClient(self, service)
        replies = client.nextReplies(5)
        client.send(encodeGet(KEY_A) + encodeGet(KEY_B) + encodeGet(KEY_C) + encodeGet(KEY_A) + encodeGet(KEY_B))
        self.assertCountEqual(
            await replies,
            [DhtSuccess(KEY_A, b"a")] * 2 + [DhtSuccess(KEY_B, big)] * 2 + [DhtFailure(KEY_C)],
        )

    async def test_largestValue(self):
        """A 65535-byte PUT is stored and comes back as a 65535-byte SUCCESS."""
        value = b"\xa5" * 65495
        store = DictStore()
        service = startApiService(self, store)
        client = await connectClient(self, service)
        replies = client.nextReplies(1)
        client.send(encodePut(KEY_A, value, 60, 3) + encodeGet(KEY_A))
        self.assertEqual(await replies, [DhtSuccess(KEY_A, value)])
        self.assertEqual(store.puts, [(KEY_A, value, 60, 3)])

    async def test_slowStoreAnsweredInTime(self):
        """A store that never answers: every pipelined GET still ends in FAILURE, past the limit too."""
        service = startApiService(self, DelayedStore(reactor, None), getTimeout=0.1, apiMaxOutstanding=2)
        client = await connectClient(self, service)
        replies = client.nextReplies(5)
        client.send(encodeGet(KEY_A) * 5)
        self.assertEqual(await replies, [DhtFailure(KEY_A)] * 5)

    async def test_clientGoneBeforeTheAnswer(self):
        """A client that closes before its answer is ready costs nothing and raises nothing."""
        store = DelayedStore(reactor, 0.1, {KEY_A: b"a"})
        service = startApiService(self, store)
        client = await connectClient(self, service)
        client.send(encodeGet(KEY_A))
        client.transport.loseConnection()
        await client.closed
        await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(store.asked, [KEY_A])
        self.assertEqual(service.factory.connections, set())

    async def test_malformedClosesOnlyItsConnection(self):
        """
        Each kind of malformed input closes its own connection, unanswered, with one log line
        naming it; another client's connection goes on working.
        """
        service = startApiService(self, DictStore({LOLZ: b"bernd"}))
        logs = ApiLogCollector(self)
        good = await connectClient(self, service)
        for what, (data, reason) in MALFORMED.items():
            with self.subTest(what):
                bad = await connectClient(self, service)
                bad.send(data)
                await bad.closed
                self.assertEqual(bad.received, b"")
                [line] = logs.about(bad.localPort)
                self.assertIn(reason, line)
                replies = good.nextReplies(1)
                good.send(OFFICIAL_GET)
                self.assertEqual(await replies, [DhtSuccess(LOLZ, b"bernd")])
        self.assertFalse(good.closed.called)
        self.assertEqual(logs.about(good.localPort), [])

    async def test_stopClosesConnections(self):
        """Stopping the service closes the port and every open connection."""
        service = ApiService(DictStore(), TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), reactor)
        service.startService()
        client = await connectClient(self, service)
        await service.stopService()
        await client.closed
        self.assertEqual(service.factory.connections, set())
        self.assertIsNone(service.listeningAddress)

    def test_portInUse(self):
        """A port that cannot be listened on fails the start."""
        first = startApiService(self, DictStore())
        endpoint = TCP4ServerEndpoint(reactor, first.listeningAddress.port, interface="127.0.0.1")
        second = ApiService(DictStore(), endpoint, reactor)
        self.assertRaises(CannotListenError, second.privilegedStartService)
