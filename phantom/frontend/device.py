"""
The tun device: C{twisted.pair.tuntap.TuntapPort} in TUN mode with an IPv6-only packet protocol,
configured through netlink (pyroute2): link up, MTU, the node's AP-address, a route for
C{fd00::/8}. The device is opened and configured in C{privilegedStartService}, so that
C{twistd --uid/--gid} can drop privileges afterwards; but the exit APs it carries change with
the exit paths, which needs C{CAP_NET_ADMIN} while the node runs.
"""

import errno
import ipaddress
import os
import socket

from twisted.application.service import Service
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.logger import Logger
from twisted.pair.raw import IRawPacketProtocol
from twisted.pair.tuntap import TuntapPort
from zope.interface import implementer

from phantom.address import formatAddress

DEFAULT_MTU = 65000
"""
The device's MTU. Tunnels are byte streams, so no link below bounds it: large packets mean few
of them, and the per-packet cost (a read, a TLS record, a frame) is what limits throughput.
Measured with bench tun: TCP between two AP-addresses moved 0.27 times the raw tunnel's
throughput at MTU 1400 and 0.52 times at 65000.
"""
IFA_F_NODAD = 0x02


CAP_NET_ADMIN = 12


def _hasNetAdmin():
    """Whether this process holds CAP_NET_ADMIN (on Linux, from /proc; elsewhere: is it root)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def whyNoTunDevice():
    """@return: why this process cannot create a tun device, or C{None} if it can."""
    if not _hasNetAdmin():
        return "needs root (CAP_NET_ADMIN) to create a tun device"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun on this machine"
    return None


@implementer(IRawPacketProtocol)
class DeviceProtocol(AbstractDatagramProtocol):
    """Hands every packet read from the device to the router."""

    def __init__(self, router):
        self._router = router

    def datagramReceived(self, datagram, partial=0, dest=None, source=None, protocol=None):
        # TuntapPort calls this with (datagram, partial) only; the interface names more.
        self._router.fromDevice(datagram)

    def addProto(self, num, proto):
        raise NotImplementedError("the device carries IPv6 only")


def configureDevice(name, apAddress, mtu):
    """
    Bring the device up with C{mtu}, give it C{apAddress}/128 (no duplicate detection: the
    address is this node's by its key) and route C{fd00::/8} through it, over netlink.
    """
    from pyroute2 import IPRoute

    with IPRoute() as ip:
        [index] = ip.link_lookup(ifname=name)
        ip.link("set", index=index, state="up", mtu=mtu)
        ip.addr("add", index=index, address=formatAddress(apAddress), prefixlen=128, flags=IFA_F_NODAD, family=socket.AF_INET6)
        ip.route("add", dst="fd00::", dst_len=8, oif=index, family=socket.AF_INET6)


def readdressDevice(name, add, remove, preferred):
    """
    Add the exit APs C{add} to the device (as /128, no duplicate detection), make C{preferred}
    the source the C{fd00::/8} route prefers, then remove the exit APs C{remove}; an address
    already there or already gone is no error.

    @raise OSError: netlink refused (no C{CAP_NET_ADMIN}, say).
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ip:
            [index] = ip.link_lookup(ifname=name)
            for address in add:
                ip.addr("replace", index=index, address=formatAddress(address), prefixlen=128, flags=IFA_F_NODAD, family=socket.AF_INET6)
            ip.route("replace", dst="fd00::", dst_len=8, oif=index, prefsrc=formatAddress(preferred), family=socket.AF_INET6)
            for address in remove:
                try:
                    ip.addr("del", index=index, address=formatAddress(address), prefixlen=128, family=socket.AF_INET6)
                except NetlinkError as e:
                    if e.code != errno.EADDRNOTAVAIL:
                        raise
    except NetlinkError as e:
        raise OSError(e.code, f"netlink: {e}") from e


ROUTE_TABLE = "/proc/net/ipv6_route"
AP_NETWORK = ipaddress.IPv6Network("fd00::/8")


def overlappingRoutes(table, device):
    """
    The routes of the host's IPv6 routing table that take part of C{fd00::/8} away from
    C{device}: routes into it (a longer prefix wins) on any other device.

    @param table: the text of C{/proc/net/ipv6_route}.
    @param device: the name of this node's tun device.
    @return: C{(network, device)} pairs, the network as text (C{fd12:3456::/48}).
    """
    found = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) != 10:
            continue
        try:
            network = ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16)))
        except ValueError:
            continue
        if fields[9] in (device, "lo") or network.prefixlen < AP_NETWORK.prefixlen or not network.subnet_of(AP_NETWORK):
            continue
        if (str(network), fields[9]) not in found:
            found.append((str(network), fields[9]))
    return found


def readRouteTable():
    """@return: the text of the host's IPv6 routing table (C{/proc/net/ipv6_route}), empty if there is none."""
    try:
        with open(ROUTE_TABLE, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


class TunDevice(Service):
    """
    The node's tun device, feeding the router and written by it.

    @param name: the device's name (at most 15 bytes).
    @param router: the L{phantom.frontend.router.PacketRouter}.
    @param configure: C{configure(name, apAddress, mtu)} (L{configureDevice}).
    @param system: the I/O system of C{TuntapPort} (tests pass an in-memory one).
    @param exits: the client identities of the node's exit paths
        (L{phantom.tunnel.identities.ExitIdentities}: C{addresses}, the preferred first, and
        C{watch}): the device carries their exit APs beside the published AP-address, and the
        route prefers the first as source, so programs connect out from it.
    @param readdress: C{readdress(name, add, remove, preferred)} (L{readdressDevice}).
    @ivar exitAddresses: the exit APs on the device, the preferred source first.
    @param routes: C{routes() -> str}, the host's IPv6 routing table as C{/proc/net/ipv6_route}
        gives it (L{readRouteTable}), looked at for routes that overlap C{fd00::/8}.
    """

    log = Logger()

    def __init__(self, name, router, reactor, mtu=DEFAULT_MTU, configure=configureDevice, system=None, exits=None, readdress=readdressDevice, routes=readRouteTable):
        self.name = name
        self._router = router
        self._reactor = reactor
        self.mtu = mtu
        self._configure = configure
        self._system = system
        self._exits = exits
        self._readdress = readdress
        self.exitAddresses = []
        self._routes = routes
        self.port = None
        if exits is not None:
            exits.watch(self._exitsChanged)

    def privilegedStartService(self):
        super().privilegedStartService()
        self.port = TuntapPort(self.name.encode(), DeviceProtocol(self._router), maxPacketSize=self.mtu + 64, reactor=self._reactor, system=self._system)
        self.port.startListening()
        self._router.writeToDevice = self.port.write
        self._configure(self.name, self._router.ownAddress, self.mtu)
        self.log.info("tun device {name}: {address}/128, fd00::/8 routed through it, MTU {mtu}", name=self.name, address=formatAddress(self._router.ownAddress), mtu=self.mtu)
        self.warnOverlaps(self._routes())
        self._exitsChanged()

    def _exitsChanged(self):
        """Carry the exit APs in use, and prefer the current one as source."""
        if self.port is None or self._exits is None:
            return
        wanted = list(self._exits.addresses)
        if wanted == self.exitAddresses:
            return
        add = [address for address in wanted if address not in self.exitAddresses]
        remove = [address for address in self.exitAddresses if address not in wanted]
        try:
            self._readdress(self.name, add, remove, wanted[0])
        except OSError as e:
            self.log.warn("tun device {name}: cannot change its exit AP-addresses: {why}", name=self.name, why=e.strerror or str(e))
            return
        before, self.exitAddresses = self.exitAddresses, wanted
        if before[:1] != wanted[:1]:
            self.log.info("tun device {name}: connects out from exit AP {address}", name=self.name, address=formatAddress(wanted[0]))

    def warnOverlaps(self, table):
        """Warn when a route of the host takes part of fd00::/8 (which this device carries) elsewhere."""
        overlaps = overlappingRoutes(table, self.name)
        if overlaps:
            self.log.warn(
                "routes on this host overlap fd00::/8, which {name} carries: {routes}; AP-addresses in them go there, "
                "not through Phantom (the longer prefix wins); see docs/running.md",
                name=self.name,
                routes=", ".join(f"{network} via {device}" for network, device in overlaps),
            )

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
