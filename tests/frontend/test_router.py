"""
The frontend's router and device protocol against Twisted's in-memory tun system: packets from
one node's device come out of another's, through packet tunnels; bad packets are counted.
"""

import struct

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.pair.testing import MemoryIOSystem, Tunnel
from twisted.trial.unittest import SynchronousTestCase

from phantom.frontend.device import DEFAULT_MTU, TunDevice, overlappingRoutes
from phantom.frontend.packets import HEADER, ICMPV6, UDP, MAX_PACKET, MINIMUM_MTU, framePacket, parsePacket
from phantom.frontend.router import FLOW_LIMIT, PacketRouter, PacketTunnel
from phantom.tunnel.transport import TunnelAddress
from tests.link.helpers import LogCollector

A = b"\xfd" + b"\x0a" * 15
B = b"\xfd" + b"\x0b" * 15
C = b"\xfd" + b"\x0c" * 15
EA = b"\xfd" + b"\xea" * 15
"""A's exit AP: its programs connect out from it."""
EB = b"\xfd" + b"\xeb" * 15


def packet(source, destination, payload=b"ping", ports=(1000, 2000)):
    """A UDP datagram from C{source} to C{destination} between C{ports}."""
    datagram = struct.pack("!HHHH", *ports, 8 + len(payload), 0) + payload
    return HEADER.pack(6 << 28, len(datagram), UDP, 64, source, destination) + datagram


def reply(source, destination, payload=b"pong"):
    """A UDP datagram answering one L{packet} sent."""
    return packet(source, destination, payload, ports=(2000, 1000))


class FakeExits:
    """The exit APs of a node's exit paths, as the router and device see them."""

    def __init__(self, addresses):
        self.addresses = list(addresses)
        self._watchers = []

    def watch(self, f):
        self._watchers.append(f)

    def change(self, addresses):
        self.addresses = list(addresses)
        for f in self._watchers:
            f()


class Node:
    """A router on an in-memory tun device, with its published AP-address and exit APs."""

    def __init__(self, testCase, address, connect, exits=(), readdress=None, routes=""):
        self.system = MemoryIOSystem()
        self.system.registerSpecialDevice(Tunnel._DEVICE_NAME, Tunnel)
        self.configured = []
        self.readdressed = []
        self.exits = FakeExits(exits)
        self.router = PacketRouter(address, connect, exits=self.exits)
        self.device = TunDevice(
            "ph0", self.router, MemoryReactorClock(), configure=lambda *args: self.configured.append(args), system=self.system,
            exits=self.exits, readdress=readdress or (lambda *args: self.readdressed.append(args)), routes=lambda: routes,
        )
        self.device.privilegedStartService()
        self.device.startService()
        testCase.addCleanup(self.device.stopService)
        self.tun = self.system.getTunnel(self.device.port)

    def inject(self, *packets):
        """Packets written into the device by a program: the node reads them."""
        self.tun.readBuffer.extend(packets)
        self.device.port.doRead()

    def written(self):
        """Packets the node wrote to the device."""
        out = list(self.tun.writeBuffer)
        self.tun.writeBuffer.clear()
        return out


class Wire(StringTransport):
    """One end of an in-memory tunnel: a transport that knows both ends' AP-addresses."""

    def __init__(self, local, peer):
        super().__init__(hostAddress=TunnelAddress(local), peerAddress=TunnelAddress(peer))


def join(left, leftAddress, right, rightAddress):
    """Connect two packet tunnels back to back and authenticate both ends."""
    left.makeConnection(Wire(leftAddress, rightAddress))
    right.makeConnection(Wire(rightAddress, leftAddress))
    left.handshakeCompleted()
    right.handshakeCompleted()


def pump(*tunnels):
    """Deliver what each tunnel wrote to its partner, until nothing moves."""
    moved = True
    while moved:
        moved = False
        for tunnel, partner in tunnels:
            data = tunnel.transport.value()
            if data:
                tunnel.transport.clear()
                partner.dataReceived(data)
                moved = True


class RouterTests(SynchronousTestCase):
    def setUp(self):
        self.opened = []
        self.b = Node(self, B, lambda source, ap, protocol: fail(AssertionError("B opens nothing")), exits=[EB])

        def connect(source, apAddress, protocol):
            self.opened.append(apAddress)
            if apAddress != B:
                return fail(ConnectionRefusedError("no such AP-address"))
            far = PacketTunnel(self.b.router)
            join(protocol, source, far, B)
            self.pair = ((protocol, far), (far, protocol))
            return succeed(protocol)

        self.a = Node(self, A, connect, exits=[EA])

    def test_configured(self):
        """
        The device is configured with the node's published AP-address, and carries its exit AP,
        the source the fd00::/8 route prefers.
        """
        self.assertEqual(self.a.configured, [("ph0", A, DEFAULT_MTU)])
        self.assertEqual(self.a.readdressed, [("ph0", [EA], [], EA)])
        self.assertEqual(self.a.device.exitAddresses, [EA])

    def test_packetsBothWays(self):
        """The first packet opens a tunnel; packets go through it both ways, in order."""
        first, second = packet(EA, B, b"one"), packet(EA, B, b"two")
        self.a.inject(first, second)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [first, second])
        self.assertEqual(self.opened, [B])
        answer = reply(B, EA)
        self.b.inject(answer)
        pump(*self.pair)
        self.assertEqual(self.a.written(), [answer])
        self.assertEqual(self.a.router.counts["tunnel out"], 2)
        self.assertEqual(self.b.router.counts["tunnel in"], 2)

    def test_unreachableAnswered(self):
        """A destination no tunnel reaches gets ICMPv6 destination-unreachable, from our address."""
        self.a.inject(packet(EA, C))
        [error] = self.a.written()
        self.assertEqual(parsePacket(error), (A, EA))
        self.assertEqual(error[40:42], b"\x01\x03")
        outside = packet(EA, b"\x20\x01" + bytes(14))
        self.a.inject(outside)
        [error] = self.a.written()
        self.assertEqual(error[40:42], b"\x01\x00")
        self.assertEqual(self.opened, [C])

    def test_icmpErrorsNeverAnswered(self):
        """
        An ICMPv6 error that cannot be delivered gets no error back (RFC 4443 §2.4 e), so two
        routers cannot bounce errors between them; an ICMPv6 echo request still does.
        """
        unreachable = HEADER.pack(6 << 28, 8, ICMPV6, 64, EA, C) + b"\x01\x03" + bytes(6)
        echo = HEADER.pack(6 << 28, 8, ICMPV6, 64, EA, b"\x20\x01" + bytes(14)) + b"\x80\x00" + bytes(6)
        self.a.inject(unreachable, echo)
        [error] = self.a.written()
        self.assertEqual(error[40:42], b"\x01\x00")
        self.assertEqual(self.a.router.counts["ICMPv6 errors not answered"], 1)

    def test_tooBigAnswered(self):
        """
        A packet longer than the tunnel MTU gets ICMPv6 packet-too-big with that MTU, whether its
        tunnel is open or not; packets that fit still go through. (The device's MTU keeps such
        packets from it: the router is given them directly.)
        """
        self.a.tun.SEND_BUFFER_SIZE = self.b.tun.SEND_BUFFER_SIZE = 2 * MAX_PACKET
        huge = packet(EA, B, bytes(0xFFFF - 8))
        self.a.router.fromDevice(huge)
        [error] = self.a.written()
        self.assertEqual(parsePacket(error), (A, EA))
        self.assertEqual(error[40:42], b"\x02\x00")
        self.assertEqual(int.from_bytes(error[44:48], "big"), MAX_PACKET)
        self.assertEqual(len(error), MINIMUM_MTU)
        self.assertEqual(self.opened, [])
        fits = packet(EA, B, bytes(MAX_PACKET - 48))
        for each in (fits, huge, fits):
            self.a.router.fromDevice(each)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [fits, fits])
        self.assertEqual(len(self.a.written()), 1)
        self.assertEqual(self.a.router.counts["too big"], 2)

    def test_badPacketsCountedAndDropped(self):
        """Non-IPv6, truncated and foreign-source packets are counted and dropped; forwarding goes on."""
        ipv4 = bytes([0x45]) + bytes(27)
        good = packet(EA, B)
        self.a.inject(ipv4, good[:30], packet(C, B), good)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [good])
        counts = self.a.router.counts
        self.assertEqual(counts["dropped: malformed from the device"], 2)
        self.assertEqual(counts["dropped: not from this node's AP-addresses"], 1)

    def test_tunnelCannotSpoof(self):
        """
        A packet from a tunnel must come from its far end's AP-address and be for this end's:
        so a server cannot reach its client's published AP-address through a tunnel the client
        opened from its exit AP.
        """
        self.a.inject(packet(EA, B))
        pump(*self.pair)
        self.b.written()
        (near, far), _ = self.pair
        for forged in (packet(C, B), packet(EA, C), packet(A, B)):
            far.dataReceived(framePacket(forged))
        self.assertEqual(self.b.written(), [])
        self.assertEqual(self.b.router.counts["dropped: addresses not the tunnel's ends"], 3)
        near.dataReceived(framePacket(packet(B, A)))
        self.assertEqual(self.a.written(), [])
        self.assertEqual(self.a.router.counts["dropped: addresses not the tunnel's ends"], 1)

    def test_queueBoundedWhileOpening(self):
        """While a tunnel opens, a bounded number of packets waits; the rest are dropped and counted."""
        waiting = Deferred()
        router = PacketRouter(A, lambda source, ap, protocol: waiting, queueLimit=3, exits=FakeExits([EA]))
        for _ in range(5):
            router.fromDevice(packet(EA, C))
        self.assertEqual(len(router.pending[EA, C]), 3)
        self.assertEqual(router.counts["dropped: queue full while a tunnel opens"], 2)

    def test_failedWritesCounted(self):
        """A device write that fails is counted, not raised."""

        def broken(packet):
            raise OSError("no buffer space")

        self.a.router.writeToDevice = broken
        self.a.router.toDevice(packet(B, EA))
        self.assertEqual(self.a.router.counts["dropped: device write failed"], 1)

    def test_badFrameClosesOnlyItsTunnel(self):
        """A tunnel that frames an empty packet is closed; the router goes on with the others."""
        self.a.inject(packet(EA, B))
        pump(*self.pair)
        self.b.written()
        (_, far), _ = self.pair
        stray = PacketTunnel(self.b.router)
        join(PacketTunnel(self.a.router), EA, stray, C)
        stray.dataReceived(b"\x00\x00")
        self.assertTrue(stray.transport.disconnecting)
        self.assertFalse(far.transport.disconnecting)
        answer = reply(B, EA, b"still here")
        self.b.inject(answer)
        pump(*self.pair)
        self.assertEqual(self.a.written(), [answer])


class IdentityRoutingTests(SynchronousTestCase):
    """Packets go through tunnels by both ends: exit APs out, the published AP-address only back."""

    def setUp(self):
        self.opened = []

        def connect(source, apAddress, protocol):
            self.opened.append((source, apAddress))
            return Deferred()

        self.a = Node(self, A, connect, exits=[EA])
        self.b = Node(self, B, lambda source, ap, protocol: fail(AssertionError("B opens nothing")), exits=[EB])

    def test_publishedAddressOpensNoTunnel(self):
        """
        A packet from the published AP-address with no tunnel it came in by opens none: it is
        answered with ICMPv6 destination-unreachable, code 5 (source address failed policy).
        """
        self.a.inject(packet(A, B))
        [error] = self.a.written()
        self.assertEqual(parsePacket(error), (A, A))
        self.assertEqual(error[40:42], b"\x01\x05")
        self.assertEqual(self.opened, [])
        self.assertEqual(self.a.router.counts["refused: no tunnel opens from the published AP-address"], 1)
        self.a.inject(packet(EA, B))
        self.assertEqual(self.opened, [(EA, B)])

    def test_repliesFromThePublishedAddress(self):
        """
        A tunnel B opened from its exit AP to A's published AP-address carries B's packets to A,
        and A's replies from its published AP-address back; not a packet A sends from its exit AP.
        """
        outer, inner = PacketTunnel(self.b.router), PacketTunnel(self.a.router)
        join(outer, EB, inner, A)
        pair = ((outer, inner), (inner, outer))
        request = packet(EB, A, b"syn")
        self.b.inject(request)
        pump(*pair)
        self.assertEqual(self.a.written(), [request])
        answer = reply(A, EB, b"syn-ack")
        self.a.inject(answer)
        pump(*pair)
        self.assertEqual(self.b.written(), [answer])
        self.a.inject(packet(EA, EB, b"linked?"))
        pump(*pair)
        self.assertEqual(self.b.written(), [])
        self.assertEqual(self.opened, [(EA, EB)])

    def test_exitAddressesFollowTheExitPaths(self):
        """
        A new exit AP is carried and preferred as soon as its path exists; the old one stays
        until it is no longer in use, and packets from it are dropped after that.
        """
        self.a.exits.change([C, EA])
        self.assertEqual(self.a.readdressed[-1], ("ph0", [C], [], C))
        self.a.inject(packet(C, B))
        self.assertEqual(self.opened[-1], (C, B))
        self.a.exits.change([C])
        self.assertEqual(self.a.readdressed[-1], ("ph0", [], [EA], C))
        self.assertEqual(self.a.device.exitAddresses, [C])
        self.a.inject(packet(EA, B))
        self.assertEqual(self.a.router.counts["dropped: not from this node's AP-addresses"], 1)
        self.assertEqual(len(self.opened), 1)

    def test_readdressingFailureLogged(self):
        """A device that cannot be readdressed (no CAP_NET_ADMIN) keeps its addresses, and says why."""

        def refuse(*args):
            raise OSError(1, "Operation not permitted")

        logged = LogCollector(self, "phantom.frontend")
        node = Node(self, A, lambda source, ap, protocol: Deferred(), exits=[EA], readdress=refuse)
        self.assertEqual(node.device.exitAddresses, [])
        node.exits.change([C])
        self.assertEqual(node.device.exitAddresses, [])
        self.assertTrue(any("Operation not permitted" in line for line in logged.lines), logged.lines)


ANY_ADDRESS = st.sampled_from([A, B, C, EA, EB]) | st.binary(min_size=16, max_size=16)


class IdentityProperties(SynchronousTestCase):
    @given(st.lists(st.tuples(st.booleans(), ANY_ADDRESS, ANY_ADDRESS), max_size=30))
    def test_publishedAddressNeverLeavesThroughAnOpenedTunnel(self, events):
        """
        Whatever packets come from the device or from the tunnel A opened from its exit AP
        to B: A opens tunnels only from its exit AP, never sends its published AP-address
        through the tunnel it opened, and writes to its device only what that tunnel's far end
        sent to that tunnel's near end.
        """
        sent = []
        router = PacketRouter(A, lambda source, ap, protocol: sent.append(source) or Deferred(), exits=FakeExits([EA]))
        written = []
        router.writeToDevice = written.append
        opened = PacketTunnel(router)
        opened.makeConnection(Wire(EA, B))
        opened.handshakeCompleted()
        for fromDevice, source, destination in events:
            before = len(opened.transport.value())
            if fromDevice:
                router.fromDevice(packet(source, destination))
                if len(opened.transport.value()) > before:
                    self.assertEqual((source, destination), (EA, B))
            else:
                count = len(written)
                opened.dataReceived(framePacket(packet(source, destination)))
                if len(written) > count:
                    self.assertEqual(parsePacket(written[-1]), (B, EA))
        self.assertTrue(all(source == EA for source in sent))


def tcp(source, destination, flags, ports=(2000, 1000)):
    """A TCP segment with C{flags} (no options, no payload)."""
    segment = struct.pack("!HHIIBBHHH", *ports, 0, 0, 5 << 4, flags, 65535, 0, 0)
    return HEADER.pack(6 << 28, len(segment), 6, 64, source, destination) + segment


def icmp(source, destination, icmpType):
    message = struct.pack("!BBHHH", icmpType, 0, 0, 1, 1)
    return HEADER.pack(6 << 28, len(message), ICMPV6, 64, source, destination) + message


class AnswersOnlyTests(SynchronousTestCase):
    """
    Through a tunnel opened from an exit AP only answers come in, so a server cannot find the
    services of its client's published AP-address at the client's exit AP.
    """

    def setUp(self):
        self.a = Node(self, A, lambda source, ap, protocol: Deferred(), exits=[EA])
        self.opened = PacketTunnel(self.a.router)
        self.opened.makeConnection(Wire(EA, B))
        self.opened.handshakeCompleted()
        self.accepted = PacketTunnel(self.a.router)
        self.accepted.makeConnection(Wire(A, EB))
        self.accepted.handshakeCompleted()

    def arrive(self, tunnel, *packets):
        for each in packets:
            tunnel.dataReceived(framePacket(each))
        return self.a.written()

    def test_onlyAnswersToTheExitAp(self):
        """
        To the exit AP: a TCP SYN, an echo request, UDP to ports it has not sent from, and a next
        header the router does not follow are dropped; SYN-ACK, other segments, echo replies,
        ICMPv6 errors and UDP answers come in.
        """
        unsolicited = [
            tcp(B, EA, 0x02),
            icmp(B, EA, 128),
            packet(B, EA, ports=(53, 53)),
            reply(B, EA),
            HEADER.pack(6 << 28, 8, 0, 64, B, EA) + bytes(8),
        ]
        self.assertEqual(self.arrive(self.opened, *unsolicited), [])
        self.assertEqual(self.a.router.counts["dropped: unsolicited to an exit AP"], 5)
        self.a.inject(packet(EA, B))
        answers = [tcp(B, EA, 0x12), tcp(B, EA, 0x10), tcp(B, EA, 0x04), icmp(B, EA, 129), icmp(B, EA, 1), reply(B, EA)]
        self.assertEqual(self.arrive(self.opened, *answers), answers)

    def test_everythingToThePublishedAddress(self):
        """To the published AP-address (its hidden service) anything comes in that tunnel's far end sends."""
        new = [tcp(EB, A, 0x02), icmp(EB, A, 128), packet(EB, A, ports=(53, 53))]
        self.assertEqual(self.arrive(self.accepted, *new), new)

    def test_noPacketTooBigFromTunnels(self):
        """
        An ICMPv6 packet-too-big through a tunnel, to the exit AP or to the published
        AP-address, is dropped: the kernel keeps the path MTU it sets by destination alone, so a
        server could set one through a tunnel from the exit AP and see it used by the published
        AP-address (or the reverse), linking the two. A tunnel has no path MTU below the device's.
        """
        self.a.inject(packet(EA, B))
        tooBig = [icmp(B, EA, 2), icmp(EB, A, 2)]
        self.assertEqual(self.arrive(self.opened, tooBig[0]) + self.arrive(self.accepted, tooBig[1]), [])
        self.assertEqual(self.a.router.counts["dropped: packet too big from a tunnel"], 2)
        self.assertEqual(self.arrive(self.opened, icmp(B, EA, 1)), [icmp(B, EA, 1)])

    def test_cutShortHeaders(self):
        """A TCP, UDP or ICMPv6 header cut short is counted as malformed and dropped; the tunnel goes on."""
        for nextHeader in (6, 17, 58):
            self.arrive(self.opened, HEADER.pack(6 << 28, 0, nextHeader, 64, B, EA))
        self.assertEqual(self.a.router.counts["dropped: malformed from a tunnel"], 3)
        self.assertFalse(self.opened.transport.disconnecting)
        self.assertEqual(self.arrive(self.opened, icmp(B, EA, 129)), [icmp(B, EA, 129)])

    def test_flowsBounded(self):
        """A tunnel remembers at most FLOW_LIMIT UDP port pairs, forgetting the oldest first."""
        for port in range(FLOW_LIMIT + 1):
            self.opened.sendPacket(packet(EA, B, ports=(port, 7)))
        self.assertEqual(len(self.opened.flows), FLOW_LIMIT)
        self.assertNotIn((0, 7), self.opened.flows)
        self.assertEqual(self.arrive(self.opened, packet(B, EA, ports=(7, 0))), [])
        self.assertEqual(len(self.arrive(self.opened, packet(B, EA, ports=(7, FLOW_LIMIT)))), 1)


ROUTES = """\
fd000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001      ph0
fd123456000000000000000000000000 30 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001  docker0
fc000000000000000000000000000000 07 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     wg0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
fd0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
garbage line
"""


class OverlapTests(SynchronousTestCase):
    def test_overlappingRoutes(self):
        """Routes into fd00::/8 on other devices overlap; the device's own, wider prefixes, the default route and local ones do not."""
        self.assertEqual(overlappingRoutes(ROUTES, "ph0"), [("fd12:3456::/48", "eth0"), ("fd00::/64", "docker0")])
        self.assertEqual(overlappingRoutes("", "ph0"), [])

    @given(st.lists(st.lists(st.one_of(st.text(max_size=34), st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.from_regex(r"[0-9a-f]{2}", fullmatch=True)), max_size=11), max_size=8))
    def test_anyTableParses(self, rows):
        """Any text gives a list of overlapping routes (malformed lines skipped), nothing else."""
        table = "\n".join(" ".join(field.replace("\n", " ") for field in row) for row in rows)
        for network, device in overlappingRoutes(table, "ph0"):
            self.assertTrue(network.startswith("fd"))

    def test_warnedAtStart(self):
        """A device started on a host with such routes says so once, naming them."""
        from tests.link.helpers import LogCollector

        logs = LogCollector(self, "phantom.frontend")
        Node(self, A, lambda source, address, protocol: fail(Exception()), routes=ROUTES)
        [warning] = [line for line in logs.lines if "overlap" in line]
        self.assertIn("fd12:3456::/48 via eth0, fd00::/64 via docker0", warning)
        logs.clear()
        Node(self, B, lambda source, address, protocol: fail(Exception()))
        self.assertFalse([line for line in logs.lines if "overlap" in line])
