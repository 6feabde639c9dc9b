"""
IPv6 packets as the tun frontend handles them, sans-io: the header fields it routes by, the
ICMPv6 errors it answers with (destination unreachable, packet too big), and the framing of
packets in a tunnel's stream.
"""

import struct

from phantom.wire import ProtocolError

HEADER = struct.Struct("!IHBB16s16s")
"""The fixed IPv6 header: version, class and flow label; payload length; next header; hop limit; addresses."""
HEADER_SIZE = HEADER.size
TCP, UDP, ICMPV6 = 6, 17, 58
PORTS = struct.Struct("!HH")
"""The source and destination ports that begin a TCP or UDP header."""
TCP_FLAGS_OFFSET = 13
TCP_SYN, TCP_ACK = 0x02, 0x10
ECHO_REQUEST = 128
MINIMUM_MTU = 1280
"""The smallest link MTU IPv6 allows: an ICMPv6 error never makes a longer packet (RFC 4443)."""
AP_PREFIX = b"\xfd"
"""AP-addresses are in fd00::/8."""

FRAME_HEADER = struct.Struct("!H")
MAX_PACKET = 0xFFFF
"""The longest packet a tunnel frame carries: the tunnel MTU. An IPv6 packet can be 40 bytes longer."""


class IcmpType:
    """The ICMPv6 error types the frontend sends (RFC 4443 §3)."""

    DESTINATION_UNREACHABLE = 1
    PACKET_TOO_BIG = 2


class UnreachableCode:
    """ICMPv6 destination-unreachable codes (RFC 4443 §3.1)."""

    NO_ROUTE = 0
    ADDRESS_UNREACHABLE = 3
    SOURCE_POLICY = 5
    """Source address failed ingress/egress policy: no tunnel is opened from the published AP-address."""


def parsePacket(packet):
    """
    @return: C{(source, destination)}, 16 bytes each.
    @raise ProtocolError: not an IPv6 packet, truncated, or longer than its header says.
    """
    if len(packet) < HEADER_SIZE:
        raise ProtocolError(f"a packet of {len(packet)} bytes is shorter than an IPv6 header")
    first, payloadLength, _, _, source, destination = HEADER.unpack_from(packet)
    if first >> 28 != 6:
        raise ProtocolError(f"an IPv{first >> 28} packet; only IPv6 is carried")
    if HEADER_SIZE + payloadLength != len(packet):
        raise ProtocolError(f"an IPv6 packet of {len(packet)} bytes whose header says {HEADER_SIZE + payloadLength}")
    return source, destination


def isIcmpError(packet):
    """
    Whether C{packet} (a valid IPv6 packet) is an ICMPv6 error message (type below 128) right
    after the IPv6 header: one that must never be answered with another error (RFC 4443 §2.4 e).
    """
    return packet[6] == ICMPV6 and len(packet) > HEADER_SIZE and packet[HEADER_SIZE] < 128


def isPacketTooBig(packet):
    """Whether C{packet} (a valid IPv6 packet) is an ICMPv6 packet-too-big right after the IPv6 header."""
    return packet[6] == ICMPV6 and len(packet) > HEADER_SIZE and packet[HEADER_SIZE] == IcmpType.PACKET_TOO_BIG


def portsOf(packet):
    """
    The ports of a valid IPv6 packet that carries TCP or UDP right after its header.

    @return: C{(source port, destination port)}, or C{None} for any other next header.
    @raise ProtocolError: its TCP or UDP header is cut short.
    """
    if packet[6] not in (TCP, UDP):
        return None
    if len(packet) < HEADER_SIZE + (TCP_FLAGS_OFFSET + 1 if packet[6] == TCP else 8):
        raise ProtocolError(f"a {'TCP' if packet[6] == TCP else 'UDP'} header cut short in a packet of {len(packet)} bytes")
    return PORTS.unpack_from(packet, HEADER_SIZE)


def isUnsolicited(packet):
    """
    Whether a valid IPv6 packet would begin something at its destination rather than answer
    what the destination sent: a TCP SYN without ACK, an ICMPv6 echo request, or a next header
    the frontend does not follow (extension headers, protocols other than TCP, UDP and ICMPv6).
    UDP is never unsolicited by itself: the router tells it by the flows it has seen.

    @raise ProtocolError: its TCP or ICMPv6 header is cut short.
    """
    nextHeader = packet[6]
    if nextHeader == TCP:
        portsOf(packet)
        flags = packet[HEADER_SIZE + TCP_FLAGS_OFFSET]
        return flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    if nextHeader == UDP:
        portsOf(packet)
        return False
    if nextHeader == ICMPV6:
        if len(packet) <= HEADER_SIZE:
            raise ProtocolError("an ICMPv6 packet without its type")
        return packet[HEADER_SIZE] == ECHO_REQUEST
    return True


def isApAddress(address):
    """Whether a 16-byte address is an AP-address (in fd00::/8)."""
    return address[:1] == AP_PREFIX


def checksum(data):
    """The Internet checksum (RFC 1071) of C{data}."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpError(packet, source, icmpType, code, field):
    """
    The ICMPv6 error a router sends back for C{packet} (RFC 4443 §2.1).

    @param packet: the packet that could not be delivered (a valid IPv6 packet).
    @param source: the address the error comes from (the node's own AP-address).
    @param icmpType: an L{IcmpType}.
    @param field: the 4-byte field after the checksum (the MTU of a packet too big, else 0).
    @return: the ICMPv6 packet to the original packet's source, holding as much of the packet
        as fits in L{MINIMUM_MTU}.
    """
    originalSource, _ = parsePacket(packet)
    invoking = bytes(packet[: MINIMUM_MTU - HEADER_SIZE - 8])
    message = struct.pack("!BBHI", icmpType, code, 0, field) + invoking
    pseudoHeader = source + originalSource + struct.pack("!I3xB", len(message), ICMPV6)
    message = message[:2] + struct.pack("!H", checksum(pseudoHeader + message)) + message[4:]
    header = HEADER.pack(6 << 28, len(message), ICMPV6, 64, source, originalSource)
    return header + message


def destinationUnreachable(packet, source, code=UnreachableCode.NO_ROUTE):
    """The ICMPv6 destination-unreachable (an L{UnreachableCode}) for C{packet}: L{icmpError}."""
    return icmpError(packet, source, IcmpType.DESTINATION_UNREACHABLE, code, 0)


def packetTooBig(packet, source, mtu=MAX_PACKET):
    """The ICMPv6 packet-too-big for C{packet}, telling its sender the MTU C{mtu}: L{icmpError}."""
    return icmpError(packet, source, IcmpType.PACKET_TOO_BIG, 0, mtu)


def framePacket(packet):
    """
    A packet as it travels in a tunnel's stream: a 2-byte length, then the packet.

    @raise ValueError: the packet is longer than L{MAX_PACKET} (the router answers those with
        L{packetTooBig} instead).
    """
    if len(packet) > MAX_PACKET:
        raise ValueError(f"a packet of {len(packet)} bytes is longer than the tunnel MTU of {MAX_PACKET}")
    return FRAME_HEADER.pack(len(packet)) + packet


class PacketDeframer:
    """Cuts a tunnel's stream back into packets (L{framePacket}), however the bytes arrive."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data):
        """
        @return: the packets completed by C{data}, in order.
        @raise ProtocolError: a frame announces an empty packet.
        """
        self._buffer += data
        packets = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= FRAME_HEADER.size:
            (length,) = FRAME_HEADER.unpack_from(buffer, offset)
            if length == 0:
                raise ProtocolError("an empty packet frame")
            end = offset + FRAME_HEADER.size + length
            if end > len(buffer):
                break
            packets.append(bytes(buffer[offset + FRAME_HEADER.size : end]))
            offset = end
        del buffer[:offset]
        return packets
