"""
Taking part in someone else's path: the setup as a machine, and the finished path as this node
relays it.

L{SetupMachine} is one node's part in one path under construction, sans-io: it takes the arrays
that arrive on the SETUP link from the previous node, the opening and closing of the links and
the timeout, and answers with L{SetupAction}s. It checks with L{Participation}; on any failed
check it refuses, and its driver stays silent, closes the links and forgets the path (paper
§7.1.1 step 7: nothing is ever reported backwards). L{SetupParticipant} is its thin Twisted
driver. After round 2 an X-node joins the finished path as a L{RelayedPath} (L{relayPath}).
"""

from dataclasses import dataclass
from enum import Enum, auto

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import Contact, describePeer
from phantom.link.ending import Ending, Goes
from phantom.link.interfaces import ILinkHandler
from phantom.path.array import MAX_TRIALS, SetupRejected, parseOfRound
from phantom.path.interfaces import Side
from phantom.path.participant import Participation
from phantom.quota import RateLimits
from phantom.wire.link import Purpose
from phantom.wire.path import SetupArray

log = Logger()


def parseArray(payload, round):
    """@return: the slots of a setup array of C{round}. @raise SetupRejected: it is not one."""
    return list(parseOfRound(SetupArray, payload, round, "array").slots)


def encodeArray(round, slots):
    """The setup array of C{round} holding C{slots}, as sent on a SETUP link."""
    return SetupArray.build({"round": round, "slots": slots})


@implementer(ILinkHandler)
class PathLinkHandler:
    """
    A link's frames go to C{onFrame(payload)}; its closing calls C{onClosed()} (PATH links, and
    a participant's SETUP link to the next node).
    """

    def __init__(self, onFrame, onClosed):
        self._onFrame = onFrame
        self._onClosed = onClosed

    def frameReceived(self, payload):
        self._onFrame(payload)

    def linkClosed(self, reason):
        self._onClosed()


class SetupState(Enum):
    """Where one node's part in a path under construction stands."""

    ROUND1 = auto()
    """Waiting for the round-1 array from the previous node."""
    FORWARDING = auto()
    """Round 1 accepted: opening the SETUP link to the next node to pass it on."""
    ROUND2 = auto()
    """Round 1 passed on: waiting for round 2 over the same links."""
    FINISHED = auto()
    """Round 2 passed on: an X-node joins the finished path, a Y-node forgets it."""
    LEFT = auto()
    """Gave up: refused an array, a link closed, a node further on gave up, or time ran out."""


class SetupAction:
    """What a L{SetupMachine} asks its driver to do."""


@dataclass(frozen=True)
class ConnectNext(SetupAction):
    """Open the SETUP link C{linkId} to C{to}, pinned to its node id."""

    to: Contact
    linkId: bytes


@dataclass(frozen=True)
class SendNext(SetupAction):
    """Send the array of C{round} holding C{slots} to the next node."""

    round: int
    slots: list


@dataclass(frozen=True)
class Rewire(SetupAction):
    """Join the finished path as an X-node (a L{phantom.path.participant.Rewiring})."""

    rewiring: object


@dataclass(frozen=True)
class Leave(SetupAction):
    """Close both SETUP links and forget the path; C{refused} when an array failed a check."""

    why: str
    refused: bool = False


class SetupMachine:
    """
    One node's part in one path under construction, sans-io.

    Events: L{arrayReceived} (on the link from the previous node), L{nextLinkOpened},
    L{nextLinkFailed}, L{linkClosed}, L{timedOut}, L{giveUp}. Each returns a list of
    L{SetupAction}s.

    @param participation: the L{Participation} that checks what arrives.
    @param previous: the SETUP link the round-1 array comes over: its C{linkId},
        C{peer.host} and C{nodeId} are what the package must name.
    @param seconds: C{() -> float}, the time a routing entry is judged by.
    """

    def __init__(self, participation, previous, seconds):
        self.participation = participation
        self._previous = previous
        self._seconds = seconds
        self.state = SetupState.ROUND1
        self._forward = None

    @property
    def over(self):
        """Whether this part is over (finished or left)."""
        return self.state in (SetupState.FINISHED, SetupState.LEFT)

    def arrayReceived(self, payload):
        if self.state == SetupState.ROUND1:
            return self._refusing(self._firstRound, payload)
        if self.state == SetupState.ROUND2:
            return self._refusing(self._secondRound, payload)
        if self.state == SetupState.FORWARDING:
            return self._leave("round 2 came before round 1 was passed on", refused=True)
        return []

    def _refusing(self, step, payload):
        try:
            return step(payload)
        except SetupRejected as e:
            return self._leave(str(e), refused=True)

    def _firstRound(self, payload):
        slots = parseArray(payload, 1)
        link = self._previous
        forward = self.participation.firstRound(slots, link.linkId, link.peer.host, link.nodeId)
        self.state = SetupState.FORWARDING
        self._forward = forward
        return [ConnectNext(forward.to, forward.linkId)]

    def _secondRound(self, payload):
        slots = parseArray(payload, 2)
        forward, rewiring = self.participation.secondRound(slots, int(self._seconds()))
        self.state = SetupState.FINISHED
        actions = [SendNext(2, forward.slots), Leave("round 2 passed on")]
        if rewiring is not None:
            actions.append(Rewire(rewiring))
        return actions

    def nextLinkOpened(self):
        if self.state != SetupState.FORWARDING:
            return []
        self.state = SetupState.ROUND2
        return [SendNext(1, self._forward.slots)]

    def nextLinkFailed(self, why):
        return self._leave(why)

    def linkClosed(self, side):
        """
        The SETUP link on C{side} closed. Before round 2 has passed, that means the previous
        node or one further on gave up, and so does this one: the news travels round the
        circle at once.
        """
        if side == Side.NEXT:
            return self._leave("the next node closed the link")
        return self._leave("the link closed")

    def timedOut(self):
        return self._leave("round 2 never came")

    def giveUp(self, why):
        return self._leave(why)

    def _leave(self, why, refused=False):
        if self.over:
            return []
        self.state = SetupState.LEFT
        return [Leave(why, refused)]


ARRAYS_PER_SECOND = 20.0
"""Setup arrays one peer may send this node a second, on average (twice as many at once)."""
TRIALS_PER_SECOND = 20 * MAX_TRIALS
"""Slots of its arrays this node tries its key on a second for one peer (an X25519 exchange each)."""


class SetupWork:
    """
    The setup work each peer may cost this node: arrays a second, and slots tried (the costly
    part: an X25519 exchange each) a second. An array is taken only while its peer has both to
    spend, enough for L{MAX_TRIALS} trials; each trial is then charged as it is made.

    @param seconds: C{() -> float}, the clock.
    """

    def __init__(self, seconds, arrays=ARRAYS_PER_SECOND, trials=TRIALS_PER_SECOND):
        self.arrays = RateLimits(arrays, 2 * arrays, seconds)
        self.trials = RateLimits(trials, 2 * trials, seconds)

    def admit(self, peer):
        """@return: whether an array from C{peer} (node id) is to be looked at now."""
        return self.trials.has(peer, MAX_TRIALS) and self.arrays.allow(peer)

    def tried(self, peer):
        """One slot of C{peer}'s array was tried."""
        self.trials.charge(peer)


@dataclass(frozen=True)
class ParticipationContext:
    """
    What a node's participants work with.

    @ivar identity: the node's identity (its path-building key and node id).
    @ivar clock: C{IReactorTime}.
    @ivar links: the L{phantom.link.interfaces.ILinkService} the next SETUP link is opened on.
    @ivar timeout: seconds from the first array to the end of round 2.
    @ivar participations: the set of participants at work (each adds and removes itself).
    @ivar rewired: C{rewired(rewiring)}: an X-node joins the finished path (L{relayPath}).
    @ivar work: the L{SetupWork} each peer may cost this node.
    """

    identity: object
    clock: object
    links: object
    timeout: float
    participations: set
    rewired: object
    work: SetupWork = None


@implementer(ILinkHandler)
class SetupParticipant:
    """
    Drives a L{SetupMachine} from the SETUP link the array came over.

    @param link: that link.
    @param context: a L{ParticipationContext}.
    """

    log = Logger()

    def __init__(self, link, context):
        self.context = context
        self._incoming = link
        self._outgoing = None
        self._work = context.work or SetupWork(context.clock.seconds)
        tried = lambda: self._work.tried(link.nodeId)  # noqa: E731
        self.machine = SetupMachine(
            Participation(context.identity.pathBuildingKey, context.identity.nodeId, tried), link, context.clock.seconds
        )
        context.participations.add(self)
        self._timeout = context.clock.callLater(context.timeout, self.timedOut)

    def frameReceived(self, payload):
        if not self.machine.over and not self._work.admit(self._incoming.nodeId):
            self.perform(self.machine.giveUp("its peer's share of setup work is spent"))
            return
        self.perform(self.machine.arrayReceived(payload))

    def linkClosed(self, reason):
        self.perform(self.machine.linkClosed(Side.PREVIOUS))

    def timedOut(self):
        self.perform(self.machine.timedOut())

    def giveUp(self, why):
        """Leave the path under construction: close its links and forget it."""
        self.perform(self.machine.giveUp(why))

    def perform(self, actions):
        """Carry out what the machine asked for, in order."""
        for action in actions:
            if isinstance(action, ConnectNext):
                self.connectNext(self.context.links, action.to, action.linkId)
            elif isinstance(action, SendNext):
                self._outgoing.sendFrame(encodeArray(action.round, action.slots))
            elif isinstance(action, Rewire):
                self.context.rewired(action.rewiring)
            elif isinstance(action, Leave):
                self._leave(action)

    def connectNext(self, links, contact, linkId):
        """Open the SETUP link to the next node on C{links}; its closing is news to the machine."""
        d = links.connect(contact.host, contact.port, Purpose.SETUP, linkId, contact.nodeId)
        d.addCallbacks(self._nextLinkOpened, lambda failure: self.perform(self.machine.nextLinkFailed(failure.getErrorMessage())))

    def _nextLinkOpened(self, link):
        if self.machine.over:
            link.close()
            return
        self._outgoing = link
        link.attach(PathLinkHandler(lambda payload: None, lambda: self.perform(self.machine.linkClosed(Side.NEXT))))
        self.perform(self.machine.nextLinkOpened())

    def _leave(self, action):
        if action.refused:
            self.log.warn("path setup from {peer} refused: {why}", peer=describePeer(self._incoming.peer), why=action.why)
        else:
            self.log.debug("left a path setup: {why}", why=action.why)
        if self._timeout.active():
            self._timeout.cancel()
        self._incoming.close()
        if self._outgoing is not None:
            self._outgoing.close()
        self.context.participations.discard(self)


class RelayedPath(Goes):
    """
    A path this node is an X-node of. When either of its PATH links goes, the node closes the
    other and forgets the path, so a dead hop's news travels to the owner hop by hop.

    @param key: its key in C{relaying}.
    @param rewiring: the L{phantom.path.participant.Rewiring} round 2 gave.
    @param relaying: the table of relayed paths it leaves when torn down.
    @param frameReceived: C{frameReceived(relayed, side, payload)} for frames on its links.
    """

    def __init__(self, key, rewiring, relaying, frameReceived):
        self._key = key
        self._relaying = relaying
        self._frameReceived = frameReceived
        self.terminating = rewiring.terminating
        self.keySeed = rewiring.keySeed
        self.keyCount = rewiring.keyCount
        self.routingEntry = rewiring.routingEntry
        self.contacts = {Side.PREVIOUS: rewiring.expectFrom, Side.NEXT: rewiring.connectTo}
        """The neighbour on each L{Side} as it listens (C{None} where there is none)."""
        self.linkIds = {Side.PREVIOUS: rewiring.expectLinkId, Side.NEXT: rewiring.connectLinkId}
        self.links = {Side.PREVIOUS: None, Side.NEXT: None}
        """The PATH link on each L{Side}, once made."""
        self.ending = Ending()

    @property
    def previous(self):
        """The PATH link on the L{Side.PREVIOUS} side (the one opened to this node), once made."""
        return self.links[Side.PREVIOUS]

    @property
    def next(self):
        """The PATH link on the L{Side.NEXT} side (the one this node opened), once made."""
        return self.links[Side.NEXT]

    def sides(self):
        """The L{Side}s that have a neighbour."""
        return [side for side, contact in self.contacts.items() if contact is not None]

    def linked(self, side, link):
        """Take the link made on C{side} (a L{Side})."""
        if self.gone:
            link.close()
            return
        link.attach(PathLinkHandler(lambda payload: self._frameReceived(self, side, payload), self.tearDown))
        self.links[side] = link

    def close(self):
        """Take the path down here (L{tearDown})."""
        self.tearDown()

    def tearDown(self):
        """Close both links, forget the path, and tell whoever asked."""
        if self.gone:
            return
        for link in self.links.values():
            if link is not None:
                link.close()
        self._relaying.pop(self._key, None)
        self.ending.end()


def relayPath(rewiring, links, relaying, frameReceived, linkTimeout, publish):
    """
    Join the finished path as an X-node: await the PATH link from the new previous node, open
    the one to the new next node, and (T of an entry path) publish the routing entry.

    @param links: the L{phantom.link.interfaces.ILinkService}.
    @param relaying: the table of relayed paths, by their link ids; the new one goes in.
    @param frameReceived: as for L{RelayedPath}.
    @param linkTimeout: how long the previous node has to open its PATH link.
    @param publish: C{publish(routingEntry) -> awaitable}: store the entry in the network database.
    @return: the L{RelayedPath}.
    """
    key = (rewiring.expectLinkId, rewiring.connectLinkId)
    relayed = RelayedPath(key, rewiring, relaying, frameReceived)
    relaying[key] = relayed
    if rewiring.expectFrom is not None:
        d = links.expectLink(rewiring.expectLinkId, rewiring.expectFrom.host, Purpose.PATH, linkTimeout, rewiring.expectFrom.nodeId)
        d.addCallbacks(lambda link: relayed.linked(Side.PREVIOUS, link), lambda f: relayed.tearDown())
    if rewiring.connectTo is not None:
        contact = rewiring.connectTo
        connecting = links.connect(contact.host, contact.port, Purpose.PATH, rewiring.connectLinkId, contact.nodeId)
        connecting.addCallbacks(lambda link: relayed.linked(Side.NEXT, link), lambda f: relayed.tearDown())
    if rewiring.routingEntry is not None:
        published = ensureDeferred(publish(rewiring.routingEntry))
        published.addErrback(lambda f: log.warn("publishing a routing entry failed: {why}", why=f.getErrorMessage()))
    return relayed
