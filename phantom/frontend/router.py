"""
Routing IPv6 packets between the tun device and tunnels, as a router would: by destination
AP-address, opening a tunnel on the first packet to a new destination, answering what cannot be
delivered with ICMPv6 destination-unreachable (packet too big when longer than the tunnel MTU; an
ICMPv6 error itself is never answered with another, RFC 4443 §2.4 e), and counting what it drops
and why.
"""

from collections import Counter

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from phantom.frontend.packets import MAX_PACKET, PacketDeframer, UnreachableCode, destinationUnreachable, framePacket, isApAddress, isIcmpError, packetTooBig, parsePacket
from phantom.wire import ProtocolError

QUEUE_LIMIT = 32
"""Packets held for a destination while its tunnel opens; more are dropped."""


@implementer(IHandshakeListener)
class PacketTunnel(Protocol):
    """
    IPv6 packets over one tunnel's end-to-end TLS stream, framed by L{framePacket}. It joins
    the router once the far end's AP-address is authenticated.
    """

    def __init__(self, router):
        self._router = router
        self._deframer = PacketDeframer()
        self.peer = None

    def handshakeCompleted(self):
        self.peer = self.transport.getPeer().apAddress
        self._router.tunnelUp(self.peer, self)

    def sendPacket(self, packet):
        """Send one packet to the far end."""
        self.transport.write(framePacket(packet))

    def dataReceived(self, data):
        try:
            packets = self._deframer.feed(data)
        except ProtocolError as e:
            self._router.log.warn("closing a packet tunnel: {why}", why=str(e))
            self.transport.loseConnection()
            return
        for packet in packets:
            self._router.fromTunnel(self.peer, packet)

    def connectionLost(self, reason):
        if self.peer is not None:
            self._router.tunnelDown(self.peer, self)


class PacketRouter:
    """
    The frontend's routing, without the device: packets in from the device go out through
    tunnels, packets in from tunnels go to the device.

    @param ownAddress: this node's AP-address; the only source it sends from, the only
        destination it accepts.
    @param connect: C{connect(apAddress, protocol) -> Deferred}: open a tunnel to an AP-address
        and run C{protocol} over it (fires once the far end is authenticated).
    @ivar writeToDevice: C{writeToDevice(packet)}, set by the device once it is open; its
        C{OSError}s are counted, not raised.
    @ivar counts: packets per event, such as C{"device in"}, C{"tunnel in"}, C{"dropped: ..."}.
    """

    log = Logger()

    def __init__(self, ownAddress, connect, queueLimit=QUEUE_LIMIT):
        self.ownAddress = ownAddress
        self._connect = connect
        self.writeToDevice = None
        self._queueLimit = queueLimit
        self.tunnels = {}
        self.pending = {}
        self.counts = Counter()

    def fromDevice(self, packet):
        """A packet read from the device: send it on towards its destination."""
        try:
            source, destination = parsePacket(packet)
        except ProtocolError:
            self.counts["dropped: malformed from the device"] += 1
            return
        self.counts["device in"] += 1
        if source != self.ownAddress:
            self.counts["dropped: not from this node's AP-address"] += 1
            return
        if len(packet) > MAX_PACKET:
            self.counts["too big"] += 1
            self._answer(packet, packetTooBig)
            return
        if not isApAddress(destination) or destination == self.ownAddress:
            self._unreachable(packet, UnreachableCode.NO_ROUTE)
            return
        tunnel = self.tunnels.get(destination)
        if tunnel is not None:
            tunnel.sendPacket(packet)
            self.counts["tunnel out"] += 1
            return
        waiting = self.pending.get(destination)
        if waiting is not None:
            if len(waiting) < self._queueLimit:
                waiting.append(packet)
            else:
                self.counts["dropped: queue full while a tunnel opens"] += 1
            return
        self.pending[destination] = [packet]
        opening = self._connect(destination, PacketTunnel(self))
        opening.addErrback(self._notOpened, destination)

    def _notOpened(self, failure, destination):
        self.log.info("no tunnel to a packet's destination: {why}", why=failure.getErrorMessage())
        for packet in self.pending.pop(destination, []):
            self._unreachable(packet, UnreachableCode.ADDRESS_UNREACHABLE)

    def _unreachable(self, packet, code):
        self.counts["unreachable"] += 1
        self._answer(packet, lambda packet, source: destinationUnreachable(packet, source, code))

    def _answer(self, packet, error):
        """Send C{error(packet, source)} back to the device, unless C{packet} is an ICMPv6 error itself."""
        if isIcmpError(packet):
            self.counts["ICMPv6 errors not answered"] += 1
            return
        self.toDevice(error(packet, self.ownAddress))

    def tunnelUp(self, peer, tunnel):
        """A tunnel to C{peer} is open (either way): packets to it go there, held ones first."""
        self.tunnels[peer] = tunnel
        for packet in self.pending.pop(peer, []):
            tunnel.sendPacket(packet)
            self.counts["tunnel out"] += 1

    def tunnelDown(self, peer, tunnel):
        """The tunnel to C{peer} closed; the next packet to it opens another."""
        if self.tunnels.get(peer) is tunnel:
            del self.tunnels[peer]

    def fromTunnel(self, peer, packet):
        """A packet from the far end C{peer} of a tunnel: write it to the device if it is for us."""
        try:
            source, destination = parsePacket(packet)
        except ProtocolError:
            self.counts["dropped: malformed from a tunnel"] += 1
            return
        if source != peer or destination != self.ownAddress:
            self.counts["dropped: addresses not the tunnel's ends"] += 1
            return
        self.counts["tunnel in"] += 1
        self.toDevice(packet)

    def toDevice(self, packet):
        """Write a packet to the device; a failed write is counted and dropped."""
        if self.writeToDevice is None:
            self.counts["dropped: no device"] += 1
            return
        try:
            self.writeToDevice(packet)
        except OSError:
            self.counts["dropped: device write failed"] += 1
            return
        self.counts["device out"] += 1
