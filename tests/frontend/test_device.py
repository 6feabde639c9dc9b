"""The tun device for real: netlink configuration, and packets the kernel routes into it."""

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from phantom.address import formatAddress
from phantom.frontend.device import TunDevice, whyNoTunDevice
from phantom.frontend.router import PacketRouter
from tests.frontend.test_router import FakeExits

OWN = b"\xfd\x7e" + os.urandom(14)
EXIT = b"\xfd\x7d" + os.urandom(14)
NEXT = b"\xfd\x7c" + os.urandom(14)
FAR = b"\xfd\x7f" + os.urandom(14)


class RealDeviceTests(TestCase):
    skip = whyNoTunDevice()
    timeout = 30

    async def test_kernelRoutesApTrafficIntoDevice(self):
        """
        The device comes up with the published AP-address, the exit AP and the fd00::/8 route
        preferring the exit AP as source; a datagram a program sends to another AP-address
        reaches the router from the exit AP; when the exit AP changes, the route prefers the new
        one and the old one goes; stopping removes the device.
        """
        from pyroute2 import IPRoute

        name = f"phtest{os.getpid() % 100000}"
        opened = []
        firstOpened = Deferred()

        def openTunnel(source, ap, protocol):
            opened.append((source, ap))
            if not firstOpened.called:
                firstOpened.callback(ap)
            return Deferred()

        exits = FakeExits([EXIT])
        router = PacketRouter(OWN, openTunnel, exits=exits)
        device = TunDevice(name, router, reactor, exits=exits)
        device.privilegedStartService()
        device.startService()
        stopped = False
        try:
            with IPRoute() as ip:
                [index] = ip.link_lookup(ifname=name)
                [link] = ip.get_links(index)
                self.assertEqual(link.get_attr("IFLA_MTU"), device.mtu)
                addresses = [a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=index, family=socket.AF_INET6)]
                self.assertIn(formatAddress(OWN), addresses)
                self.assertIn(formatAddress(EXIT), addresses)
                [route] = [r for r in ip.get_routes(family=socket.AF_INET6, oif=index) if r["dst_len"] == 8 and r.get_attr("RTA_DST") == "fd00::"]
                self.assertEqual(route.get_attr("RTA_PREFSRC"), formatAddress(EXIT))
            sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.addCleanup(sender.close)
            sender.sendto(b"hello", (formatAddress(FAR), 9))
            self.assertEqual(await firstOpened, FAR)
            self.assertGreaterEqual(router.counts["device in"], 1)
            self.assertEqual(opened, [(EXIT, FAR)])
            self.assertIn((EXIT, FAR), router.pending)

            exits.change([NEXT])
            with IPRoute() as ip:
                addresses = [a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=index, family=socket.AF_INET6)]
                self.assertIn(formatAddress(NEXT), addresses)
                self.assertNotIn(formatAddress(EXIT), addresses)
                [route] = [r for r in ip.get_routes(family=socket.AF_INET6, oif=index) if r["dst_len"] == 8 and r.get_attr("RTA_DST") == "fd00::"]
                self.assertEqual(route.get_attr("RTA_PREFSRC"), formatAddress(NEXT))
            await device.stopService()
            stopped = True
            with IPRoute() as ip:
                self.assertEqual(ip.link_lookup(ifname=name), [])
        finally:
            if not stopped:
                await device.stopService()
