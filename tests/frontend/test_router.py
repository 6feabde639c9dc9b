"""
The frontend's router and device protocol against Twisted's in-memory tun system: packets from
one node's device come out of another's, through packet tunnels; bad packets are counted.
"""

from hypothesis import given, strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.pair.testing import MemoryIOSystem, Tunnel
from twisted.trial.unittest import SynchronousTestCase

from phantom.frontend.device import DEFAULT_MTU, TunDevice, overlappingRoutes
from phantom.frontend.packets import HEADER, ICMPV6, MAX_PACKET, MINIMUM_MTU, framePacket, parsePacket
from phantom.frontend.router import PacketRouter, PacketTunnel
from phantom.tunnel.transport import TunnelAddress

A = b"\xfd" + b"\x0a" * 15
B = b"\xfd" + b"\x0b" * 15
C = b"\xfd" + b"\x0c" * 15


def packet(source, destination, payload=b"ping"):
    return HEADER.pack(6 << 28, len(payload), 17, 64, source, destination) + payload


class Node:
    """A router on an in-memory tun device."""

    def __init__(self, testCase, address, connect, routes=""):
        self.system = MemoryIOSystem()
        self.system.registerSpecialDevice(Tunnel._DEVICE_NAME, Tunnel)
        self.configured = []
        self.router = PacketRouter(address, connect)
        self.device = TunDevice("ph0", self.router, MemoryReactorClock(), configure=lambda *args: self.configured.append(args), system=self.system, routes=lambda: routes)
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
    """One end of an in-memory tunnel: a transport that knows the far end's AP-address."""

    def __init__(self, peer):
        super().__init__(peerAddress=TunnelAddress(peer))


def join(left, leftAddress, right, rightAddress):
    """Connect two packet tunnels back to back and authenticate both ends."""
    left.makeConnection(Wire(rightAddress))
    right.makeConnection(Wire(leftAddress))
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
        self.b = Node(self, B, lambda ap, protocol: fail(AssertionError("B opens nothing")))

        def connect(apAddress, protocol):
            self.opened.append(apAddress)
            if apAddress != B:
                return fail(ConnectionRefusedError("no such AP-address"))
            far = PacketTunnel(self.b.router)
            join(protocol, A, far, B)
            self.pair = ((protocol, far), (far, protocol))
            return succeed(protocol)

        self.a = Node(self, A, connect)

    def test_configured(self):
        """The device is configured with the node's AP-address."""
        self.assertEqual(self.a.configured, [("ph0", A, DEFAULT_MTU)])

    def test_packetsBothWays(self):
        """The first packet opens a tunnel; packets go through it both ways, in order."""
        first, second = packet(A, B, b"one"), packet(A, B, b"two")
        self.a.inject(first, second)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [first, second])
        self.assertEqual(self.opened, [B])
        reply = packet(B, A, b"pong")
        self.b.inject(reply)
        pump(*self.pair)
        self.assertEqual(self.a.written(), [reply])
        self.assertEqual(self.a.router.counts["tunnel out"], 2)
        self.assertEqual(self.b.router.counts["tunnel in"], 2)

    def test_unreachableAnswered(self):
        """A destination no tunnel reaches gets ICMPv6 destination-unreachable, from our address."""
        self.a.inject(packet(A, C))
        [error] = self.a.written()
        self.assertEqual(parsePacket(error), (A, A))
        self.assertEqual(error[40:42], b"\x01\x03")
        outside = packet(A, b"\x20\x01" + bytes(14))
        self.a.inject(outside)
        [error] = self.a.written()
        self.assertEqual(error[40:42], b"\x01\x00")
        self.assertEqual(self.opened, [C])

    def test_icmpErrorsNeverAnswered(self):
        """
        An ICMPv6 error that cannot be delivered gets no error back (RFC 4443 §2.4 e), so two
        routers cannot bounce errors between them; an ICMPv6 echo request still does.
        """
        unreachable = HEADER.pack(6 << 28, 8, ICMPV6, 64, A, C) + b"\x01\x03" + bytes(6)
        echo = HEADER.pack(6 << 28, 8, ICMPV6, 64, A, b"\x20\x01" + bytes(14)) + b"\x80\x00" + bytes(6)
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
        huge = packet(A, B, bytes(0xFFFF))
        self.a.router.fromDevice(huge)
        [error] = self.a.written()
        self.assertEqual(parsePacket(error), (A, A))
        self.assertEqual(error[40:42], b"\x02\x00")
        self.assertEqual(int.from_bytes(error[44:48], "big"), MAX_PACKET)
        self.assertEqual(len(error), MINIMUM_MTU)
        self.assertEqual(self.opened, [])
        fits = packet(A, B, bytes(MAX_PACKET - 40))
        for each in (fits, huge, fits):
            self.a.router.fromDevice(each)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [fits, fits])
        self.assertEqual(len(self.a.written()), 1)
        self.assertEqual(self.a.router.counts["too big"], 2)

    def test_badPacketsCountedAndDropped(self):
        """Non-IPv6, truncated and foreign-source packets are counted and dropped; forwarding goes on."""
        ipv4 = bytes([0x45]) + bytes(27)
        good = packet(A, B)
        self.a.inject(ipv4, good[:30], packet(C, B), good)
        pump(*self.pair)
        self.assertEqual(self.b.written(), [good])
        counts = self.a.router.counts
        self.assertEqual(counts["dropped: malformed from the device"], 2)
        self.assertEqual(counts["dropped: not from this node's AP-address"], 1)

    def test_tunnelCannotSpoof(self):
        """A packet from a tunnel must come from its far end's AP-address and be for us."""
        self.a.inject(packet(A, B))
        pump(*self.pair)
        self.b.written()
        (_, far), _ = self.pair
        for forged in (packet(C, B), packet(A, C)):
            far.dataReceived(framePacket(forged))
        self.assertEqual(self.b.written(), [])
        self.assertEqual(self.b.router.counts["dropped: addresses not the tunnel's ends"], 2)

    def test_queueBoundedWhileOpening(self):
        """While a tunnel opens, a bounded number of packets waits; the rest are dropped and counted."""
        waiting = Deferred()
        router = PacketRouter(A, lambda ap, protocol: waiting, queueLimit=3)
        for _ in range(5):
            router.fromDevice(packet(A, C))
        self.assertEqual(len(router.pending[C]), 3)
        self.assertEqual(router.counts["dropped: queue full while a tunnel opens"], 2)

    def test_failedWritesCounted(self):
        """A device write that fails is counted, not raised."""

        def broken(packet):
            raise OSError("no buffer space")

        self.a.router.writeToDevice = broken
        self.a.router.toDevice(packet(B, A))
        self.assertEqual(self.a.router.counts["dropped: device write failed"], 1)

    def test_badFrameClosesOnlyItsTunnel(self):
        """A tunnel that frames an empty packet is closed; the router goes on with the others."""
        self.a.inject(packet(A, B))
        pump(*self.pair)
        self.b.written()
        (_, far), _ = self.pair
        stray = PacketTunnel(self.b.router)
        join(PacketTunnel(self.a.router), C, stray, C)
        stray.dataReceived(b"\x00\x00")
        self.assertTrue(stray.transport.disconnecting)
        self.assertFalse(far.transport.disconnecting)
        reply = packet(B, A, b"still here")
        self.b.inject(reply)
        pump(*self.pair)
        self.assertEqual(self.a.written(), [reply])


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
        Node(self, A, lambda address, protocol: fail(Exception()), routes=ROUTES)
        [warning] = [line for line in logs.lines if "overlap" in line]
        self.assertIn("fd12:3456::/48 via eth0, fd00::/64 via docker0", warning)
        logs.clear()
        Node(self, B, lambda address, protocol: fail(Exception()))
        self.assertFalse([line for line in logs.lines if "overlap" in line])
