"""The in-memory links that the tests of the rooms above run on: they must behave as real links do."""

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from phantom.errors import LinkFailed, LinkTimeout, PinMismatch
from phantom.link.interfaces import ILink, ILinkService
from phantom.link.testing import HANDSHAKE_TRIPS, HeapClock, MemoryNetwork
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

    def test_latency(self):
        """
        With a latency model, a link opens after the handshake's trips, and its frames, then
        its closing, each arrive one latency after they leave, in order.
        """
        clock = Clock()
        network = MemoryNetwork(clock, latency=lambda host, other: 0.03)
        alice, bob = network.linkService(), network.linkService()
        handlers = []
        bob.registerPurpose(Purpose.ECHO, lambda link: handlers.append(Recorder()) or handlers[-1])
        results = []
        alice.connect(*bob.address, Purpose.ECHO, bytes(16), bob.nodeId).addBoth(results.append)
        clock.advance(HANDSHAKE_TRIPS * 0.03 - 0.001)
        self.assertEqual((results, handlers), ([], []))
        clock.advance(0.001)
        [link] = results
        link.sendFrame(b"a")
        link.sendFrame(b"b")
        link.close()
        clock.advance(0.029)
        self.assertEqual(handlers[0].frames, [])
        clock.advance(0.001)
        self.assertEqual(handlers[0].frames, [b"a", b"b"])
        self.assertFalse(handlers[0].closed)
        clock.advance(0.03)
        self.assertTrue(handlers[0].closed)

    def test_awaitedLink(self):
        """An awaited link goes to its waiter, not to the purpose's handler."""
        self.bob.registerPurpose(Purpose.PATH, lambda link: self.fail("dispatched to the handler"))
        awaited = []
        self.bob.expectLink(b"\x07" * 16, self.alice.address[0], Purpose.PATH, 5).addCallback(awaited.append)
        self.connect(Purpose.PATH, b"\x07" * 16)
        self.assertEqual([link.nodeId for link in awaited], [self.alice.nodeId])

    def test_awaitedFromAnotherNode(self):
        """
        A link with the awaited link id from the awaited host but another node id is refused,
        and the wait goes on for the node it pins.
        """
        mallory = self.network.linkService(host=self.alice.address[0], port=7403)
        awaited = []
        self.bob.expectLink(b"\x07" * 16, self.alice.address[0], Purpose.PATH, 5, self.alice.nodeId).addCallback(awaited.append)
        impostor = self.network.run(mallory.connect(*self.bob.address, Purpose.PATH, b"\x07" * 16, self.bob.nodeId))
        self.clock.advance(0)
        self.assertTrue(impostor.closed)
        self.assertEqual(awaited, [])
        self.connect(Purpose.PATH, b"\x07" * 16)
        self.assertEqual([link.nodeId for link in awaited], [self.alice.nodeId])

    def test_parkedFromAnotherNode(self):
        """A link parked early by another node at the same host takes neither the place nor the wait."""
        self.bob.parkEarlyLinks(Purpose.PATH, 5)
        mallory = self.network.linkService(host=self.alice.address[0], port=7403)
        impostor = self.network.run(mallory.connect(*self.bob.address, Purpose.PATH, b"\x07" * 16, self.bob.nodeId))
        self.connect(Purpose.PATH, b"\x07" * 16)
        awaited = []
        self.bob.expectLink(b"\x07" * 16, self.alice.address[0], Purpose.PATH, 5, self.alice.nodeId).addCallback(awaited.append)
        self.assertEqual([link.nodeId for link in awaited], [self.alice.nodeId])
        self.clock.advance(5)
        self.assertTrue(impostor.closed)

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


class HeapClockTests(SynchronousTestCase):
    """L{HeapClock} runs calls as C{task.Clock} does: by time, then in the order they were made."""

    def test_order(self):
        """Calls run by their time; calls due at the same time in the order they were made."""
        clock, ran = HeapClock(), []
        for name, delay in [("b", 2), ("a", 1), ("c", 2), ("d", 0)]:
            clock.callLater(delay, ran.append, name)
        clock.advance(0)
        self.assertEqual(ran, ["d"])
        clock.advance(2)
        self.assertEqual(ran, ["d", "a", "b", "c"])

    def test_cancelResetDelay(self):
        """A cancelled call never runs; a reset or delayed one runs at its new time, once."""
        clock, ran = HeapClock(), []
        cancelled = clock.callLater(1, ran.append, "cancelled")
        earlier = clock.callLater(5, ran.append, "earlier")
        later = clock.callLater(2, ran.append, "later")
        delayed = clock.callLater(3, ran.append, "delayed")
        cancelled.cancel()
        earlier.reset(1)
        later.reset(4)
        delayed.delay(2)
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [1, 4, 5])
        self.assertEqual(clock.nextCallTime(), 1)
        clock.advance(1)
        self.assertEqual(ran, ["earlier"])
        clock.advance(3)
        self.assertEqual(ran, ["earlier", "later"])
        clock.advance(10)
        self.assertEqual(ran, ["earlier", "later", "delayed"])
        self.assertEqual((clock.getDelayedCalls(), clock.nextCallTime()), ([], None))


class RunTests(SynchronousTestCase):
    """L{MemoryNetwork.run} and L{MemoryNetwork.runFor} drive the clock for a test."""

    def setUp(self):
        self.network = MemoryNetwork(HeapClock())
        self.clock = self.network.clock

    def test_runJumpsToTheResult(self):
        """A result an hour away comes back at once, with the clock an hour on."""
        self.assertEqual(self.network.run(deferLater(self.clock, 3600, lambda: "done")), "done")
        self.assertEqual(self.clock.seconds(), 3600)

    def test_runRaisesTheFailure(self):
        """A Deferred that fails raises its exception."""
        self.assertRaises(LinkTimeout, self.network.run, fail(LinkTimeout("late")))

    def test_runGivesUp(self):
        """Nothing left that could give a result, or not within the limit: TimeoutError."""
        self.assertRaises(TimeoutError, self.network.run, Deferred())
        self.clock.callLater(10, lambda: None)
        self.assertRaises(TimeoutError, self.network.run, Deferred(), within=5)

    def test_runForRunsEachTimerAtItsTime(self):
        """Each call sees the clock at its own time, not at the end of the span."""
        seen = []
        self.clock.callLater(1, lambda: self.clock.callLater(1, lambda: seen.append(self.clock.seconds())))
        self.clock.callLater(5, lambda: seen.append(self.clock.seconds()))
        self.network.runFor(4)
        self.assertEqual((seen, self.clock.seconds()), ([2], 4))
        self.network.runFor(1)
        self.assertEqual(seen, [2, 5])
