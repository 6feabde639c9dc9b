"""The dispatcher's parking of early links, on fake links and a driven clock."""

import ipaddress

from hypothesis import given, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LinkLimits
from phantom.identity import Identity
from phantom.link import quota
from phantom.link.dispatch import LinkDispatcher
from phantom.link.service import LinkService
from phantom.link.quota import ConnectionQuota, CoolDown, addressPrefix, descriptorShare, exactAddress
from phantom.wire.link import Purpose


class FakeLink:
    """Just what the dispatcher looks at, and whether it was aborted."""

    def __init__(self, host, number, purpose=Purpose.PATH):
        self.peer = IPv4Address("TCP", host, 40000 + number)
        self.linkId = number.to_bytes(16, "big")
        self.nodeId = host.encode().ljust(32, b"\0")
        self.purpose = purpose
        self.inbound = True
        self.aborted = None

    def abort(self, reason):
        self.aborted = reason


class ParkingTests(SynchronousTestCase):
    """Early links are held up to a cap in total and per address; the rest are closed at once."""

    def setUp(self):
        self.clock = Clock()
        self.dispatcher = LinkDispatcher(self.clock, maxParked=5, maxParkedPerAddress=3)
        self.dispatcher.parkEarlyLinks(Purpose.PATH, 20)

    def test_hostilePeerHitsItsShare(self):
        """
        A peer opening early links nobody awaits gets 3 held, the next closed at once; a
        well-behaved peer's early link is still held and taken by the wait for it.
        """
        hostile = [FakeLink("192.0.2.1", n) for n in range(10)]
        for link in hostile:
            self.dispatcher.dispatch(link)
        self.assertEqual(self.dispatcher.parkedCount, 3)
        self.assertEqual([link.aborted is None for link in hostile], [True] * 3 + [False] * 7)
        self.assertIn("3 parked links from one address", hostile[3].aborted)
        good = FakeLink("198.51.100.7", 99)
        self.dispatcher.dispatch(good)
        taken = self.dispatcher.expectLink(good.linkId, "198.51.100.7", Purpose.PATH, 5)
        self.assertIs(self.successResultOf(taken), good)
        self.assertIsNone(good.aborted)

    def test_totalCap(self):
        """Many addresses together get no more than the total; a slot freed by the parking timeout is free again."""
        links = [FakeLink(f"192.0.2.{n}", n) for n in range(1, 9)]
        for link in links:
            self.dispatcher.dispatch(link)
        self.assertEqual(self.dispatcher.parkedCount, 5)
        self.assertIn("5 parked links in total", links[5].aborted)
        self.clock.advance(20)
        self.assertEqual(self.dispatcher.parkedCount, 0)
        late = FakeLink("192.0.2.77", 77)
        self.dispatcher.dispatch(late)
        self.assertEqual(self.dispatcher.parkedCount, 1)

    def test_totalFullHeaviestGivesWay(self):
        """
        Two addresses holding every parking place do not keep out an early link from a third
        (an x0's PATH link to the owner, a successor's to a relay: refused, the attempt fails
        and the owner takes x0 for gone): the oldest early link of the address holding the
        most gives way.
        """
        hostile = [FakeLink("192.0.2.1", n) for n in range(3)] + [FakeLink("192.0.2.2", n) for n in range(3, 5)]
        for link in hostile:
            self.dispatcher.dispatch(link)
        self.assertEqual(self.dispatcher.parkedCount, 5)
        good = FakeLink("198.51.100.7", 99)
        self.dispatcher.dispatch(good)
        self.assertIsNone(good.aborted)
        self.assertEqual(self.dispatcher.parkedCount, 5)
        self.assertIn("address holding fewer", hostile[0].aborted)
        self.assertEqual([link.aborted is None for link in hostile], [False] + [True] * 4)
        taken = self.dispatcher.expectLink(good.linkId, "198.51.100.7", Purpose.PATH, 5)
        self.assertIs(self.successResultOf(taken), good)

    def test_stopFreesEverything(self):
        """Stopping drops the parked links and their slots."""
        for n in range(3):
            self.dispatcher.dispatch(FakeLink("192.0.2.1", n))
        self.dispatcher.stop()
        self.assertEqual(self.dispatcher.parkedCount, 0)
        self.dispatcher.dispatch(FakeLink("192.0.2.1", 50))
        self.assertEqual(self.dispatcher.parkedCount, 1)


class QuotaTests(SynchronousTestCase):
    """What counts as one address, and the share of descriptors."""

    def test_prefixes(self):
        self.assertEqual(addressPrefix("192.0.2.5"), "192.0.2.5")
        self.assertEqual(addressPrefix("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(addressPrefix("2001:db8:1:2:ffff::1"), addressPrefix("2001:db8:1:2::9"))
        self.assertEqual(addressPrefix("::ffff:192.0.2.5"), "192.0.2.5")
        self.assertEqual(addressPrefix("/tmp/socket"), "/tmp/socket")

    @given(st.ip_addresses())
    def test_exactAddressInItsPrefix(self, address):
        """Any form of an address gives one exact address, within its prefix; an IPv4-mapped one is its IPv4 address."""
        exact = exactAddress(address.exploded)
        self.assertEqual(exact, exactAddress(str(address)))
        if address.version == 6:
            self.assertIn(ipaddress.ip_address(exact), ipaddress.ip_network(addressPrefix(exact)))
            mapped = exactAddress(f"::ffff:{address.exploded[-9:-5]}:{address.exploded[-4:]}")
            self.assertEqual(ipaddress.ip_address(mapped).version, 4)
        else:
            self.assertEqual(addressPrefix(exact), exact)

    def test_exactAddressOfNoAddress(self):
        """What is no IP address is its own exact address and prefix."""
        for host in ("/tmp/socket", "node-1", "", "2001:db8::/64", "999.1.1.1"):
            self.assertEqual((exactAddress(host), addressPrefix(host)), (host, host))

    def test_ipv6PeerCannotSpreadOverItsPrefix(self):
        quota = ConnectionQuota(100, 2, "things")
        self.assertIsNone(quota.admit("2001:db8::1"))
        self.assertIsNone(quota.admit("2001:db8::2"))
        self.assertIsNotNone(quota.admit("2001:db8::3"))
        self.assertIsNone(quota.admit("2001:db8:0:1::3"))
        quota.release("2001:db8::1")
        self.assertIsNone(quota.admit("2001:db8::3"))

    def test_givesWayTo(self):
        """
        When all slots are taken, the address that gives way is the one holding the most, if it
        holds more than the newcomer would; nobody gives way to an address at its share.
        """
        quota = ConnectionQuota(4, 3, "things")
        quota.admit("192.0.2.1")
        self.assertIsNone(quota.givesWayTo("192.0.2.9"))
        for host in ("192.0.2.1", "192.0.2.1", "2001:db8::1"):
            quota.admit(host)
        self.assertEqual(quota.givesWayTo("192.0.2.9"), "192.0.2.1")
        self.assertEqual(quota.givesWayTo("2001:db8::2"), "192.0.2.1")
        self.assertIsNone(quota.givesWayTo("192.0.2.1"))
        even = ConnectionQuota(4, 4, "things")
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
            even.admit(host)
        self.assertIsNone(even.givesWayTo("192.0.2.9"))

    def test_coolDown(self):
        """
        A punished address is refused until its cool-down ends; other addresses are not; at
        most C{maxAddresses} are remembered, the oldest forgotten first.
        """
        clock = Clock()
        coolDown = CoolDown(clock, 30, maxAddresses=2)
        coolDown.punish("2001:db8::1")
        self.assertIn("flooded a link", coolDown.refusal("2001:db8:0:0:0::1"))
        self.assertIsNone(coolDown.refusal("2001:db8:0:1::1"))
        clock.advance(29.9)
        self.assertIsNotNone(coolDown.refusal("2001:db8::1"))
        clock.advance(0.1)
        self.assertIsNone(coolDown.refusal("2001:db8::1"))
        self.assertEqual(len(coolDown), 0)
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            coolDown.punish(host)
        self.assertEqual(len(coolDown), 2)
        self.assertIsNone(coolDown.refusal("192.0.2.1"))
        self.assertIsNotNone(coolDown.refusal("192.0.2.3"))

    def test_coolDownSparesNeighbours(self):
        """
        One flooding address of a /64 does not cool down the others: where a provider gives its
        customers single addresses of one /64, a flooder there could otherwise cut a neighbour
        off every node of the network with one flood per node every 30 s. A /64 from which
        C{perPrefix} addresses flooded is refused whole, so that an attacker holding the /64
        cannot get round the cool-down by changing addresses.
        """
        clock = Clock()
        coolDown = CoolDown(clock, 30, perPrefix=3)
        coolDown.punish("2001:db8::1")
        self.assertIsNone(coolDown.refusal("2001:db8::2"))
        self.assertIsNotNone(coolDown.refusal("2001:db8::1"))
        coolDown.punish("2001:db8::3")
        coolDown.punish("2001:db8::3")
        self.assertIsNone(coolDown.refusal("2001:db8::2"))
        coolDown.punish("2001:db8::4")
        self.assertIn("3 addresses of its /64 flooded", coolDown.refusal("2001:db8::2"))
        self.assertIsNone(coolDown.refusal("2001:db8:0:1::2"))
        clock.advance(30)
        self.assertIsNone(coolDown.refusal("2001:db8::2"))
        self.assertIsNone(coolDown.refusal("2001:db8::4"))
        # Flooders of long ago do not count towards the /64.
        coolDown.punish("2001:db8::5")
        coolDown.punish("2001:db8::6")
        self.assertIsNone(coolDown.refusal("2001:db8::2"))
        # An IPv4 address is its own prefix.
        coolDown.punish("192.0.2.1")
        self.assertIsNotNone(coolDown.refusal("::ffff:192.0.2.1"))
        self.assertIsNone(coolDown.refusal("192.0.2.2"))

    def test_noCoolDown(self):
        coolDown = CoolDown(Clock(), 0)
        coolDown.punish("192.0.2.1")
        self.assertIsNone(coolDown.refusal("192.0.2.1"))

    def test_releaseWithoutSlot(self):
        self.assertRaises(RuntimeError, ConnectionQuota(1, 1, "things").release, "192.0.2.1")

    def test_linksCarryingPathsGiveWayLast(self):
        """
        On a full node, of the address holding the most, a connection without its OPEN frame
        gives way first, then a link that carries no path (DHT, ECHO, SETUP), and a link of a
        path or tunnel last: an attacker that fills the node cannot make it close a neighbour's
        tunnels while that neighbour has other links to give.
        """
        service = LinkService(Identity.generate(), None, LinkLimits(maxInbound=4, maxInboundPerAddress=4), Clock())
        neighbour = [FakeLink("192.0.2.1", n, purpose) for n, purpose in enumerate((Purpose.PATH, Purpose.TUNNEL, Purpose.DHT))]
        for link in neighbour:
            service.connectionStarted(link)
            service.linkOpened(link)
        handshaking = FakeLink("192.0.2.1", 3, None)
        service.connectionStarted(handshaking)
        self.assertTrue(service.admit("198.51.100.7"))
        self.assertIsNotNone(handshaking.aborted)
        service.connectionStarted(FakeLink("198.51.100.7", 4, None))
        self.assertTrue(service.admit("198.51.100.8"))
        self.assertEqual([link.aborted is None for link in neighbour], [True, True, False])
        self.assertEqual(service.inboundCount[0], 3)

    def test_linkServiceTakesItsShare(self):
        """Under a low descriptor limit the link port takes at most half of what is left after the reserve."""
        self.patch(quota, "descriptorLimit", lambda: 256)
        service = LinkService(Identity.generate(), None, LinkLimits(), Clock())
        self.assertEqual(service.inboundLimit, (256 - 64) // 2)

    def test_descriptorShare(self):
        self.assertEqual(descriptorShare(2048, 1 / 2, 64, limit=256), 96)
        self.assertEqual(descriptorShare(100, 1 / 2, 64, limit=65536), 100)
        self.assertEqual(descriptorShare(100, 1 / 8, 64, limit=10), 1)
