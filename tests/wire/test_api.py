"""
Property tests of the DHT module-API schemas (types 650 to 653), after the pattern of
L{tests.wire.test_link}: valid messages rebuild to their own bytes; mutated ones parse only to
something canonical, or raise L{ProtocolError}; the header check never refuses what the schema
accepts.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.wire import ProtocolError, parseStrict
from tests.properties import assertCanonicalOrRejected, mutated
from phantom.wire.api import (
    HEADER,
    KEY_SIZE,
    MAX_MESSAGE,
    MAX_PUT_VALUE,
    MAX_SUCCESS_VALUE,
    REPLIES,
    REQUESTS,
    DhtFailure,
    DhtGet,
    DhtPut,
    DhtSuccess,
    Message,
    MessageType,
    checkHeader,
    decodeMessage,
    encodeGet,
    encodeMessage,
    encodePut,
)

# The official client's default exchange (reference, section 1.3): key b"lolz" * 8, value b"bernd".
LOLZ = b"lolz" * 8
OFFICIAL_PUT = bytes.fromhex("002d028a00010100" + "6c6f6c7a" * 8 + "6265726e64")
OFFICIAL_GET = bytes.fromhex("0024028b" + "6c6f6c7a" * 8)
OFFICIAL_SUCCESS = bytes.fromhex("0029028c" + "6c6f6c7a" * 8 + "6265726e64")
OFFICIAL_FAILURE = bytes.fromhex("0024028d" + "6c6f6c7a" * 8)

keys = st.binary(min_size=KEY_SIZE, max_size=KEY_SIZE)
values = st.binary(min_size=1, max_size=512)
puts = st.builds(DhtPut, keys, values, st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFF))
gets = st.builds(DhtGet, keys)
successes = st.builds(DhtSuccess, keys, values)
failures = st.builds(DhtFailure, keys)
requestMessages = st.one_of(puts, gets)
replyMessages = st.one_of(successes, failures)
messages = st.one_of(requestMessages, replyMessages)
validMessages = messages.map(encodeMessage)


def resize(draw, data):
    """Give the message another size field."""
    size = draw(st.one_of(st.integers(0, 80), st.integers(0, MAX_MESSAGE)))
    data[0:2] = size.to_bytes(2, "big")
    return data


def retype(draw, data):
    """Give the message another type field."""
    number = draw(st.one_of(st.sampled_from(list(MessageType)), st.integers(0, 0xFFFF)))
    data[2:4] = int(number).to_bytes(2, "big")
    return data


def mutatedMessages():
    """A valid message with its bytes, its size or its type tampered with."""
    return mutated(validMessages, (resize, retype))


class MessageSchemaTests(SynchronousTestCase):
    """The message schema accepts exactly the canonical messages."""

    @given(messages)
    def test_roundTrip(self, message):
        """A message encodes, parses with the schema, rebuilds and decodes to itself."""
        data = encodeMessage(message)
        self.assertEqual(Message.build(parseStrict(Message, data)), data)
        self.assertEqual(decodeMessage(data), message)

    @given(mutatedMessages())
    def test_mutationsRejectedOrCanonical(self, data):
        """A mutated message parses only if it is itself canonical; otherwise ProtocolError."""
        assertCanonicalOrRejected(self, Message, data)
        try:
            message = decodeMessage(data)
        except ProtocolError:
            return
        self.assertEqual(encodeMessage(message), data)

    @given(messages)
    def test_sizeFieldIsWholeLength(self, message):
        """The size field counts the whole message, header included; the type field names it."""
        data = encodeMessage(message)
        self.assertEqual(HEADER.unpack_from(data), (len(data), message.type))

    def test_officialExchange(self):
        """The official client's PUT (45 bytes) and GET (36), and the SUCCESS (41) and FAILURE (36)."""
        self.assertEqual(encodePut(LOLZ, b"bernd", 1, 1), OFFICIAL_PUT)
        self.assertEqual(encodeGet(LOLZ), OFFICIAL_GET)
        self.assertEqual(encodeMessage(DhtSuccess(LOLZ, b"bernd")), OFFICIAL_SUCCESS)
        self.assertEqual(encodeMessage(DhtFailure(LOLZ)), OFFICIAL_FAILURE)
        self.assertEqual(
            [len(m) for m in (OFFICIAL_PUT, OFFICIAL_GET, OFFICIAL_SUCCESS, OFFICIAL_FAILURE)], [45, 36, 41, 36]
        )
        self.assertEqual(decodeMessage(OFFICIAL_PUT), DhtPut(LOLZ, b"bernd", ttl=1, replication=1))
        self.assertEqual(decodeMessage(OFFICIAL_GET), DhtGet(LOLZ))
        self.assertEqual(decodeMessage(OFFICIAL_SUCCESS), DhtSuccess(LOLZ, b"bernd"))
        self.assertEqual(decodeMessage(OFFICIAL_FAILURE), DhtFailure(LOLZ))

    def test_reservedByteKept(self):
        """Any reserved byte is accepted and kept, so the PUT rebuilds to its own bytes."""
        data = bytearray(OFFICIAL_PUT)
        data[7] = 0xA5
        message = decodeMessage(bytes(data))
        self.assertEqual((message.reserved, message.value), (0xA5, b"bernd"))
        self.assertEqual(encodeMessage(message), bytes(data))

    def test_largestValues(self):
        """A PUT carries up to 65495 value bytes and a SUCCESS up to 65499: 65535-byte messages."""
        put = encodePut(LOLZ, b"v" * MAX_PUT_VALUE, 1, 1)
        success = encodeMessage(DhtSuccess(LOLZ, b"v" * MAX_SUCCESS_VALUE))
        self.assertEqual((len(put), len(success)), (MAX_MESSAGE, MAX_MESSAGE))
        self.assertEqual(decodeMessage(put).value, b"v" * MAX_PUT_VALUE)
        self.assertEqual(decodeMessage(success).value, b"v" * MAX_SUCCESS_VALUE)
        self.assertRaises(ValueError, encodePut, LOLZ, b"v" * (MAX_PUT_VALUE + 1), 1, 1)
        self.assertRaises(ValueError, encodeMessage, DhtSuccess(LOLZ, b"v" * (MAX_SUCCESS_VALUE + 1)))

    def test_badFieldsNotBuilt(self):
        """No message is built with a wrong key length, an empty value or out-of-range numbers."""
        self.assertRaises(ValueError, encodeGet, LOLZ[:31])
        self.assertRaises(ValueError, encodeGet, LOLZ + b"x")
        self.assertRaises(ValueError, encodePut, LOLZ, b"", 1, 1)
        self.assertRaises(ValueError, encodePut, LOLZ, b"x", 0x10000, 1)
        self.assertRaises(ValueError, encodePut, LOLZ, b"x", 1, 256)
        self.assertRaises(ValueError, encodePut, LOLZ, b"x", -1, 1)
        self.assertRaises(ValueError, encodeMessage, DhtSuccess(LOLZ, b""))

    def test_malformedRejected(self):
        """Each kind of malformed message raises ProtocolError."""
        malformed = {
            "size below the header": b"\x00\x03\x02\x8b",
            "size zero": b"\x00\x00\x02\x8b",
            "GET one byte long": b"\x00\x25\x02\x8b" + LOLZ + b"x",
            "GET one byte short": b"\x00\x23\x02\x8b" + LOLZ[:31],
            "PUT with an empty value": b"\x00\x28\x02\x8a\x00\x01\x01\x00" + LOLZ,
            "PUT shorter than its fixed part": b"\x00\x10\x02\x8a" + bytes(12),
            "SUCCESS with an empty value": b"\x00\x24\x02\x8c" + LOLZ,
            "FAILURE with a value": b"\x00\x25\x02\x8d" + LOLZ + b"x",
            "unknown type": b"\x00\x24\x02\x8e" + LOLZ,
            "bytes after the message": OFFICIAL_GET + b"\x00",
            "size beyond the data": b"\x00\x30" + OFFICIAL_GET[2:],
        }
        for what, data in malformed.items():
            with self.subTest(what):
                self.assertRaises(ProtocolError, decodeMessage, data)


class HeaderCheckTests(SynchronousTestCase):
    """L{checkHeader} refuses early exactly what the schema would refuse later."""

    @given(validMessages)
    def test_acceptsEveryValidMessage(self, data):
        """The header of every valid message passes, and names its type."""
        size, number = HEADER.unpack_from(data)
        self.assertEqual(checkHeader(size, number), number)

    @given(mutatedMessages())
    def test_neverRefusesWhatTheSchemaAccepts(self, data):
        """Where the header check refuses, the schema refuses the whole message too."""
        if len(data) < 4:
            return
        try:
            checkHeader(*HEADER.unpack_from(data))
        except ProtocolError:
            self.assertRaises(ProtocolError, parseStrict, Message, data)

    def test_agreesWithTheSchema(self):
        """
        A header passes exactly when the schema accepts a message of that size and type: every
        size up to 100 and the largest ones, every type around 650 to 653. (For all four types
        any body bytes of an allowed length are valid.)
        """
        for number in [0, 649, 650, 651, 652, 653, 654, 0xFFFF]:
            for size in [*range(101), MAX_MESSAGE - 1, MAX_MESSAGE]:
                data = HEADER.pack(size, number) + bytes(max(size - 4, 0))
                try:
                    parseStrict(Message, data)
                    accepted = True
                except ProtocolError:
                    accepted = False
                try:
                    kind = checkHeader(size, number)
                except ProtocolError:
                    passed = False
                else:
                    passed = True
                    self.assertEqual(kind, number)
                self.assertEqual(passed, accepted, (size, number))

    def test_reasons(self):
        """The reason says what is wrong."""
        cases = [
            ((3, 651), "below the 4-byte header"),
            ((36, 654), "unknown message type 654"),
            ((37, 651), "DHT GET of 37 bytes; exactly 36 allowed"),
            ((40, 650), "DHT PUT of 40 bytes carries an empty value"),
            ((20, 650), "DHT PUT of 20 bytes; 41 to 65535 allowed"),
            ((36, 652), "DHT SUCCESS of 36 bytes carries an empty value"),
            ((35, 653), "DHT FAILURE of 35 bytes; exactly 36 allowed"),
        ]
        for header, reason in cases:
            with self.subTest(header):
                with self.assertRaises(ProtocolError) as caught:
                    checkHeader(*header)
                self.assertIn(reason, str(caught.exception))

    def test_directions(self):
        """PUT and GET go to the node; SUCCESS and FAILURE come back."""
        self.assertEqual(REQUESTS, {MessageType.PUT, MessageType.GET})
        self.assertEqual(REPLIES, {MessageType.SUCCESS, MessageType.FAILURE})
