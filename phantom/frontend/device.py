"""
The tun device: C{twisted.pair.tuntap.TuntapPort} in TUN mode with an IPv6-only packet protocol,
configured through netlink (pyroute2): link up, MTU, the node's AP-address, a route for
C{fd00::/8}. The device is opened and configured in C{privilegedStartService}, so that
C{twistd --uid/--gid} can drop privileges afterwards.
"""

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


class TunDevice(Service):
    """
    The node's tun device, feeding the router and written by it.

    @param name: the device's name (at most 15 bytes).
    @param router: the L{phantom.frontend.router.PacketRouter}.
    @param configure: C{configure(name, apAddress, mtu)} (L{configureDevice}).
    @param system: the I/O system of C{TuntapPort} (tests pass an in-memory one).
    """

    log = Logger()

    def __init__(self, name, router, reactor, mtu=DEFAULT_MTU, configure=configureDevice, system=None):
        self.name = name
        self._router = router
        self._reactor = reactor
        self.mtu = mtu
        self._configure = configure
        self._system = system
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        self.port = TuntapPort(self.name.encode(), DeviceProtocol(self._router), maxPacketSize=self.mtu + 64, reactor=self._reactor, system=self._system)
        self.port.startListening()
        self._router.writeToDevice = self.port.write
        self._configure(self.name, self._router.ownAddress, self.mtu)
        self.log.info("tun device {name}: {address}/128, fd00::/8 routed through it, MTU {mtu}", name=self.name, address=formatAddress(self._router.ownAddress), mtu=self.mtu)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
