"""
Routing paths over links: building one as its owner, taking part in others' as an X- or Y-node.

The owner samples nodes from the network database, plans the circle, and sends both rounds'
arrays round it over SETUP links, checking each array that comes back against the one predicted.
Then the finished path's links are made (PATH links): the owner and x0, and each X and the next.
A participant runs the checks of L{phantom.path.participant} on whatever reaches it; on any
failure it stays silent, closes its links and forgets the path, and the owner, hearing nothing,
times out and tries again with other nodes.
"""

import random
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phantom.address import Contact, describePeer
from phantom.config import PathSettings
from phantom.errors import LinkFailed, LinkTimeout, PathFailed
from phantom.link.interfaces import ILinkHandler
from phantom.link.ending import Ending
from phantom.link.queue import FrameQueue
from phantom.link.service import CloseAtOnce
from phantom.netdb.records import RoutingEntry
from phantom.path.array import SetupRejected
from phantom.path.circle import Construction
from phantom.path.interfaces import PathKind, Side
from phantom.path.participant import Participation
from phantom.path.plan import ENTRY, NotEnoughNetworks, NotEnoughNodes, PathShape, planPath
from phantom.path.pool import NodePool
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.dht import Table
from phantom.wire.link import Purpose
from phantom.wire.path import SetupArray


@implementer(ILinkHandler)
class PathLinkHandler:
    """A PATH link's frames go to C{onFrame(payload)}; its closing calls C{onClosed()}."""

    def __init__(self, onFrame, onClosed):
        self._onFrame = onFrame
        self._onClosed = onClosed

    def frameReceived(self, payload):
        self._onFrame(payload)

    def linkClosed(self, reason):
        self._onClosed()


@dataclass
class Path:
    """A finished routing path this node owns."""

    kind: str
    plan: object
    link: object
    """The PATH link to x0."""
    builtAt: float
    phases: dict
    apAddress: bytes = b""
    keySeeds: dict = field(default_factory=dict)
    shape: object = None
    failures: list = field(default_factory=list)
    """Why each attempt before the one that built this path failed."""
    keyCount: int = 0
    """How many keys each X-node's key set holds."""
    ending: Ending = field(default_factory=Ending)
    """Ends when the path's link to x0 closes."""

    @property
    def nodes(self):
        """The X-nodes from x0 to T."""
        return self.plan.xNodes

    @property
    def gone(self):
        """Whether the path's link to x0 has closed."""
        return self.ending.ended

    def whenGone(self):
        """@return: a Deferred that fires when the path's link to x0 closes."""
        return self.ending.whenEnded()

    def onGone(self, f):
        """Call C{f()} when the path goes. @return: a Deferred whose C{cancel()} takes that back."""
        return self.ending.onEnd(f)

    def close(self):
        """Close the link to x0: the hops forget the path one after the other."""
        self.link.close()


class RelayedPath:
    """
    A path this node is an X-node of. When either of its PATH links goes, the node closes the
    other and forgets the path, so a dead hop's news travels to the owner hop by hop.

    @ivar previous: the PATH link on the owner's side (towards the owner), once made.
    @ivar next: the PATH link on T's side, once made.
    """

    def __init__(self, service, key, rewiring):
        self._service = service
        self._key = key
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
        """The PATH link towards the owner, once made."""
        return self.links[Side.PREVIOUS]

    @property
    def next(self):
        """The PATH link towards T, once made."""
        return self.links[Side.NEXT]

    @property
    def gone(self):
        """Whether the path has been torn down here."""
        return self.ending.ended

    def whenGone(self):
        """@return: a Deferred that fires when the path is torn down here."""
        return self.ending.whenEnded()

    def onGone(self, f):
        """Call C{f()} when the path goes. @return: a Deferred whose C{cancel()} takes that back."""
        return self.ending.onEnd(f)

    def sides(self):
        """The L{Side}s that have a neighbour."""
        return [side for side, contact in self.contacts.items() if contact is not None]

    def linked(self, side, link):
        """Take the link made on C{side} (a L{Side})."""
        if self.gone:
            link.close()
            return
        link.attach(PathLinkHandler(lambda payload: self._service.pathFrameReceived(self, side, payload), self.tearDown))
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
        self._service.relaying.pop(self._key, None)
        self.ending.end()


def unlessAborted(d, aborts):
    """
    C{d}'s outcome, unless one of the abort functions this adds to C{aborts} is called first:
    then a L{LinkFailed} failure, and C{d} is cancelled.
    """
    outcome = Deferred()

    def settle(result):
        if not outcome.called:
            outcome.callback(result)

    def abort():
        settle(Failure(LinkFailed("a node of the circle gave up")))
        d.cancel()

    aborts.append(abort)
    d.addBoth(settle)
    return outcome


def parseArray(payload, round):
    """@raise SetupRejected: not a setup array of C{round}."""
    try:
        array = parseStrict(SetupArray, payload)
    except ProtocolError as e:
        raise SetupRejected(str(e)) from e
    if array.round != round:
        raise SetupRejected(f"a round-{array.round} array where round {round} was due")
    return list(array.slots)


class PathService(Service):
    """
    Builds this node's paths and takes part in other nodes' paths.

    @param identity: the node's identity (path-building and routing keys).
    @param links: the node's L{phantom.link.service.LinkService}.
    @param dht: the node's L{phantom.netdb.service.DhtNode}: node sampling, routing entries.
    @param clock: C{IReactorTime}.
    @param settings: L{PathSettings}.
    @param random: the secure source of every random choice (C{SystemRandom} in production).
    @param frameReceiver: the L{IPathFrameReceiver} that frames on PATH links go to (the tunnel
        service); without one, a frame on a PATH link closes its path.
    """

    log = Logger()

    def __init__(self, identity, links, dht, clock, settings=PathSettings(), random=random.SystemRandom(), frameReceiver=None):
        self.identity = identity
        self._links = links
        self._dht = dht
        self._clock = clock
        self.settings = settings
        self._random = random
        self.paths = []
        self.relaying = {}
        self.participations = set()
        self._renewal = None
        self.replacing = {}
        """Path kind to the Deferred of a replacement being built: it fires with the new path, or C{None}."""
        self._frameReceiver = frameReceiver
        self._exitShape = None
        self._waitingForExit = []
        self.pool = NodePool(
            lambda count, exclude: dht.sampleNodes(count, exclude=exclude), clock, random, settings.poolSize, settings.poolRefresh
        )
        links.registerPurpose(Purpose.SETUP, self._setupLinkArrived)
        links.parkEarlyLinks(Purpose.PATH, 2 * settings.roundTimeout)

    def startService(self):
        super().startService()
        self.pool.start()
        self._renewal = LoopingCall(self.renewDue)
        self._renewal.clock = self._clock
        self._renewal.start(min(10.0, self.settings.renewAhead / 2), now=False)

    # Keeping paths alive

    def renewDue(self):
        """Replace every path whose lifetime ends within C{renewAhead} seconds."""
        now = self._clock.seconds()
        for path in list(self.paths):
            if now - path.builtAt >= self.settings.lifetime - self.settings.renewAhead:
                self._replace(path, "its lifetime is ending")

    def retire(self, path):
        """Take C{path} down, with no replacement: its hops forget it one after the other."""
        if path in self.paths:
            self.paths.remove(path)
        path.link.close()

    def pathFrameReceived(self, path, side, payload):
        """
        A frame arrived on a PATH link: hand it to the frame receiver, or close the path if
        there is none.

        @param path: the owned L{Path} or the L{RelayedPath} the link belongs to.
        @param side: for a relayed path, the L{Side} the frame came from; C{None} for an owned one.
        """
        if self._frameReceiver is None:
            self.log.warn("a frame on a PATH link, and no tunnel service: closing the path")
            path.close()
            return
        self._frameReceiver.pathFrameReceived(path, side, payload)

    def _pathClosed(self, path):
        path.ending.end()
        self._pathLost(path)

    # What the tunnels of this node ask of its paths

    def exitPath(self):
        """
        One of this node's exit paths, chosen at random; if it has none, the one being built to
        replace a lost one, or else one built now (of the shape of the last it handed out, so
        that a path lost is replaced by one like it).

        @return: a Deferred of the L{Path}. @raise PathFailed: (errback) none could be built.
        """
        return Deferred.fromCoroutine(self._exitPath())

    async def _exitPath(self):
        exits = [path for path in self.paths if path.kind == PathKind.EXIT]
        if exits:
            path = self._random.choice(exits)
            self._exitShape = path.shape
            return path
        replacing = self.replacing.get(PathKind.EXIT)
        if replacing is not None:
            # A lost exit path is being replaced: wait for that one rather than build another.
            replaced = Deferred()
            replacing.addBoth(lambda result: (replaced.callback(result), result)[1])
            path = await replaced
            if path is not None and path in self.paths:
                return path
        waiting = Deferred()
        self._waitingForExit.append(waiting)
        if len(self._waitingForExit) == 1:
            Deferred.fromCoroutine(self.build(PathKind.EXIT, self._exitShape)).addBoth(self._exitBuilt)
        return await waiting

    def _exitBuilt(self, result):
        waiting, self._waitingForExit = self._waitingForExit, []
        for d in waiting:
            d.callback(result)

    def entryPathFor(self, apAddress):
        """
        The path this node is the entry node (T) of for C{apAddress}, linked and not gone, or
        C{None}.
        """
        for relayed in self.relaying.values():
            if relayed.routingEntry is not None and relayed.routingEntry.apAddress == apAddress and not relayed.gone:
                sides = relayed.sides()
                if len(sides) == 1 and relayed.links[sides[0]] is not None:
                    return relayed
        return None

    @property
    def isEntryNode(self):
        """Whether this node is the entry node of any path."""
        return any(relayed.routingEntry is not None for relayed in self.relaying.values())

    def _pathLost(self, path):
        if path in self.paths:
            self._replace(path, "a hop of it is gone")

    def _replace(self, old, why):
        """Build a path like C{old} in the background, then retire C{old}."""
        if old not in self.paths:
            return
        self.paths.remove(old)
        if not self.running:
            old.link.close()
            return
        self.log.info("replacing an {kind} path: {why}", kind=old.kind, why=why)

        def retire(result):
            old.link.close()
            return result

        def finished(result):
            if self.replacing.get(old.kind) is d:
                del self.replacing[old.kind]
            return result

        d = Deferred.fromCoroutine(self.build(old.kind, old.shape))
        self.replacing[old.kind] = d
        d.addBoth(finished)
        d.addBoth(retire)
        d.addErrback(lambda failure: self.log.warn("no replacement path: {why}", why=failure.getErrorMessage()))

    # Owner

    async def build(self, kind, shape=None, candidates=None):
        """
        Build a path, trying again with other nodes after a failed attempt.

        @param kind: C{"exit"} or C{"entry"}.
        @param shape: a L{PathShape}; the configured one if not given.
        @param candidates: node records to plan the first attempt from; sampled from the network
            database if not given (and for every later attempt).
        @return: the finished L{Path}.
        @raise PathFailed: every attempt failed.
        """
        shape = shape or PathShape(self.settings.x, self.settings.y)
        excluded = set()
        reasons = []
        for attempt in range(self.settings.attempts):
            construction = None
            try:
                construction = await self._plan(kind, shape, excluded, candidates if attempt == 0 else None)
                path = await self._buildOnce(construction)
            except (PathFailed, NotEnoughNodes) as e:
                reasons.append(str(e))
                if construction is not None:
                    failed = [hop.record.nodeId for hop in construction.plan.circle]
                    excluded.update(failed)
                    self.pool.discard(failed)
                continue
            path.shape = shape
            path.failures = reasons
            path.keyCount = construction.keyCount
            path.link.attach(PathLinkHandler(lambda payload: self.pathFrameReceived(path, None, payload), lambda: self._pathClosed(path)))
            self.paths.append(path)
            self.log.info("built an {kind} path in {seconds:.3f} s", kind=kind, seconds=sum(path.phases.values()))
            return path
        raise PathFailed(f"no {kind} path after {self.settings.attempts} attempts: " + "; ".join(reasons))

    async def _plan(self, kind, shape, excluded, candidates=None):
        started = self._clock.seconds()
        if candidates is None:
            candidates = await self.pool.draw(shape.size + 8, exclude=excluded | {self.identity.nodeId}, atLeast=shape.size)
        diversity = self.settings.diversity != "off"
        try:
            plan = planPath(shape, kind, candidates, self._random, diversity=diversity, exclude=excluded)
        except NotEnoughNetworks:
            if self.settings.diversity != "auto":
                raise
            self.log.warn("too few networks for X-nodes in distinct /16s or /48s: building without the diversity rule")
            plan = planPath(shape, kind, candidates, self._random, diversity=False, exclude=excluded)
        entry, apAddress = b"", bytes(16)
        if kind == ENTRY:
            terminating = plan.terminating
            now = int(self._clock.seconds())
            routing = RoutingEntry.create(
                self.identity.routingKey, now, now + int(self.settings.lifetime), [Contact(terminating.host, terminating.port, terminating.nodeId)], now
            )
            entry, apAddress = routing.encoded, routing.apAddress
        owner = Contact(*self._links.address, self.identity.nodeId)
        construction = Construction(plan, owner, self._random, routingEntry=entry, apAddress=apAddress)
        construction.phases = {"plan": self._clock.seconds() - started}
        return construction

    async def _buildOnce(self, construction):
        phases = construction.phases
        links = []
        awaitingX0 = None
        try:
            started = self._clock.seconds()
            first = construction.round(1)
            returning = self._links.expectLink(first.returnLinkId, first.returnFrom.host, Purpose.SETUP, self.settings.roundTimeout)
            try:
                out = await self._links.connect(first.first.host, first.first.port, Purpose.SETUP, first.linkId, first.first.nodeId)
            except Exception:
                returning.cancel()
                returning.addErrback(lambda f: None)
                raise
            links.append(out)
            # In round 1 nobody closes a SETUP link but a node that gave up: fail at once.
            aborts = []
            out.attach(FrameQueue(out, lambda: [abort() for abort in list(aborts)]))
            out.sendFrame(SetupArray.build({"round": 1, "slots": first.slots}))
            inbound = await unlessAborted(returning, aborts)
            links.append(inbound)
            back = FrameQueue(inbound)
            inbound.attach(back)
            await unlessAborted(Deferred.fromCoroutine(self._expectArray(back, 1, first.expectedReturn)), aborts)
            aborts.clear()
            phases["round1"] = self._clock.seconds() - started

            started = self._clock.seconds()
            second = construction.round(2)
            how, x0, linkId = construction.ownerLink()
            if how == "await":
                awaitingX0 = self._links.expectLink(linkId, x0.host, Purpose.PATH, self.settings.roundTimeout)
            out.sendFrame(SetupArray.build({"round": 2, "slots": second.slots}))
            await self._expectArray(back, 2, second.expectedReturn)
            phases["round2"] = self._clock.seconds() - started

            started = self._clock.seconds()
            if how == "connect":
                pathLink = await self.connectPath(x0, linkId)
            else:
                pathLink = await awaitingX0
            phases["link"] = self._clock.seconds() - started
        except (LinkFailed, LinkTimeout, TimeoutError, SetupRejected) as e:
            raise PathFailed(f"{type(e).__name__}: {e}") from e
        finally:
            for link in links:
                link.close()
            if awaitingX0 is not None and not awaitingX0.called:
                awaitingX0.addErrback(lambda failure: None)
                awaitingX0.cancel()
        return Path(
            construction.plan.kind,
            construction.plan,
            pathLink,
            self._clock.seconds(),
            phases,
            construction.apAddress,
            construction.keySeeds,
        )

    async def _expectArray(self, queue, round, expected):
        payload = await queue.next().addTimeout(self.settings.roundTimeout, self._clock)
        if parseArray(payload, round) != expected:
            raise SetupRejected(f"the round-{round} array came back other than predicted")

    async def connectPath(self, contact, linkId):
        """Open the PATH link C{linkId} to C{contact}; the far side takes it even if it arrives early."""
        return await self._links.connect(contact.host, contact.port, Purpose.PATH, linkId, contact.nodeId)

    # Participant

    @property
    def helping(self):
        """How many paths under construction this node is taking part in."""
        return len(self.participations)

    def _setupLinkArrived(self, link):
        if len(self.participations) >= self.settings.maxParticipations:
            self.log.info("refused a path setup: already in {count} under construction", count=len(self.participations))
            return CloseAtOnce(link)
        return SetupParticipation(self, link)

    def stopService(self):
        super().stopService()
        self.pool.stop()
        if self._renewal is not None and self._renewal.running:
            self._renewal.stop()
        for participation in list(self.participations):
            participation.giveUp("the node is stopping")
        for path in list(self.paths):
            self.paths.remove(path)
            path.link.close()
        for relayed in list(self.relaying.values()):
            relayed.tearDown()


@implementer(ILinkHandler)
class SetupParticipation:
    """This node's part in one path under construction, from the SETUP link the array came over."""

    log = Logger()

    def __init__(self, service, link):
        self.service = service
        self._incoming = link
        self._outgoing = None
        self._participation = Participation(service.identity.pathBuildingKey, service.identity.nodeId)
        self._round = 1
        self._done = False
        service.participations.add(self)
        self._timeout = service._clock.callLater(2 * service.settings.roundTimeout, self.giveUp, "round 2 never came")

    def frameReceived(self, payload):
        try:
            slots = parseArray(payload, self._round)
            if self._round == 1:
                self._round = 2
                forward = self._participation.firstRound(slots, self._incoming.linkId, self._incoming.peer.host, self._incoming.nodeId)
                Deferred.fromCoroutine(self.forwardFirst(forward)).addErrback(self._failed)
            else:
                self._round = 3
                forward, rewiring = self._participation.secondRound(slots, int(self.service._clock.seconds()))
                self.forwardSecond(forward)
                self._finish(rewiring)
        except SetupRejected as e:
            self.log.warn(
                "path setup from {peer} refused: {why}", peer=describePeer(self._incoming.peer), why=str(e)
            )
            self.giveUp(str(e))

    async def forwardFirst(self, forward):
        """Open the SETUP link to the next node and send it the round-1 array."""
        self._outgoing = await self.connectSetup(self.service._links, forward.to, forward.linkId)
        if self._done:
            self._outgoing.close()
            return
        self._outgoing.sendFrame(SetupArray.build({"round": 1, "slots": forward.slots}))

    def forwardSecond(self, forward):
        """Send the round-2 array on over the round-1 link to the next node."""
        self._outgoing.sendFrame(SetupArray.build({"round": 2, "slots": forward.slots}))

    async def connectSetup(self, links, contact, linkId):
        """
        A SETUP link to C{contact}, pinned to its node id. Its closing before round 2 has passed
        means a node further on gave up, and so does this one: the news reaches the owner at once.
        """
        link = await links.connect(contact.host, contact.port, Purpose.SETUP, linkId, contact.nodeId)
        link.attach(FrameQueue(link, lambda: self._round < 3 and self.giveUp("the next node closed the link")))
        return link

    def _failed(self, failure):
        self.giveUp(failure.getErrorMessage())

    def _finish(self, rewiring):
        self._end()
        if rewiring is None:
            return  # a Y-node: forget the path
        service = self.service
        key = (rewiring.expectLinkId, rewiring.connectLinkId)
        relayed = RelayedPath(service, key, rewiring)
        service.relaying[key] = relayed
        if rewiring.expectFrom is not None:
            d = service._links.expectLink(rewiring.expectLinkId, rewiring.expectFrom.host, Purpose.PATH, 2 * service.settings.roundTimeout)
            d.addCallbacks(lambda link: relayed.linked(Side.PREVIOUS, link), lambda f: relayed.tearDown())
        if rewiring.connectTo is not None:
            connecting = Deferred.fromCoroutine(service.connectPath(rewiring.connectTo, rewiring.connectLinkId))
            connecting.addCallbacks(lambda link: relayed.linked(Side.NEXT, link), lambda f: relayed.tearDown())
        if rewiring.routingEntry is not None:
            entry = rewiring.routingEntry
            published = Deferred.fromCoroutine(service._dht.storeRecord(Table.ROUTE, entry.key, entry.encoded))
            published.addErrback(lambda f: self.log.warn("publishing a routing entry failed: {why}", why=f.getErrorMessage()))

    def giveUp(self, why):
        """Leave the path under construction: close its links and forget it."""
        if not self._done:
            self.log.debug("left a path setup: {why}", why=why)
            self._end()

    def _end(self):
        if self._done:
            return
        self._done = True
        if self._timeout.active():
            self._timeout.cancel()
        self._incoming.close()
        if self._outgoing is not None:
            self._outgoing.close()
        self.service.participations.discard(self)

    def linkClosed(self, reason):
        if self._round < 3:
            self.giveUp("the link closed")
