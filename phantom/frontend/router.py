"""
Routing IPv6 packets between the tun device and tunnels, as a router would: by source and
destination AP-address, opening a tunnel on the first packet from an exit AP to a new
destination (over that exit AP's exit path), answering what cannot be
delivered with ICMPv6 destination-unreachable (packet too big when longer than the tunnel MTU; an
ICMPv6 error itself is never answered with another, RFC 4443 §2.4 e), and counting what it drops
and why.
"""

from collections import Counter, OrderedDict

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from phantom.frontend.packets import (
    MAX_PACKET,
    UDP,
    PacketDeframer,
    UnreachableCode,
    destinationUnreachable,
    framePacket,
    isApAddress,
    isIcmpError,
    isPacketTooBig,
    isUnsolicited,
    packetTooBig,
    parsePacket,
    portsOf,
)
from phantom.wire import ProtocolError

QUEUE_LIMIT = 32
"""Packets held for a destination while its tunnel opens; more are dropped."""
FLOW_LIMIT = 256
"""UDP port pairs remembered per tunnel opened from an exit AP; the oldest is forgotten first."""


@implementer(IHandshakeListener)
class PacketTunnel(Protocol):
    """
    IPv6 packets over one tunnel's end-to-end TLS stream, framed by L{framePacket}. It joins
    the router once the far end's AP-address is authenticated.

    @ivar local: this end's AP-address: an exit AP for a tunnel this node opened, its published
        AP-address for one it accepted.
    @ivar peer: the far end's, authenticated.
    @ivar flows: the UDP C{(local port, far port)} pairs this end has sent from, at most
        L{FLOW_LIMIT}: through a tunnel opened from an exit AP, only UDP answering one of them
        comes in.
    """

    def __init__(self, router):
        self._router = router
        self._deframer = PacketDeframer()
        self.local = self.peer = None
        self.flows = OrderedDict()

    def handshakeCompleted(self):
        self.local = self.transport.getHost().apAddress
        self.peer = self.transport.getPeer().apAddress
        self._router.tunnelUp(self)

    def sendPacket(self, packet):
        """Send one packet (valid, from this end to the far end) to the far end."""
        ports = self._portsOf(packet) if packet[6] == UDP else None
        if ports is not None:
            self.flows[ports] = None
            self.flows.move_to_end(ports)
            if len(self.flows) > FLOW_LIMIT:
                self.flows.popitem(last=False)
        self.transport.write(framePacket(packet))

    def _portsOf(self, packet):
        try:
            return portsOf(packet)
        except ProtocolError:
            return None

    def dataReceived(self, data):
        try:
            packets = self._deframer.feed(data)
        except ProtocolError as e:
            self._router.log.warn("closing a packet tunnel: {why}", why=str(e))
            self.transport.loseConnection()
            return
        for packet in packets:
            self._router.fromTunnel(self, packet)

    def connectionLost(self, reason):
        if self.peer is not None:
            self._router.tunnelDown(self)


class PacketRouter:
    """
    The frontend's routing, without the device: packets in from the device go out through
    tunnels, packets in from tunnels go to the device. Tunnels are told apart by both ends'
    AP-addresses: a packet goes only through a tunnel whose near end is its source, and comes in
    only from one whose near end is its destination.

    @param ownAddress: this node's published AP-address: packets from it go only through the
        tunnels others opened to it (replies), never through new ones.
    @param connect: C{connect(source, apAddress, protocol) -> Deferred}: open a tunnel from the
        exit AP C{source} to an AP-address and run C{protocol} over it (fires once the far end
        is authenticated).
    @param exits: the client identities of the node's exit paths
        (L{phantom.tunnel.identities.ExitIdentities}: C{addresses} and C{watch}), the sources
        new tunnels are opened from; none if C{None}.
    @ivar writeToDevice: C{writeToDevice(packet)}, set by the device once it is open; its
        C{OSError}s are counted, not raised.
    @ivar tunnels: C{(local, peer)} AP-addresses to the open L{PacketTunnel}.
    @ivar pending: C{(source, destination)} to the packets waiting while a tunnel opens.
    @ivar counts: packets per event, such as C{"device in"}, C{"tunnel in"}, C{"dropped: ..."}.
    """

    log = Logger()

    def __init__(self, ownAddress, connect, queueLimit=QUEUE_LIMIT, exits=None):
        self.ownAddress = ownAddress
        self._connect = connect
        self.writeToDevice = None
        self._queueLimit = queueLimit
        self._exits = exits
        self.exitAddresses = frozenset()
        """The exit APs packets may come from (and open tunnels from)."""
        if exits is not None:
            exits.watch(self._exitsChanged)
            self._exitsChanged()
        self.tunnels = {}
        self.pending = {}
        self.counts = Counter()

    def _exitsChanged(self):
        self.exitAddresses = frozenset(self._exits.addresses)

    def fromDevice(self, packet):
        """A packet read from the device: send it on towards its destination."""
        try:
            source, destination = parsePacket(packet)
        except ProtocolError:
            self.counts["dropped: malformed from the device"] += 1
            return
        self.counts["device in"] += 1
        if source != self.ownAddress and source not in self.exitAddresses:
            self.counts["dropped: not from this node's AP-addresses"] += 1
            return
        if len(packet) > MAX_PACKET:
            self.counts["too big"] += 1
            self._answer(packet, packetTooBig)
            return
        if not isApAddress(destination) or destination == self.ownAddress or destination in self.exitAddresses:
            self._unreachable(packet, UnreachableCode.NO_ROUTE)
            return
        ends = (source, destination)
        tunnel = self.tunnels.get(ends)
        if tunnel is not None:
            tunnel.sendPacket(packet)
            self.counts["tunnel out"] += 1
            return
        if source == self.ownAddress:
            # Only a reply goes out from the published AP-address, through the tunnel it came in by.
            self.counts["refused: no tunnel opens from the published AP-address"] += 1
            self._unreachable(packet, UnreachableCode.SOURCE_POLICY)
            return
        waiting = self.pending.get(ends)
        if waiting is not None:
            if len(waiting) < self._queueLimit:
                waiting.append(packet)
            else:
                self.counts["dropped: queue full while a tunnel opens"] += 1
            return
        self.pending[ends] = [packet]
        opening = self._connect(source, destination, PacketTunnel(self))
        opening.addErrback(self._notOpened, ends)

    def _notOpened(self, failure, ends):
        self.log.info("no tunnel to a packet's destination: {why}", why=failure.getErrorMessage())
        for packet in self.pending.pop(ends, []):
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

    def tunnelUp(self, tunnel):
        """
        A L{PacketTunnel} is open (either way): packets from its near end to its far end go
        there, held ones first.
        """
        ends = (tunnel.local, tunnel.peer)
        self.tunnels[ends] = tunnel
        for packet in self.pending.pop(ends, []):
            tunnel.sendPacket(packet)
            self.counts["tunnel out"] += 1

    def tunnelDown(self, tunnel):
        """C{tunnel} closed; the next packet between its ends opens another."""
        ends = (tunnel.local, tunnel.peer)
        if self.tunnels.get(ends) is tunnel:
            del self.tunnels[ends]

    def fromTunnel(self, tunnel, packet):
        """
        A packet from the far end of C{tunnel}: write it to the device if it comes from that end
        and is for this one (so a server cannot reach this node's published AP-address through a
        tunnel opened from an exit AP, nor the reverse). Through a tunnel opened from an exit AP
        only answers come in: no new TCP connection, echo request, or UDP but to a port pair
        this end has sent from; else a server could find the services of the node's published
        AP-address at its exit AP too. No packet-too-big comes in through any tunnel.
        """
        try:
            source, destination = parsePacket(packet)
            unsolicited = destination != self.ownAddress and (
                isUnsolicited(packet) or (packet[6] == UDP and tuple(reversed(portsOf(packet))) not in tunnel.flows)
            )
        except ProtocolError:
            self.counts["dropped: malformed from a tunnel"] += 1
            return
        if source != tunnel.peer or destination != tunnel.local:
            self.counts["dropped: addresses not the tunnel's ends"] += 1
            return
        if unsolicited:
            self.counts["dropped: unsolicited to an exit AP"] += 1
            return
        if isPacketTooBig(packet):
            # The kernel keeps a path MTU by destination alone, whichever of this node's
            # addresses sends: one set through a tunnel to an exit AP would show in what the
            # published AP-address sends the same server, and the reverse. A tunnel has no path
            # MTU below the device's anyway.
            self.counts["dropped: packet too big from a tunnel"] += 1
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
