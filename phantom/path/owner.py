"""
The owner's side of one attempt at building a path: the two rounds round the circle, then the
PATH link to x0.

L{OwnerBuild} is the attempt as a machine, sans-io: it takes the opening, failing and closing of
its links, the arrays that come back and the timeout, and answers with L{BuildAction}s: open or
await a link, send an array, arm the timer, close, and in the end L{Built} or L{Failed}. The
attempt uses three links (L{Leg}): the SETUP link out to the first node of the circle, the SETUP
link back from the last, and the finished path's PATH link with x0. L{BuildAttempt} is its thin
Twisted driver. Retrying with other nodes after a failed attempt is the service's business.

In round 1 nobody closes a SETUP link but a node that gave up, so the owner fails at once when
either closes; a node that notices a misbehaviour closes its links and the news travels round
the circle, so no owner waits out a timeout for it.

Where the owner opens the PATH link to x0 (a circle that is not reversed), it does so as an
X-node opens the link to its successor: with round 2, not once round 2 has come all the way
back, which would tell x0 by its late link that its predecessor is the owner. An X-node's
successor gets round 2 after the Y-nodes of the gap between them; x0 gets it after the single Y
at the owner's end. So the owner opens the link at once and sends round 2 after as many hops as
a gap of this path (L{phantom.path.circle.Construction.x0Gap}) has Y-nodes beyond one, each
timed by round 1 (a hop of round 1 opened a link, about L{ROUND_ONE_TRIPS} one-way trips, where
a hop of round 2 takes one).
"""

from dataclasses import dataclass
from enum import Enum, auto

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from phantom.address import Contact
from phantom.errors import PathFailed
from phantom.link.interfaces import ILinkHandler
from phantom.path.array import SetupRejected
from phantom.path.circle import ToX0
from phantom.path.relay import encodeArray, parseArray
from phantom.wire.link import Purpose


class AttemptFailed(PathFailed):
    """
    One attempt failed.

    @ivar gone: the node ids of the nodes known to have caused it (L{Failed.gone}).
    """

    def __init__(self, why, gone=()):
        super().__init__(why)
        self.gone = tuple(gone)


class Leg(Enum):
    """One of the links of a build attempt."""

    OUT = auto()
    """The SETUP link to the first node of the circle; both rounds go out over it."""
    BACK = auto()
    """The SETUP link from the last node of the circle; both rounds come back over it."""
    X0 = auto()
    """The finished path's PATH link with x0."""


class BuildState(Enum):
    """Where an attempt stands."""

    CONNECTING = auto()
    """Opening the link out; the link back is awaited."""
    ROUND1_OUT = auto()
    """The round-1 array is out; the link back is awaited."""
    ROUND1_BACK = auto()
    """The link back is open; the round-1 array is awaited on it."""
    ROUND2 = auto()
    """The round-2 array is out; it is awaited on the link back."""
    LINKING = auto()
    """Both rounds came back as predicted; the PATH link with x0 is being made."""
    BUILT = auto()
    FAILED = auto()


class BuildAction:
    """What an L{OwnerBuild} asks its driver to do."""


@dataclass(frozen=True)
class Connect(BuildAction):
    """Open the link C{leg} to C{to} with C{linkId}, pinned to its node id."""

    leg: Leg
    purpose: Purpose
    to: Contact
    linkId: bytes


@dataclass(frozen=True)
class Await(BuildAction):
    """Await the link C{leg} with C{linkId} from C{host} and node C{nodeId}, for the round timeout at most."""

    leg: Leg
    purpose: Purpose
    linkId: bytes
    host: str
    nodeId: bytes


@dataclass(frozen=True)
class Send(BuildAction):
    """Send the array of C{round} holding C{slots} on the link out."""

    round: int
    slots: list


@dataclass(frozen=True)
class ArmTimer(BuildAction):
    """Call L{OwnerBuild.timedOut} in C{seconds} unless armed again or stopped first."""

    seconds: float


@dataclass(frozen=True)
class StopTimer(BuildAction):
    """The timer is not needed any more."""


@dataclass(frozen=True)
class Close(BuildAction):
    """Close the link C{leg}, or stop waiting for it."""

    leg: Leg


@dataclass(frozen=True)
class Built(BuildAction):
    """The path is built: the link C{X0} is the finished path's."""


@dataclass(frozen=True)
class Failed(BuildAction):
    """
    The attempt failed, for C{why} (the error's name, then what happened); C{gone} holds the
    node ids of the nodes known to have caused it (L{phantom.path.retry}).
    """

    why: str
    gone: tuple = ()


ROUND_ONE_TRIPS = 6
"""
One-way trips a hop of round 1 takes: opening the SETUP link (TCP, TLS 1.3 and the OPEN frame,
about five) and the array (one). A hop of round 2, over links already open, takes one.
"""


@dataclass(frozen=True)
class SendAfter(BuildAction):
    """Call L{OwnerBuild.sendDue} in C{seconds} (the time to send round 2)."""

    seconds: float


ROUND_ONE_LEGS_OPEN = (BuildState.CONNECTING, BuildState.ROUND1_OUT, BuildState.ROUND1_BACK)
OVER = (BuildState.BUILT, BuildState.FAILED)


class OwnerBuild:
    """
    One attempt at building a path, as its owner runs it, sans-io.

    Events: L{start}, L{linkOpened}, L{linkFailed}, L{linkClosed}, L{arrayReceived} (on the
    link back), L{sendDue}, L{timedOut}. Each returns a list of L{BuildAction}s.

    @param construction: the L{phantom.path.circle.Construction} of the attempt.
    @param roundTimeout: seconds each round's array has to come back once awaited.
    @param seconds: C{() -> float}, the clock the phases are timed by.
    @param phases: how long each phase took so far (e.g. planning), by name; the rounds and
        the linking are added as they end.
    """

    def __init__(self, construction, roundTimeout, seconds, phases=None):
        self.construction = construction
        self._roundTimeout = roundTimeout
        self._seconds = seconds
        self.phases = dict(phases or {})
        self.state = BuildState.CONNECTING
        self._open = set()
        self._round = construction.round(1)
        self._x0 = None
        self._sent = False
        self._phaseStarted = None

    def _endPhase(self, name):
        now = self._seconds()
        self.phases[name] = now - self._phaseStarted
        self._phaseStarted = now

    def start(self):
        self._phaseStarted = self._seconds()
        first = self._round
        return [
            Await(Leg.BACK, Purpose.SETUP, first.returnLinkId, first.returnFrom.host, first.returnFrom.nodeId),
            Connect(Leg.OUT, Purpose.SETUP, first.first, first.linkId),
        ]

    def linkOpened(self, leg):
        if self.state in OVER:
            return [Close(leg)]
        self._open.add(leg)
        if leg == Leg.OUT:
            self.state = BuildState.ROUND1_OUT
            actions = [Send(1, self._round.slots)]
            if Leg.BACK in self._open:
                actions += self._awaitFirstArray()
            return actions
        if leg == Leg.BACK and self.state == BuildState.ROUND1_OUT:
            return self._awaitFirstArray()
        if leg == Leg.X0 and self.state == BuildState.LINKING:
            return self._built()
        return []

    def _awaitFirstArray(self):
        self.state = BuildState.ROUND1_BACK
        return [ArmTimer(self._roundTimeout)]

    def arrayReceived(self, payload):
        if self.state == BuildState.ROUND1_BACK:
            return self._checked(1, payload, self._secondRound)
        if self.state == BuildState.ROUND2:
            return self._checked(2, payload, self._link)
        if self.state in (BuildState.CONNECTING, BuildState.ROUND1_OUT):
            return self._fail("SetupRejected: an array came back before round 1 went out")
        return []

    def _checked(self, round, payload, then):
        try:
            if parseArray(payload, round) != self._round.expectedReturn:
                raise SetupRejected(f"the round-{round} array came back other than predicted")
        except SetupRejected as e:
            return self._fail(f"SetupRejected: {e}")
        return then()

    def _secondRound(self):
        self._endPhase("round1")
        self.state = BuildState.ROUND2
        self._round = self.construction.round(2)
        how, x0, linkId = self.construction.ownerLink()
        if how == ToX0.AWAIT:
            self._x0 = Await(Leg.X0, Purpose.PATH, linkId, x0.host, x0.nodeId)
            return [self._x0] + self.sendDue()
        self._x0 = Connect(Leg.X0, Purpose.PATH, x0, linkId)
        hop = self.phases["round1"] / (ROUND_ONE_TRIPS * (len(self.construction.plan.circle) + 1))
        delay = (self.construction.x0Gap() - 1) * hop
        return [self._x0, ArmTimer(self._roundTimeout + delay), SendAfter(delay)]

    def sendDue(self):
        """The time to send round 2 has come."""
        if self.state != BuildState.ROUND2 or self._sent:
            return []
        self._sent = True
        return [Send(2, self._round.slots), ArmTimer(self._roundTimeout)]

    def _link(self):
        self._endPhase("round2")
        self.state = BuildState.LINKING
        if Leg.X0 in self._open:
            return self._built()
        return [StopTimer()]

    def _built(self):
        self._endPhase("link")
        self.state = BuildState.BUILT
        return [StopTimer(), Close(Leg.OUT), Close(Leg.BACK), Built()]

    def linkFailed(self, leg, why):
        """
        Opening or awaiting the link C{leg} failed, for C{why}. x0's link failing once x0 has
        passed round 1 on (the owner opens it then), or once round 2 has come back through x0
        (x0 opens it on round 2), is x0's doing alone: x0 is then known to be gone.
        """
        if leg == Leg.X0 and (self.state == BuildState.LINKING or isinstance(self._x0, Connect)):
            return self._fail(why, gone=(self.construction.plan.adjacent.nodeId,))
        return self._fail(why)

    def linkClosed(self, leg):
        """The SETUP link C{leg} closed."""
        if self.state in ROUND_ONE_LEGS_OPEN and leg == Leg.OUT:
            return self._fail("LinkFailed: a node of the circle gave up")
        if self.state in ROUND_ONE_LEGS_OPEN + (BuildState.ROUND2,) and leg == Leg.BACK:
            return self._fail("LinkFailed: the link closed")
        return []

    def timedOut(self):
        return self._fail(f"TimeoutError: the round-{self._round.round} array did not come back within {self._roundTimeout:g} s")

    def _fail(self, why, gone=()):
        if self.state in OVER:
            return []
        self.state = BuildState.FAILED
        return [StopTimer(), Close(Leg.OUT), Close(Leg.BACK), Close(Leg.X0), Failed(why, gone)]


@implementer(ILinkHandler)
class _LegHandler:
    def __init__(self, attempt, leg):
        self._attempt = attempt
        self._leg = leg

    def frameReceived(self, payload):
        if self._leg == Leg.BACK:
            self._attempt.perform(self._attempt.machine.arrayReceived(payload))

    def linkClosed(self, reason):
        self._attempt.perform(self._attempt.machine.linkClosed(self._leg))


class BuildAttempt:
    """
    Drives an L{OwnerBuild} over a link service.

    @param machine: the L{OwnerBuild}.
    @param links: the L{phantom.link.interfaces.ILinkService}.
    @param clock: C{IReactorTime}.
    @param roundTimeout: how long an awaited link may take to arrive.
    """

    def __init__(self, machine, links, clock, roundTimeout):
        self.machine = machine
        self._links = links
        self._clock = clock
        self._roundTimeout = roundTimeout
        self._open = {}
        self._waits = {}
        self._timer = None
        self._sendTimer = None
        self._result = Deferred()

    def run(self):
        """@return: a Deferred of x0's PATH link. @raise PathFailed: (errback) the attempt failed."""
        self.perform(self.machine.start())
        return self._result

    def perform(self, actions):
        """Carry out what the machine asked for, in order."""
        for action in actions:
            if isinstance(action, Connect):
                to = action.to
                self._wait(action.leg, self._links.connect(to.host, to.port, action.purpose, action.linkId, to.nodeId))
            elif isinstance(action, Await):
                self._wait(action.leg, self._links.expectLink(action.linkId, action.host, action.purpose, self._roundTimeout, action.nodeId))
            elif isinstance(action, Send):
                self._open[Leg.OUT].sendFrame(encodeArray(action.round, action.slots))
            elif isinstance(action, ArmTimer):
                self._stopTimer()
                self._timer = self._clock.callLater(action.seconds, lambda: self.perform(self.machine.timedOut()))
            elif isinstance(action, StopTimer):
                self._stopTimer()
            elif isinstance(action, SendAfter):
                self._sendTimer = self._clock.callLater(action.seconds, lambda: self.perform(self.machine.sendDue()))
            elif isinstance(action, Close):
                self._close(action.leg)
            elif isinstance(action, Built):
                self._stopSendTimer()
                self._result.callback(self._open.pop(Leg.X0))
            elif isinstance(action, Failed):
                self._stopSendTimer()
                self._result.errback(Failure(AttemptFailed(action.why, action.gone)))

    def _wait(self, leg, d):
        self._waits[leg] = d
        d.addCallbacks(lambda link: self._opened(leg, link), lambda failure: self._failed(leg, failure))

    def _opened(self, leg, link):
        self._waits.pop(leg, None)
        self._open[leg] = link
        if leg != Leg.X0:
            # x0's link is left for the path to take, its frames and closing with it.
            link.attach(_LegHandler(self, leg))
        self.perform(self.machine.linkOpened(leg))

    def _failed(self, leg, failure):
        if self._waits.pop(leg, None) is None or failure.check(CancelledError):
            return
        self.perform(self.machine.linkFailed(leg, f"{type(failure.value).__name__}: {failure.value}"))

    def _close(self, leg):
        link = self._open.pop(leg, None)
        if link is not None:
            link.close()
        waiting = self._waits.pop(leg, None)
        if waiting is not None:
            waiting.cancel()

    def _stopSendTimer(self):
        if self._sendTimer is not None and self._sendTimer.active():
            self._sendTimer.cancel()
        self._sendTimer = None

    def _stopTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
