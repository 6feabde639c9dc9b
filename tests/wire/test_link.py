"""
Property tests of the link frame schemas: the pattern every schema's tests follow.

1. Every valid message rebuilds to the bytes it was parsed from.
2. Every mutation of a valid message (flipped bits, truncation, extension, random bytes) either
   parses to a value that rebuilds to the same bytes or raises L{ProtocolError}; nothing else.
"""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.wire import ProtocolError, parseStrict
from phantom.wire.link import (
    KEEPALIVE_FRAME,
    LINK_ID_SIZE,
    MAX_PAYLOAD,
    Frame,
    Purpose,
    dataHeader,
    encodeOpen,
)
from tests.properties import assertCanonicalOrRejected, mutated

purposes = st.sampled_from(list(Purpose))
linkIds = st.binary(min_size=LINK_ID_SIZE, max_size=LINK_ID_SIZE)
payloads = st.binary(min_size=1, max_size=2048)


def openFrames():
    return st.builds(encodeOpen, purposes, linkIds)


def dataFrames():
    return payloads.map(lambda p: dataHeader(len(p)) + p)


validFrames = st.one_of(openFrames(), dataFrames(), st.just(KEEPALIVE_FRAME))


mutatedFrames = mutated(validFrames)


class FrameSchemaTests(SynchronousTestCase):
    """The link frame schema accepts exactly the canonical frames."""

    @given(validFrames)
    def test_roundTrip(self, frame):
        """A valid frame parses and rebuilds to the same bytes."""
        self.assertEqual(Frame.build(parseStrict(Frame, frame)), frame)

    @given(mutatedFrames)
    def test_mutationsRejectedOrCanonical(self, data):
        """A mutated frame parses only if it is itself canonical; otherwise ProtocolError."""
        assertCanonicalOrRejected(self, Frame, data)

    def test_openContent(self):
        """An OPEN frame carries its purpose and link id."""
        parsed = parseStrict(Frame, encodeOpen(Purpose.ECHO, b"\x07" * 16))
        self.assertEqual(int(parsed.body.content.purpose), Purpose.ECHO)
        self.assertEqual(parsed.body.content.link_id, b"\x07" * 16)

    def test_unknownPurposeRejected(self):
        """An OPEN frame naming a purpose that does not exist is malformed."""
        frame = bytearray(encodeOpen(Purpose.ECHO))
        frame[5] = 0xEE
        self.assertRaises(ProtocolError, parseStrict, Frame, bytes(frame))

    def test_unknownKindRejected(self):
        """A frame of an unknown kind is malformed."""
        self.assertRaises(ProtocolError, parseStrict, Frame, b"\x00\x00\x00\x01\x09")

    def test_emptyDataRejected(self):
        """A DATA frame must carry at least one byte."""
        self.assertRaises(ProtocolError, parseStrict, Frame, b"\x00\x00\x00\x01\x02")

    def test_oversizedRejected(self):
        """A body longer than the maximum is malformed even when complete."""
        body = b"\x02" + b"x" * (MAX_PAYLOAD + 1)
        self.assertRaises(ProtocolError, parseStrict, Frame, len(body).to_bytes(4, "big") + body)

    def test_trailingBytesRejected(self):
        """Bytes after a complete frame are not silently ignored."""
        self.assertRaises(ProtocolError, parseStrict, Frame, KEEPALIVE_FRAME + b"\x00")

    def test_keepaliveWithContentRejected(self):
        """A KEEPALIVE frame carries nothing."""
        self.assertRaises(ProtocolError, parseStrict, Frame, b"\x00\x00\x00\x02\x03\x00")

    def test_dataHeaderLimits(self):
        """No DATA header is made for an empty or oversized payload."""
        self.assertRaises(ValueError, dataHeader, 0)
        self.assertRaises(ValueError, dataHeader, MAX_PAYLOAD + 1)
