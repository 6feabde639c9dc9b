"""The in-memory links that the tests of the rooms above run on: they must behave as real links do."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from phantom.errors import LinkFailed, LinkTimeout, PinMismatch
from phantom.link.interfaces import ILink, ILinkService
from phantom.link.testing import MemoryNetwork
from phantom.wire.link import Purpose


class Recorder:
    """An L{ILinkHandler} that keeps what arrives."""

    def __init__(self, link=None):
        self.frames = []
        self.closed = False

    def frameReceived(self, payload):
        self.frames.append(payload)

    def linkClosed(self, reason):
        self.closed = True


class MemoryNetworkTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.alice = self.network.linkService()
        self.bob = self.network.linkService()

    def connect(self, purpose=Purpose.ECHO, linkId=bytes(16), nodeId=None):
        results = []
        self.alice.connect(*self.bob.address, purpose, linkId, nodeId or self.bob.nodeId).addBoth(results.append)
        self.clock.advance(0)
        return results[0]

    def test_interfaces(self):
        """The service provides what the rooms above use, and its links are links."""
        verifyObject(ILinkService, self.alice)
        self.bob.registerPurpose(Purpose.ECHO, Recorder)
        verifyObject(ILink, self.connect())

    def test_framesInOrderByPurpose(self):
        """A link goes to its purpose's handler; frames arrive in order, a turn after sending."""
        handlers = []
        self.bob.registerPurpose(Purpose.ECHO, lambda link: handlers.append(Recorder()) or handlers[-1])
        link = self.connect()
        self.assertEqual((link.nodeId, link.peer.host, link.inbound), (self.bob.nodeId, self.bob.address[0], False))
        for n in range(3):
            link.sendFrame(bytes([n]))
        self.assertEqual(handlers[0].frames, [])
        self.clock.advance(0)
        self.assertEqual(handlers[0].frames, [b"\x00", b"\x01", b"\x02"])

    def test_closingReachesTheOtherEnd(self):
        """Closing one end closes the other and forgets both."""
        handlers = []
        self.bob.registerPurpose(Purpose.ECHO, lambda link: handlers.append(Recorder()) or handlers[-1])
        link = self.connect()
        link.close()
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertTrue(handlers[0].closed)
        self.assertEqual((self.alice.links, self.bob.links), (set(), set()))

    def test_awaitedLink(self):
        """An awaited link goes to its waiter, not to the purpose's handler."""
        self.bob.registerPurpose(Purpose.PATH, lambda link: self.fail("dispatched to the handler"))
        awaited = []
        self.bob.expectLink(b"\x07" * 16, self.alice.address[0], Purpose.PATH, 5).addCallback(awaited.append)
        self.connect(Purpose.PATH, b"\x07" * 16)
        self.assertEqual([link.nodeId for link in awaited], [self.alice.nodeId])

    def test_awaitedTimesOut(self):
        """The wait fails on the clock."""
        failures = []
        self.bob.expectLink(b"\x07" * 16, self.alice.address[0], Purpose.PATH, 5).addErrback(failures.append)
        self.clock.advance(5)
        self.assertTrue(failures[0].check(LinkTimeout))

    def test_pinAndNobody(self):
        """A wrong pin and an address nobody listens at fail as real links do."""
        self.assertTrue(self.connect(nodeId=b"\x01" * 32).check(PinMismatch))
        self.network.disconnect(self.bob)
        self.assertTrue(self.connect().check(LinkFailed))

    def test_noHandler(self):
        """A link of a purpose nobody takes is closed."""
        link = self.connect()
        self.clock.advance(0)
        self.assertTrue(link.closed)
