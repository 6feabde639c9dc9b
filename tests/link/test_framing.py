"""Tests of the sans-io frame decoder, held to the strict schema by property tests."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.link import framing
from phantom.link.framing import FrameDecoder, encodeFrame
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.link import KEEPALIVE_FRAME, MAX_BODY, Frame, FrameKind, Purpose, dataHeader, encodeOpen
from tests.properties import feedInPieces
from tests.wire.test_link import mutatedFrames, validFrames


class FrameDecoderTests(SynchronousTestCase):
    """L{FrameDecoder} splits a stream into exactly the frames the schema accepts."""

    @given(st.lists(validFrames, min_size=1, max_size=8), st.data())
    def test_anySplitGivesTheSameFrames(self, frames, data):
        """
        However the stream is cut into chunks, the same frames come out (runs of KEEPALIVE
        counted), and rebuild to it.
        """
        stream = b"".join(frames)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
        decoder = FrameDecoder()
        decoded = feedInPieces(decoder, stream, cuts)
        self.assertEqual(b"".join(encodeFrame(kind, content) for kind, content in decoded), stream)
        others = [frame for frame in frames if frame != KEEPALIVE_FRAME]
        self.assertEqual([encodeFrame(kind, content) for kind, content in decoded if kind is not FrameKind.KEEPALIVE], others)
        self.assertEqual(decoder.pending, 0)

    @given(mutatedFrames)
    def test_agreesWithSchema(self, data):
        """
        Where the strict schema accepts bytes as one frame, the decoder yields exactly that
        frame; otherwise it rejects them, or yields canonical frames and keeps the rest for later.
        """
        try:
            parseStrict(Frame, data)
            accepted = True
        except ProtocolError:
            accepted = False
        decoder = FrameDecoder()
        try:
            frames = decoder.feed(data)
        except ProtocolError:
            self.assertFalse(accepted)
            return
        decoded = b"".join(encodeFrame(kind, content) for kind, content in frames)
        if accepted:
            self.assertEqual((decoded, decoder.pending), (data, 0))
        else:
            # Several frames, or frames and the start of the next one.
            self.assertEqual(decoded, data[: len(data) - decoder.pending])

    def test_keepaliveWithoutTheSchema(self):
        """
        KEEPALIVE frames, what a flooding peer sends most cheaply, are decoded without the
        schema, and a run of them comes out as one item with its count, not an object each.
        """
        parsed = []
        self.patch(framing, "parseStrict", lambda *args: parsed.append(args) or parseStrict(*args))
        frames = FrameDecoder().feed(KEEPALIVE_FRAME * 1000 + encodeOpen(Purpose.ECHO) + KEEPALIVE_FRAME)
        self.assertEqual(frames[0], (FrameKind.KEEPALIVE, 1000))
        self.assertEqual([kind for kind, _ in frames], [FrameKind.KEEPALIVE, FrameKind.OPEN, FrameKind.KEEPALIVE])
        self.assertEqual(frames[2], (FrameKind.KEEPALIVE, 1))
        self.assertEqual(len(parsed), 1)

    def test_oversizedRejectedFromHeader(self):
        """An oversized length is refused as soon as the 4 length bytes arrive."""
        decoder = FrameDecoder()
        self.assertRaises(ProtocolError, decoder.feed, (MAX_BODY + 1).to_bytes(4, "big"))

    def test_zeroLengthRejected(self):
        """A frame with an empty body is refused."""
        self.assertRaises(ProtocolError, FrameDecoder().feed, b"\x00\x00\x00\x00")

    def test_partialFrameWaits(self):
        """A partial frame yields nothing and is kept until the rest arrives."""
        decoder = FrameDecoder()
        frame = dataHeader(3) + b"abc"
        self.assertEqual(decoder.feed(frame[:6]), [])
        self.assertEqual(decoder.pending, 6)
        self.assertEqual(decoder.feed(frame[6:]), [(FrameKind.DATA, b"abc")])

    def test_kinds(self):
        """OPEN, DATA and KEEPALIVE come out with their content."""
        frames = FrameDecoder().feed(encodeOpen(Purpose.ECHO) + dataHeader(1) + b"x" + KEEPALIVE_FRAME)
        self.assertEqual([kind for kind, _ in frames], [FrameKind.OPEN, FrameKind.DATA, FrameKind.KEEPALIVE])
        self.assertEqual(int(frames[0][1].purpose), Purpose.ECHO)
        self.assertEqual(frames[1][1], b"x")
        self.assertEqual(frames[2][1], 1)
