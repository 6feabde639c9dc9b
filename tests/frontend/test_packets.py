"""IPv6 packets: what the frontend routes by, the ICMPv6 errors it sends, tunnel framing."""

import struct

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.frontend.packets import (
    HEADER,
    ICMPV6,
    MAX_PACKET,
    MINIMUM_MTU,
    PacketDeframer,
    checksum,
    destinationUnreachable,
    framePacket,
    isApAddress,
    isUnsolicited,
    packetTooBig,
    parsePacket,
    portsOf,
)
from phantom.wire import ProtocolError
from tests.properties import feedInPieces, mutated

addresses = st.binary(min_size=16, max_size=16)


@st.composite
def packets(draw, maxPayload=1500):
    """A well-formed IPv6 packet."""
    payload = draw(st.binary(max_size=maxPayload))
    nextHeader = draw(st.sampled_from([6, 17, 58]))
    return HEADER.pack(6 << 28, len(payload), nextHeader, 64, draw(addresses), draw(addresses)) + payload


class ParseTests(SynchronousTestCase):
    @given(packets())
    def test_validParsed(self, packet):
        """A well-formed packet gives its addresses."""
        self.assertEqual(parsePacket(packet), (packet[8:24], packet[24:40]))

    @given(mutated(packets(maxPayload=64)))
    def test_mutatedParsedConsistentlyOrRejected(self, packet):
        """Whatever a packet was mutated into parses only where it is well-formed IPv6."""
        try:
            source, destination = parsePacket(packet)
        except ProtocolError:
            return
        self.assertEqual(packet[0] >> 4, 6)
        self.assertEqual(struct.unpack("!H", packet[4:6])[0] + 40, len(packet))
        self.assertEqual((source, destination), (packet[8:24], packet[24:40]))

    def test_rejected(self):
        """IPv4, truncated packets and packets longer or shorter than their header says."""
        ipv4 = bytes([0x45]) + bytes(39)
        good = HEADER.pack(6 << 28, 4, 17, 64, bytes(16), bytes(16)) + b"abcd"
        for bad in (ipv4, good[:39], good[:-1], good + b"x", b""):
            self.assertRaises(ProtocolError, parsePacket, bad)

    def test_apAddress(self):
        self.assertTrue(isApAddress(b"\xfd" + bytes(15)))
        self.assertFalse(isApAddress(b"\xfe\x80" + bytes(14)))


class TransportTests(SynchronousTestCase):
    """What the router tells answers by: ports, and whether a packet begins something."""

    @given(st.integers(0, 255), st.binary(max_size=64))
    def test_anyNextHeaderAnyPayload(self, nextHeader, payload):
        """
        For any next header and payload, L{portsOf} and L{isUnsolicited} answer or raise
        L{ProtocolError}; the ports are the first four bytes after the header, for TCP and UDP
        only; a next header other than TCP, UDP and ICMPv6 is always unsolicited.
        """
        packet = HEADER.pack(6 << 28, len(payload), nextHeader, 64, bytes(16), bytes(16)) + payload
        try:
            ports = portsOf(packet)
            unsolicited = isUnsolicited(packet)
        except ProtocolError:
            self.assertIn(nextHeader, (6, 17, 58))
            return
        if nextHeader in (6, 17):
            self.assertEqual(ports, struct.unpack("!HH", payload[:4]))
        else:
            self.assertIsNone(ports)
        if nextHeader not in (6, 17, 58):
            self.assertTrue(unsolicited)
        if nextHeader == 6:
            self.assertEqual(unsolicited, payload[13] & 0x12 == 0x02)

    def test_cutShort(self):
        """TCP without its flags, UDP without its 8 bytes, ICMPv6 without its type: rejected."""
        for nextHeader, length in ((6, 13), (17, 7), (58, 0)):
            packet = HEADER.pack(6 << 28, length, nextHeader, 64, bytes(16), bytes(16)) + bytes(length)
            self.assertRaises(ProtocolError, isUnsolicited, packet)


class UnreachableTests(SynchronousTestCase):
    @given(packets(maxPayload=3000), addresses)
    def test_icmpError(self, packet, router):
        """
        The error goes from the router to the packet's source, is ICMPv6 type 1, carries the
        start of the packet, never exceeds the minimum MTU, and its checksum verifies.
        """
        error = destinationUnreachable(packet, router, code=3)
        source, destination = parsePacket(error)
        self.assertEqual((source, destination), (router, packet[8:24]))
        self.assertEqual(error[6], ICMPV6)
        self.assertLessEqual(len(error), MINIMUM_MTU)
        message = error[40:]
        self.assertEqual((message[0], message[1]), (1, 3))
        self.assertTrue(packet.startswith(message[8:]))
        pseudoHeader = source + destination + struct.pack("!I3xB", len(message), ICMPV6)
        self.assertEqual(checksum(pseudoHeader + message), 0)

    @given(packets(maxPayload=3000), addresses, st.integers(MINIMUM_MTU, MAX_PACKET))
    def test_packetTooBig(self, packet, router, mtu):
        """Packet too big: ICMPv6 type 2, code 0, the MTU after the checksum, the start of the packet."""
        error = packetTooBig(packet, router, mtu)
        source, destination = parsePacket(error)
        self.assertEqual((source, destination), (router, packet[8:24]))
        self.assertLessEqual(len(error), MINIMUM_MTU)
        message = error[40:]
        self.assertEqual(struct.unpack("!BBHI", message[:8])[::3], (2, mtu))
        self.assertEqual(message[1], 0)
        self.assertTrue(packet.startswith(message[8:]))
        pseudoHeader = source + destination + struct.pack("!I3xB", len(message), ICMPV6)
        self.assertEqual(checksum(pseudoHeader + message), 0)


class FramingTests(SynchronousTestCase):
    @given(st.lists(packets(maxPayload=200), max_size=6), st.lists(st.integers(0, 2000), max_size=8))
    def test_anyCuts(self, sent, cuts):
        """Framed packets come out whole and in order however the stream is cut."""
        stream = b"".join(framePacket(packet) for packet in sent)
        self.assertEqual(feedInPieces(PacketDeframer(), stream, [cut for cut in cuts if cut <= len(stream)]), sent)

    def test_longestPacket(self):
        """A packet of the tunnel MTU is framed and comes out whole; a longer one is refused."""
        longest = HEADER.pack(6 << 28, MAX_PACKET - 40, 17, 64, bytes(16), bytes(16)) + bytes(MAX_PACKET - 40)
        self.assertEqual(PacketDeframer().feed(framePacket(longest)), [longest])
        self.assertRaises(ValueError, framePacket, longest + b"x")

    def test_emptyFrameRejected(self):
        self.assertRaises(ProtocolError, PacketDeframer().feed, b"\x00\x00")
