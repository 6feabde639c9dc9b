"""
Property tests of the tunnel setup blocks: valid blocks round-trip, mutated ones parse only if
canonical, random ones never pass; and the layouts, byte for byte.
"""

import hashlib

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.wire import ProtocolError, parseStrict
from phantom.wire.tunnel import (
    BLOCK_SIZE,
    ApAnswer,
    ApRequest,
    TunnelOpening,
    CHECK,
    EntryInit,
    ExitInit,
    InboundReply,
    InboundStatus,
    OutboundReply,
    buildEntryInit,
    buildExitInit,
    buildInboundReply,
    buildOutboundReply,
    isExitInit,
    parseEntryInit,
    parseInboundReply,
    parseOutboundReply,
)
from tests.properties import assertCanonicalOrRejected, mutated

addresses = st.binary(min_size=16, max_size=16)
randomSources = st.binary(min_size=36, max_size=36).map(lambda pool: lambda size: pool[:size])
"""C{randomBytes} callables, each always giving the same bytes."""

validBlocks = {
    ExitInit: st.builds(buildExitInit, randomSources),
    EntryInit: st.builds(buildEntryInit, addresses, addresses, randomSources),
    OutboundReply: st.builds(buildOutboundReply, addresses, randomSources),
    InboundReply: st.builds(buildInboundReply, st.sampled_from(InboundStatus), randomSources),
}
anyValidBlock = st.one_of(*validBlocks.values())
schemas = st.sampled_from(list(validBlocks))


def counting(size):
    """The bytes 0, 1, 2... as a C{randomBytes} would give them."""
    return bytes(range(size))


def checksum(label, body, size):
    return hashlib.sha256(label + body).digest()[:size]


class BlockSchemaTests(SynchronousTestCase):
    """Each setup block schema accepts exactly its canonical 48-byte blocks."""

    @given(st.data())
    def test_roundTrip(self, data):
        """A valid block is 48 bytes, parses, and rebuilds to the same bytes."""
        schema = data.draw(schemas)
        block = data.draw(validBlocks[schema])
        self.assertEqual(len(block), BLOCK_SIZE)
        self.assertEqual(schema.build(parseStrict(schema, block)), block)

    @given(schemas, mutated(anyValidBlock))
    def test_mutationsRejectedOrCanonical(self, schema, data):
        """Whatever a block was mutated into parses only if it is canonical."""
        assertCanonicalOrRejected(self, schema, data)

    @given(schemas, st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE))
    def test_randomRejected(self, schema, data):
        """Random bytes are not a block: the check or the checksum fails."""
        self.assertRaises(ProtocolError, parseStrict, schema, data)

    @given(st.data())
    def test_bitFlipsRejected(self, data):
        """Every checksum covers every other bit of its block."""
        schema = data.draw(schemas)
        block = bytearray(data.draw(validBlocks[schema]))
        block[data.draw(st.integers(0, BLOCK_SIZE - 1))] ^= 1 << data.draw(st.integers(0, 7))
        self.assertRaises(ProtocolError, parseStrict, schema, bytes(block))

    def test_typesAreNotInterchangeable(self):
        """A block of one type is not a block of another, though sizes and checks agree."""
        blocks = {
            ExitInit: buildExitInit(counting),
            EntryInit: buildEntryInit(bytes(16), bytes(16), counting),
            OutboundReply: buildOutboundReply(bytes(16), counting),
            InboundReply: buildInboundReply(InboundStatus.ACCEPTED, counting),
        }
        for schema in blocks:
            for other, block in blocks.items():
                if other is not schema:
                    self.assertRaises(ProtocolError, parseStrict, schema, block)


class LayoutTests(SynchronousTestCase):
    """The blocks as the module docstring draws them."""

    def test_exitInit(self):
        """Check word, 36 random bytes, 8 bytes of checksum."""
        body = CHECK + counting(36)
        self.assertEqual(buildExitInit(counting), body + checksum(b"phantom tunnel exit init\x00", body, 8))

    def test_entryInit(self):
        """Check word, 8 random bytes, the peer's address, the AP-address, 4 bytes of checksum."""
        ap, peer = b"\xfd" + b"a" * 15, bytes(10) + b"\xff\xff\x7f\x00\x00\x01"
        body = CHECK + counting(8) + peer + ap
        block = buildEntryInit(ap, peer, counting)
        self.assertEqual(block, body + checksum(b"phantom tunnel entry init\x00", body, 4))
        self.assertEqual(parseEntryInit(block), (ap, peer))

    def test_outboundReply(self):
        """16 random bytes, the AP-address, 16 bytes of checksum."""
        ap = b"\xfd" + b"b" * 15
        body = counting(16) + ap
        block = buildOutboundReply(ap, counting)
        self.assertEqual(block, body + checksum(b"phantom tunnel outbound reply\x00", body, 16))
        self.assertEqual(parseOutboundReply(block), ap)

    def test_inboundReply(self):
        """16 random bytes, the status, 15 zero bytes, 16 bytes of checksum."""
        body = counting(16) + b"\x01" + bytes(15)
        block = buildInboundReply(InboundStatus.REFUSED, counting)
        self.assertEqual(block, body + checksum(b"phantom tunnel inbound reply\x00", body, 16))
        self.assertIs(parseInboundReply(block), InboundStatus.REFUSED)
        self.assertIs(parseInboundReply(buildInboundReply(InboundStatus.ACCEPTED)), InboundStatus.ACCEPTED)

    def test_badFieldsRejectedUnderGoodChecksum(self):
        """An unknown status or non-zero reserved byte is refused even when the checksum fits."""
        label = b"phantom tunnel inbound reply\x00"
        for body in (counting(16) + b"\x02" + bytes(15), counting(16) + b"\x00" + bytes(14) + b"\x01"):
            self.assertRaises(ProtocolError, parseInboundReply, body + checksum(label, body, 16))

    def test_badCheckRejectedUnderGoodChecksum(self):
        """An init block must start with the check word, whatever its checksum says."""
        body = b"\x00\x00\x00\x01" + counting(36)
        self.assertFalse(isExitInit(body + checksum(b"phantom tunnel exit init\x00", body, 8)))

    def test_freshRandomness(self):
        """By default every block is made with fresh random bytes."""
        self.assertNotEqual(buildExitInit(), buildExitInit())
        self.assertNotEqual(buildEntryInit(bytes(16), bytes(16)), buildEntryInit(bytes(16), bytes(16)))
        self.assertNotEqual(buildOutboundReply(bytes(16)), buildOutboundReply(bytes(16)))
        self.assertNotEqual(buildInboundReply(InboundStatus.ACCEPTED), buildInboundReply(InboundStatus.ACCEPTED))

    def test_isExitInit(self):
        """Exit init blocks are recognised; anything else, including an entry init block, is not."""
        self.assertTrue(isExitInit(buildExitInit()))
        self.assertFalse(isExitInit(buildEntryInit(bytes(16), bytes(16))))
        self.assertFalse(isExitInit(buildExitInit()[:-1]))


frameSchemas = {
    TunnelOpening: st.builds(
        lambda first, second: TunnelOpening.build({"first": first, "second": second}),
        st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE),
        st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE),
    ),
    ApRequest: addresses.map(lambda ap: ApRequest.build({"ap_address": ap})),
    ApAnswer: st.sampled_from(InboundStatus).map(lambda status: ApAnswer.build({"status": status})),
}
anyFrame = st.one_of(*frameSchemas.values())


class FrameSchemaTests(SynchronousTestCase):
    """The frames of tunnel links and entry links accept exactly their canonical form."""

    @given(st.data())
    def test_roundTrip(self, data):
        schema = data.draw(st.sampled_from(list(frameSchemas)))
        frame = data.draw(frameSchemas[schema])
        self.assertEqual(schema.build(parseStrict(schema, frame)), frame)

    @given(st.sampled_from(list(frameSchemas)), mutated(anyFrame))
    def test_mutationsRejectedOrCanonical(self, schema, data):
        assertCanonicalOrRejected(self, schema, data)

    def test_sizes(self):
        """An opening is two blocks, a request one address, an answer one byte; nothing else."""
        self.assertEqual(len(TunnelOpening.build({"first": bytes(48), "second": bytes(48)})), 96)
        self.assertRaises(ProtocolError, parseStrict, TunnelOpening, bytes(95))
        self.assertRaises(ProtocolError, parseStrict, ApRequest, bytes(17))
        self.assertRaises(ProtocolError, parseStrict, ApAnswer, b"\x02")
        self.assertRaises(ProtocolError, parseStrict, ApAnswer, b"\x00\x00")
