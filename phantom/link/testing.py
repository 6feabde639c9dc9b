"""
In-memory links for tests of the rooms above the link layer: many nodes' link services on one
driven clock, no sockets and no TLS, with the same dispatch (awaited, parked, by purpose) as the
real L{phantom.link.service.LinkService}.

    clock = task.Clock()
    network = MemoryNetwork(clock)
    alice, bob = network.linkService(), network.linkService()
    d = alice.connect(*bob.address, Purpose.ECHO, nodeId=bob.nodeId)
    clock.advance(0)   # links open, frames and closings arrive, a turn at a time

A link opens one turn after C{connect}; a frame arrives one turn after it is sent. A host taken
off the network (L{MemoryNetwork.disconnect}) refuses connections and loses its links.
L{MemoryNetwork.run} drives the clock until a Deferred has its result, jumping from timer to
timer, so a test waits for protocol timeouts without waiting at all:

    link = network.run(alice.connect(*bob.address, Purpose.ECHO))
"""

import heapq
import itertools
import os

from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from phantom.address import formatHostPort
from phantom.errors import LinkFailed, PinMismatch
from phantom.link.dispatch import LinkDispatcher
from phantom.link.interfaces import ILinkService
from phantom.link.local import LocalLink
from phantom.wire.link import NO_LINK_ID, Purpose


class _Posted:
    """A call L{HeapClock.post} made: what the heap needs of a C{DelayedCall}, and no more."""

    __slots__ = ("time", "func", "args", "called")
    delayed_time = 0
    kw = {}

    def __init__(self, time, func, args):
        self.time = time
        self.func = func
        self.args = args
        self.called = 0

    def active(self):
        return not self.called

    def getTime(self):
        return self.time


class HeapClock(Clock):
    """
    A C{task.Clock} that keeps its pending calls in a heap, so that a network of dozens of nodes,
    with a timer for every request in flight, costs a logarithm per call instead of a sort.
    Calls due at the same time run in the order they were made, as on C{task.Clock}.
    """

    def __init__(self):
        super().__init__()
        self._heap = []
        self._order = itertools.count()

    def callLater(self, delay, f, *args, **kw):
        call = DelayedCall(self.seconds() + delay, f, args, kw, lambda call: None, self._push, self.seconds)
        self._push(call)
        return call

    def post(self, delay, f, *args):
        """
        Call C{f(*args)} in C{delay} seconds, like L{callLater} but lighter, for the many calls
        of a simulation that are never cancelled, reset or delayed: @return: nothing to cancel.
        """
        when = self.rightNow + delay
        heapq.heappush(self._heap, (when, next(self._order), _Posted(when, f, args)))

    def _push(self, call):
        heapq.heappush(self._heap, (call.time, next(self._order), call))

    # A call's entry is current while its time is the entry's: a reset to an earlier time pushes
    # a new entry and leaves the old one stale; a delay keeps the entry, which is moved on when
    # it comes up.

    def _nextCall(self):
        """@return: the heap's first current entry, stale ones dropped, delayed ones moved on."""
        heap = self._heap
        while heap:
            when, _, call = heap[0]
            if not call.active() or when != call.time:
                heapq.heappop(heap)
            elif call.delayed_time:
                heapq.heappop(heap)
                call.activate_delay()
                self._push(call)
            else:
                return heap[0]
        return None

    def getDelayedCalls(self):
        return [call for when, _, call in sorted(self._heap) if call.active() and when == call.time]

    def advance(self, amount):
        self.rightNow += amount
        while True:
            entry = self._nextCall()
            if entry is None or entry[0] > self.rightNow:
                return
            call = heapq.heappop(self._heap)[2]
            call.called = 1
            call.func(*call.args, **call.kw)

    def nextCallTime(self):
        """@return: when the next pending call is due, or C{None} when there is none."""
        entry = self._nextCall()
        return entry[0] if entry is not None else None


HANDSHAKE_TRIPS = 5
"""
One-way trips before the far end of a new link sees it: TCP's three, then the TLS 1.3
server flight, then the client's Finished with the OPEN frame.
"""


class MemoryNetwork:
    """
    The nodes of an in-memory network, by address.

    @param clock: the C{IReactorTime} (a C{task.Clock}, or a L{HeapClock} for many nodes)
        every link runs on.
    @param latency: C{latency(host, otherHost) -> seconds}, the one-way latency between two
        nodes; a link then opens after L{HANDSHAKE_TRIPS} of it, and its frames and closing
        take one. Without it, everything takes a turn of the clock.
    """

    def __init__(self, clock, latency=None):
        self.clock = clock
        self.latency = latency
        self._services = {}
        self._count = 0

    def linkService(self, nodeId=None, host=None, port=7402):
        """
        A new node's link service on this network.

        @param nodeId: its node id (random if not given).
        @param host: its IPv4 address (C{10.0.x.y}, one per node, if not given).
        """
        self._count += 1
        host = host or f"10.0.{self._count // 250}.{self._count % 250 + 1}"
        service = MemoryLinkService(self, nodeId or os.urandom(32), (host, port))
        self._services[(host, port)] = service
        return service

    def at(self, host, port):
        """The link service listening at C{host:port}, or C{None}."""
        return self._services.get((host, port))

    def settle(self):
        """Run every turn that is due now, and the turns they make due, until none is left."""
        self.clock.advance(0)

    def runFor(self, seconds):
        """
        Let C{seconds} of the clock pass, timer after timer, each at its time (a single
        C{clock.advance(seconds)} would run everything at the end of the span, as if every
        step had taken all of it).
        """
        end = self.clock.seconds() + seconds
        self.settle()
        while True:
            due = self._nextCallTime()
            if due is None or due > end:
                break
            self.clock.advance(due - self.clock.seconds())
        self.clock.advance(end - self.clock.seconds())

    def run(self, deferred, within=3600.0):
        """
        Drive the clock until C{deferred} has its result: every turn due now, then the next
        timer, and so on.

        @param within: how many seconds of the clock may pass at most.
        @return: the result of C{deferred}.
        @raise Exception: the exception C{deferred} failed with.
        @raise TimeoutError: C{deferred} had no result within C{within} seconds of the clock,
            or no timer was left that could give it one.
        """
        outcome = []
        deferred.addBoth(outcome.append)
        deadline = self.clock.seconds() + within
        self.settle()
        while not outcome:
            due = self._nextCallTime()
            if due is None:
                raise TimeoutError("the Deferred has no result and nothing is left to run")
            if due > deadline:
                raise TimeoutError(f"the Deferred has no result after {within:g} s of the clock")
            self.clock.advance(due - self.clock.seconds())
        [result] = outcome
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def _nextCallTime(self):
        if isinstance(self.clock, HeapClock):
            return self.clock.nextCallTime()
        return min((call.getTime() for call in self.clock.getDelayedCalls()), default=None)

    def disconnect(self, service):
        """Take C{service}'s node off the network: its links close, nobody reaches it."""
        self._services.pop(service.address, None)
        for link in list(service.links):
            link.close()


@implementer(ILinkService)
class MemoryLinkService:
    """One node's links on a L{MemoryNetwork}; see L{ILinkService}."""

    def __init__(self, network, nodeId, address):
        self._network = network
        self.nodeId = nodeId
        self.address = address
        self.clock = network.clock
        self._dispatcher = LinkDispatcher(self.clock)
        self.links = set()
        """The open ends of this node's links."""
        self.registerPurpose = self._dispatcher.registerPurpose
        self.parkEarlyLinks = self._dispatcher.parkEarlyLinks
        self.expectLink = self._dispatcher.expectLink

    def connect(self, host, port, purpose, linkId=NO_LINK_ID, nodeId=None):
        target = self._network.at(host, port)
        if target is None:
            return fail(LinkFailed(f"cannot connect to {formatHostPort(host, port)}: nobody listens there"))
        if nodeId is not None and nodeId != target.nodeId:
            return fail(PinMismatch(nodeId, target.nodeId))
        latency = self._network.latency
        delay = latency(self.address[0], host) if latency is not None else 0
        mine, theirs = LocalLink.between(
            (self.nodeId, *self.address), (target.nodeId, *target.address), self.clock, Purpose(purpose), linkId, delay
        )
        self._track(mine)
        target._track(theirs)
        opened = Deferred()

        def open():
            if mine.closed:
                opened.errback(LinkFailed(f"the link to {formatHostPort(host, port)} closed as it opened"))
                return
            target._dispatcher.dispatch(theirs)
            opened.callback(mine)

        self.clock.callLater(HANDSHAKE_TRIPS * delay, open)
        return opened

    def _track(self, end):
        self.links.add(end)
        end.ending.onEnd(lambda: self.links.discard(end))


def pumpedTLSPair(serverFactory, clientFactory, serverAddress, clientAddress, clock):
    """
    Two TLS link ends joined in memory by C{twisted.test.iosim}, their bytes moved by a pump.

    @param serverFactory: the factory of the accepting end (its C{buildProtocol(None)} is used).
    @param clientFactory: the factory of the connecting end.
    @param serverAddress: the C{IPv4Address} the accepting end has.
    @param clientAddress: the C{IPv4Address} the connecting end has.
    @param clock: what the pump advances.
    @return: C{(clientProtocol, serverProtocol, pump)}, as C{iosim.connectedServerAndClient}.
    """
    return iosim.connectedServerAndClient(
        lambda: serverFactory.buildProtocol(None),
        lambda: clientFactory.buildProtocol(None),
        clientTransportFactory=lambda protocol: iosim.FakeTransport(protocol, False, clientAddress, serverAddress),
        serverTransportFactory=lambda protocol: iosim.FakeTransport(protocol, True, serverAddress, clientAddress),
        clock=clock,
    )
