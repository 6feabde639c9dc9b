"""
Cells at the owner's end (gathering writes, padding, a bad cell) and on whole in-process
tunnels of the real parts (L{bench.cells.CellChain}): one frame size on every link, and
tampering that never gets through.
"""

import os
import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import cells
from phantom.link.local import LocalLink
from phantom.tunnel.keys import StreamLayer
from phantom.tunnel.transport import MOST_GATHERED, OwnerTunnel, Soon, Splice, TunnelAddress
from phantom.wire.tunnel import BLOCK_SIZE, CELL_CAPACITY, CELL_SIZE, buildCell, parseCell
from tests.link.helpers import CollectingHandler, LogCollector
from tests.tunnel.helpers import Collector


class TurnClock(Clock):
    """A clock whose C{advance} runs only the calls made before it, as a reactor's turn does."""

    def advance(self, amount):
        self.rightNow += amount
        for call in [call for call in self.calls if call.getTime() <= self.rightNow]:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class Reading:
    """
    Makes C{link} behave as a link handling a socket read (L{phantom.link.interfaces.ILink.afterRead})
    while L{during} runs: the calls asked for wait until then, and run after it, with those they add.
    """

    def __init__(self, link):
        self._calls = None
        link.afterRead = self._afterRead

    def _afterRead(self, call):
        if self._calls is None:
            return False
        self._calls.append(call)
        return True

    def during(self, f, *args):
        """Run C{f(*args)} as the handling of one read; @return: how many calls waited for its end."""
        self._calls = []
        f(*args)
        calls = self._calls
        for call in calls:
            call()
        self._calls = None
        return len(calls)


class SoonTests(SynchronousTestCase):
    def setUp(self):
        self.clock, self.calls = Clock(), []
        self.link = LocalLink(b"a" * 32, None, False, self.clock)
        self.soon = Soon(self.clock, self.link, lambda: self.calls.append("called"))

    def test_afterTheRead(self):
        """Scheduled during a read of its source (twice), the call is made once, at the read's end, with no timer."""

        def reading():
            self.soon.schedule()
            self.soon.schedule()
            self.assertEqual(self.calls, [])

        Reading(self.link).during(reading)
        self.assertEqual((self.calls, self.clock.getDelayedCalls()), (["called"], []))

    def test_cancelledThenNextTurn(self):
        """
        Cancelled during the read and scheduled for the next turn, the call is not made at the
        read's end (the link still holds the first request), but in the next turn, once.
        """

        def reading():
            self.soon.schedule()
            self.soon.cancel()
            self.soon.schedule(nextTurn=True)

        Reading(self.link).during(reading)
        self.assertEqual(self.calls, [])
        self.clock.advance(0)
        self.assertEqual(self.calls, ["called"])
        self.clock.advance(0)
        self.assertEqual(self.calls, ["called"])

    def test_noReadNextTurn(self):
        """Outside a read of its source (or with none), the call is made in the reactor's next turn."""
        clock, calls = Clock(), []
        for source in (LocalLink(b"a" * 32, None, False, clock), None):
            calls = []
            soon = Soon(clock, source, lambda: calls.append("called"))
            soon.schedule()
            self.assertEqual(calls, [])
            clock.advance(0)
            self.assertEqual(calls, ["called"])


class OwnerEndTests(SynchronousTestCase):
    def setUp(self):
        self.clock = TurnClock()
        self.near, self.far = LocalLink.between((b"a" * 32, "10.0.0.1", 1), (b"b" * 32, "10.0.0.2", 1), self.clock)
        self.hops = [(os.urandom(32), os.urandom(BLOCK_SIZE)) for _ in range(3)]
        self.tunnel = OwnerTunnel(self.near, [StreamLayer(*hop) for hop in self.hops], True, TunnelAddress(None), TunnelAddress(None), self.clock)
        self.near.attach(self.tunnel)
        self.received = CollectingHandler(self.far)
        self.far.attach(self.received)
        self.protocol = Collector()
        self.tunnel.start(self.protocol)

    def settle(self):
        while self.clock.getDelayedCalls():
            self.clock.advance(0)

    def plain(self):
        """What the hops, adding their layers, make of every cell sent: the data of each."""
        hops = [StreamLayer(*hop) for hop in self.hops]
        data = []
        for cell in self.received.frames:
            self.assertEqual(len(cell), CELL_SIZE)
            for hop in hops:
                cell = hop.along(cell)
            data.append(parseCell(cell))
        return data

    def test_turnsWritesGathered(self):
        """
        The writes of one reactor turn go in as few cells as they fill: full cells at once,
        the rest padded at the end of the turn; a turn's single small write, one cell.
        """
        writes = [os.urandom(size) for size in (100, 3000, CELL_CAPACITY, 7000, 5)]
        for data in writes:
            self.tunnel.write(data)
        whole = b"".join(writes)
        self.settle()
        expected = [whole[start : start + CELL_CAPACITY] for start in range(0, len(whole), CELL_CAPACITY)]
        self.assertEqual(self.plain(), expected)
        self.tunnel.write(b"x")
        self.settle()
        self.assertEqual(self.plain()[-1], b"x")
        self.assertEqual(len(self.received.frames), len(expected) + 1)

    def test_turnsCellsInOneWrite(self):
        """
        The cells of one turn's writes reach the link in one write, at the end of the turn. A
        turn that fills whole cells holds its rest back for the next turn, which takes it into
        a whole cell if it writes enough, and pads it if it does not.
        """
        writes = []
        send = self.near.sendFrames
        self.near.sendFrames = lambda payloads: (writes.append(len(payloads)), send(payloads))
        self.tunnel.write(os.urandom(CELL_CAPACITY - 10))
        self.tunnel.write(os.urandom(20))
        self.assertEqual(writes, [])
        self.clock.advance(0)
        self.assertEqual(writes, [1])
        self.tunnel.write(os.urandom(CELL_CAPACITY))
        self.clock.advance(0)
        self.assertEqual(writes, [1, 1])
        self.clock.advance(0)
        self.assertEqual(writes, [1, 1, 1])
        self.settle()
        self.assertEqual([len(data) for data in self.plain()], [CELL_CAPACITY, CELL_CAPACITY, 10])
        self.tunnel.write(b"small")
        self.clock.advance(0)
        self.assertEqual(writes, [1, 1, 1, 1])

    def test_readsOfATurnInOnePiece(self):
        """What the cells of one turn carry reaches the protocol in one piece, at the end of the turn."""
        pieces = []
        self.protocol.dataReceived = pieces.append
        hops = [StreamLayer(*hop) for hop in self.hops]
        sent = [os.urandom(100), os.urandom(CELL_CAPACITY)]
        for data in sent:
            cell = buildCell(data)
            for hop in reversed(hops):
                cell = hop.against(cell)
            self.tunnel.frameReceived(cell)
        self.assertEqual(pieces, [])
        self.clock.advance(0)
        self.assertEqual(pieces, [b"".join(sent)])

    def test_answerLeavesAfterTheRead(self):
        """
        What arrives in a read of the link reaches the protocol once the read is handled, and
        what the protocol writes in answer leaves then too, in one write: no timer waits.
        """
        reading = Reading(self.near)
        writes = []
        send = self.near.sendFrames
        self.near.sendFrames = lambda payloads: (writes.append(len(payloads)), send(payloads))
        self.protocol.dataReceived = lambda data: self.tunnel.write(data.upper())
        hops = [StreamLayer(*hop) for hop in self.hops]

        def arriving(*chunks):
            for data in chunks:
                cell = buildCell(data)
                for hop in reversed(hops):
                    cell = hop.against(cell)
                self.tunnel.frameReceived(cell)

        self.assertEqual(reading.during(arriving, b"ping", b"pong"), 2)
        # Delivered and answered with the clock not moved: no timer was waited for.
        self.assertEqual(writes, [1])
        self.settle()
        self.assertEqual(self.plain(), [b"PINGPONG"])

    def test_wholeCellsAfterTheReadRestNextTurn(self):
        """An answer that fills whole cells sends them after the read; its rest waits for the reactor's next turn."""
        reading = Reading(self.near)
        self.protocol.dataReceived = lambda data: self.tunnel.write(os.urandom(CELL_CAPACITY + 10))
        cell = buildCell(b"request")
        for hop in reversed([StreamLayer(*hop) for hop in self.hops]):
            cell = hop.against(cell)
        writes = []
        send = self.near.sendFrames
        self.near.sendFrames = lambda payloads: (writes.append(len(payloads)), send(payloads))
        reading.during(self.tunnel.frameReceived, cell)
        self.assertEqual(writes, [1])
        self.clock.advance(0)
        self.assertEqual(writes, [1, 1])
        self.settle()
        self.assertEqual([len(data) for data in self.plain()], [CELL_CAPACITY, 10])

    def test_manyCellsGoWhileWritten(self):
        """
        A turn's writes of many cells do not all wait for its end: each time more than
        MOST_GATHERED are gathered they go to the link at once (where a full link pauses the
        program's producer), and the rest at the end of the turn.
        """
        writes = []
        send = self.near.sendFrames
        self.near.sendFrames = lambda payloads: (writes.append(len(payloads)), send(payloads))
        self.tunnel.write(os.urandom(40 * CELL_CAPACITY))
        self.assertEqual(writes, [MOST_GATHERED + 1] * 2)
        self.clock.advance(0)
        self.assertEqual(writes, [MOST_GATHERED + 1] * 2 + [40 - 2 * (MOST_GATHERED + 1)])
        self.settle()
        self.assertEqual(len(self.plain()), 40)

    def pausingLink(self, paused):
        """Make the link pause the tunnel's producer, calling C{paused()}, each time cells are sent to it."""
        send = self.near.sendFrames

        def sendFrames(payloads):
            send(payloads)
            paused()

        self.near.sendFrames = sendFrames

    def test_writeFromPausedProducer(self):
        """
        A producer that writes when the link pauses it, in the middle of a long write: no
        error, and the far end reads the long write's bytes first, then the producer's.
        """
        long = os.urandom(40 * CELL_CAPACITY + 7)
        once = [b"paused"]
        self.pausingLink(lambda: once and self.tunnel.write(once.pop()))
        self.tunnel.write(long)
        self.settle()
        self.assertEqual(b"".join(self.plain()), long + b"paused")

    def test_closeFromPausedProducer(self):
        """A producer that closes the tunnel when paused, in the middle of a long write: every byte of the write goes first."""
        long = os.urandom(40 * CELL_CAPACITY + 7)
        self.pausingLink(self.tunnel.loseConnection)
        self.tunnel.write(long)
        self.settle()
        self.assertEqual(b"".join(self.plain()), long)
        self.assertTrue(self.tunnel.disconnecting)

    def test_loseConnectionSendsFirst(self):
        """What was written before the tunnel is closed goes out first, padded."""
        self.tunnel.write(b"last words")
        self.tunnel.loseConnection()
        self.settle()
        self.assertEqual(self.plain(), [b"last words"])

    def test_badCell(self):
        """
        A frame from x0 that is no cell under the hops' layers, or not a cell's size: the
        tunnel closes, logging why, and the program gets nothing of it.
        """
        for frame, why in ((os.urandom(CELL_SIZE), "does not check out"), (buildCell(b"short")[:100], "100 bytes where")):
            self.setUp()
            logs = LogCollector(self, "phantom.tunnel")
            self.far.sendFrame(frame)
            self.settle()
            self.assertEqual(bytes(self.protocol.received), b"")
            self.assertTrue(self.protocol.ended.called)
            self.assertTrue(logs.having("tunnel closed", why), logs.lines)


class SpliceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        pair = lambda: LocalLink.between((b"a" * 32, "10.0.0.1", 1), (b"b" * 32, "10.0.0.2", 1), self.clock)
        (self.left, self.a), (self.b, self.right) = pair(), pair()
        self.splice = Splice(self.a, self.b, lambda payload: payload.upper(), lambda payload: payload, self.clock)
        self.a.attach(self.splice.ends[0])
        self.b.attach(self.splice.ends[1])
        self.received = CollectingHandler(self.right)
        self.right.attach(self.received)
        self.writes = []
        send = self.b.sendFrames
        self.b.sendFrames = lambda payloads: (self.writes.append(list(payloads)), send(payloads))

    def settle(self):
        while self.clock.getDelayedCalls():
            self.clock.advance(0)

    def test_turnInOneWrite(self):
        """The frames a splice passes on in one turn go to the other link with one write, in order."""
        self.left.sendFrames([b"one", b"two", b"three"])
        self.settle()
        self.assertEqual(self.writes, [[b"ONE", b"TWO", b"THREE"]])
        self.assertEqual(self.received.frames, [b"ONE", b"TWO", b"THREE"])

    def test_readInOneWriteNoTimer(self):
        """The frames of one read of a link go on to the other with one write once the read is handled, with no timer."""
        reading = Reading(self.a)

        def arriving():
            for payload in (b"one", b"two", b"three"):
                self.splice.ends[0].frameReceived(payload)
            self.assertEqual(self.writes, [])

        self.assertEqual(reading.during(arriving), 1)
        # Sent with the clock not moved: no timer was waited for.
        self.assertEqual(self.writes, [[b"ONE", b"TWO", b"THREE"]])

    def test_passedOnBeforeClosing(self):
        """A splice that closes sends what it has passed on in this turn first."""
        self.splice.ends[0].frameReceived(b"one")
        self.splice.close()
        self.settle()
        self.assertEqual(self.received.frames, [b"ONE"])
        self.assertTrue(self.splice.closed)


class ChainTests(SynchronousTestCase):
    def test_oneSize(self):
        """Writes of any size, echoed: every frame on every link of the tunnel is one cell."""
        sizes, writes = cells.distinctSizes(random.Random(1), writes=30)
        self.assertEqual(sizes, 1)
        self.assertGreater(writes, 1)

    def test_tamperingNeverGetsThrough(self):
        """Each way of tampering, at each place: nothing is taken after it, and the tunnel closes."""
        LogCollector(self, "phantom")
        reached, closed, events = cells.tamperingEvents(len(cells.PLACES), random.Random(2))
        self.assertEqual(reached, dict.fromkeys(cells.HOW, 0))
        self.assertEqual(closed, dict.fromkeys(cells.HOW, len(cells.PLACES)))
        self.assertEqual(events, len(cells.HOW) * len(cells.PLACES))


class _Eager:
    """A streaming producer that writes 64 KiB at a time until it is paused (or has written C{most} bytes)."""

    def __init__(self, write, most):
        self._write = write
        self._most = most
        self.written = 0
        self.paused = False

    def resumeProducing(self):
        self.paused = False
        chunk = bytes(64 * 1024)
        while not self.paused and self.written < self._most:
            self._write(chunk)
            self.written += len(chunk)

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.paused = True


class ProducerOverTLSTests(TestCase):
    timeout = 60

    async def test_pausedWhileWriting(self):
        """
        A program whose producer writes until it is paused, on a tunnel over real TLS links in
        this process: the first link's full buffer pauses it while it writes, after a few MiB at
        most (before, the tunnel gathered everything it wrote until the turn ended, and the
        producer was never paused).
        """
        routes = cells.TLSRoutes(reactor)
        await routes.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(routes.stop()))
        channel = await routes.tunnel(echo=False)
        producer = _Eager(channel.send, 64 * 2**20)
        channel.flowControl.registerProducer(producer, True)
        producer.resumeProducing()
        self.assertTrue(producer.paused)
        self.assertLess(producer.written, 16 * 2**20)
        channel.flowControl.unregisterProducer()
        await channel.close()
