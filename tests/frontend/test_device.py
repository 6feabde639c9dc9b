"""The tun device for real: netlink configuration, and packets the kernel routes into it."""

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from phantom.address import formatAddress
from phantom.frontend.device import TunDevice, whyNoTunDevice
from phantom.frontend.router import PacketRouter

OWN = b"\xfd\x7e" + os.urandom(14)
FAR = b"\xfd\x7f" + os.urandom(14)


class RealDeviceTests(TestCase):
    skip = whyNoTunDevice()
    timeout = 30

    async def test_kernelRoutesApTrafficIntoDevice(self):
        """
        The device comes up with the AP-address and the fd00::/8 route; a datagram a program
        sends to another AP-address reaches the router; stopping removes the device.
        """
        from pyroute2 import IPRoute

        name = f"phtest{os.getpid() % 100000}"
        opened = []
        firstOpened = Deferred()

        def openTunnel(ap, protocol):
            opened.append(ap)
            if not firstOpened.called:
                firstOpened.callback(ap)
            return Deferred()

        router = PacketRouter(OWN, openTunnel)
        device = TunDevice(name, router, reactor)
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
                routes = [r for r in ip.get_routes(family=socket.AF_INET6, oif=index) if r["dst_len"] == 8]
                self.assertTrue(routes)
            sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            self.addCleanup(sender.close)
            sender.bind((formatAddress(OWN), 0))
            sender.sendto(b"hello", (formatAddress(FAR), 9))
            self.assertEqual(await firstOpened, FAR)
            self.assertGreaterEqual(router.counts["device in"], 1)
            self.assertEqual(opened, [FAR])
            self.assertIn(FAR, router.pending)
            await device.stopService()
            stopped = True
            with IPRoute() as ip:
                self.assertEqual(ip.link_lookup(ifname=name), [])
        finally:
            if not stopped:
                await device.stopService()
