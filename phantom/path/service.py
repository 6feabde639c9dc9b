"""
Routing paths over links: the service that builds this node's paths and takes part in others'.

The owner draws nodes from its pool (sampled from the network database), plans the circle, and
runs each attempt as an L{OwnerBuild} (L{phantom.path.owner}); a failed attempt is retried
without its nodes, but for its ends, kept for a few attempts (L{phantom.path.retry}). A
participant is a L{SetupParticipant} (L{phantom.path.relay}); an X-node then relays the
finished path as a L{RelayedPath}. The service keeps the tables (owned paths, relayed paths,
participations), renews paths before their lifetime ends and replaces lost ones. Renewals and
rebuilds happen at random moments, and an entry path's routing entry dates it to no less than
ten minutes (L{phantom.path.entries}).
"""

import math
import random
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from phantom.address import Contact
from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.link.ending import Ending, Goes
from phantom.link.quota import addressPrefix
from phantom.link.service import CloseAtOnce
from phantom.netdb.records import RoutingEntry
from phantom.path.circle import Construction
from phantom.path.entries import EntryFloor, coarseExpiry, publicationDelay, renewalTime
from phantom.path.interfaces import PathKind
from phantom.path.owner import AttemptFailed, BuildAttempt, OwnerBuild
from phantom.path.plan import NotEnoughNetworks, NotEnoughNodes, PathShape, planPath
from phantom.path.pool import NodePool
from phantom.path.relay import ParticipationContext, PathLinkHandler, RelayedPath, SetupParticipant, SetupWork, relayPath
from phantom.path.retry import Retries
from phantom.quota import Shares
from phantom.upkeep import Upkeep
from phantom.wire.dht import MAX_ENTRY_NODES, Table
from phantom.wire.link import Purpose

__all__ = ["Path", "PathService", "RelayedPath"]

PEER_SHARES = 4
"""One address (or node) may fill at most this fraction (1/PEER_SHARES) of a node's participations."""


@dataclass
class Path(Goes):
    """A finished routing path this node owns."""

    kind: PathKind
    plan: object
    link: object
    """The PATH link to x0."""
    builtAt: float
    phases: dict
    """How long each phase of the build took (plan, round1, round2, link), in seconds."""
    apAddress: bytes = b""
    keySeeds: dict = field(default_factory=dict)
    shape: object = None
    failures: list = field(default_factory=list)
    """Why each attempt before the one that built this path failed."""
    keyCount: int = 0
    """How many keys each X-node's key set holds."""
    ending: Ending = field(default_factory=Ending)
    """Ends when the path's link to x0 closes."""
    renewAt: float = math.inf
    """When its successor is built."""
    retireAt: float = None
    """When it is closed once its successor is built: C{None} at once, or (an entry path with a
    coarse entry) when its entry expires."""

    @property
    def nodes(self):
        """The X-nodes from x0 to T."""
        return self.plan.xNodes

    def close(self):
        """Close the link to x0: the hops forget the path one after the other."""
        self.link.close()


class PathService(Service):
    """
    Builds this node's paths and takes part in other nodes' paths.

    @param identity: the node's identity (path-building and routing keys).
    @param links: the node's L{phantom.link.interfaces.ILinkService}.
    @param dht: the node's network database (L{phantom.netdb.service.DhtNode}): C{sampleNodes}
        for the node pool, C{storeRecord} for the routing entries this node publishes as T,
        C{unanswered} for the nodes its own requests found gone at the address their records give
        (never chosen for a path).
    @param clock: C{IReactorTime}.
    @param settings: L{PathSettings}.
    @param random: the secure source of every random choice (C{SystemRandom} in production).
    @param frameReceiver: the L{IPathFrameReceiver} that frames on PATH links go to (the tunnel
        service); without one, a frame on a PATH link closes its path.
    @param participant: C{participant(link, context) -> ILinkHandler}, what takes part in a path
        under construction from the SETUP link its array came over, given a
        L{ParticipationContext}; L{SetupParticipant} unless a test gives another.
    @param entryFloor: the L{EntryFloor} of this node's routing entries (one kept in memory if
        not given; a node keeps it in its data directory).
    """

    log = Logger()

    def __init__(
        self,
        identity,
        links,
        dht,
        clock,
        settings=PathSettings(),
        random=random.SystemRandom(),
        frameReceiver=None,
        participant=SetupParticipant,
        entryFloor=None,
    ):
        self.identity = identity
        self._publications = set()
        self._rebuildDelays = set()
        self._retiring = {}
        """Paths kept until their entries expire, though their successors are built, with their timers, by id."""
        self._links = links
        self._dht = dht
        self._clock = clock
        self.settings = settings
        self._random = random
        self.paths = []
        self.relaying = {}
        self.participations = set()
        self._fromPeer = Shares(
            settings.maxParticipations, self.peerShare, self.peerShare,
            onEvicted=lambda participant: participant.giveUp("its place went to a node from an address holding fewer"),
        )
        """The participations, each charged to the address (prefix) and the node id its SETUP link came from."""
        self.keepEnds = None
        """How many failed attempts in a row one pair of ends is kept (L{Retries}); C{None}: as
        many as the failed attempt's circle calls for (L{phantom.path.retry.keepEndsFor})."""
        self._retries = {}
        self._entryEnds = {}
        """The T of each entry path's attempt under way, by build: named in the entries of the others."""
        self._entryFloor = entryFloor or EntryFloor()
        self.replacing = {}
        """Path kind to the Deferred of a replacement being built: it fires with the new path, or C{None}."""
        self._frameReceiver = frameReceiver
        self._participant = participant
        self._participation = ParticipationContext(
            identity, clock, links, 2 * settings.roundTimeout, self.participations, self._relay, SetupWork(clock.seconds)
        )
        self._exitShape = None
        self._waitingForExit = []
        self._builtWatchers = []
        self._finishedWatchers = []
        self._replacedHolds = []
        self.draining = []
        """Replaced paths kept open, no longer handed out, while what runs over them finishes (L{holdReplaced})."""
        self.pool = NodePool(
            lambda count, exclude: dht.sampleNodes(count, exclude=exclude), clock, random, settings.poolSize, settings.poolRefresh
        )
        self._renewal = Upkeep(min(10.0, settings.renewAhead / 2), self.renewDue, clock, "renewing paths")
        links.registerPurpose(Purpose.SETUP, self._setupLinkArrived)
        links.parkEarlyLinks(Purpose.PATH, 2 * settings.roundTimeout)

    def startService(self):
        super().startService()
        self.pool.start()
        self._renewal.startService()

    def stopService(self):
        super().stopService()
        self.pool.stop()
        if self._renewal.running:
            self._renewal.stopService()
        for call in list(self._publications):
            call.cancel()
        self._publications.clear()
        for waiting in list(self._rebuildDelays):
            waiting.cancel()
        for path, call in list(self._retiring.values()):
            call.cancel()
            self._retired(path)
        for participation in list(self.participations):
            participation.giveUp("the node is stopping")
        for path in list(self.paths):
            self.paths.remove(path)
            path.link.close()
        for path in list(self.draining):
            path.link.close()
        for relayed in list(self.relaying.values()):
            relayed.tearDown()

    # Keeping paths alive

    def renewDue(self):
        """Replace every path whose renewal is due."""
        now = self._clock.seconds()
        for path in list(self.paths):
            if now >= path.renewAt:
                self._replace(path, "its lifetime is ending", keepUntil=path.retireAt)

    def _scheduleRenewal(self, path, expires):
        """Set when C{path} is renewed and retired: at random, and for a coarse entry by its expiry."""
        if path.kind == PathKind.ENTRY and self.settings.coarseEntries:
            path.renewAt = renewalTime(expires, self._random)
            path.retireAt = expires
        else:
            ahead = self.settings.renewAhead
            path.renewAt = path.builtAt + self.settings.lifetime - ahead - self._random.uniform(0, ahead)

    def _retired(self, path):
        """A path kept after its successor was built (an entry path with a coarse entry) goes, once no tunnel holds it."""
        self._retiring.pop(id(path), None)
        self._release(path)

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
        if path in self.paths:
            self._replace(path, "a hop of it is gone", delay=self._random.uniform(0, self.settings.rebuildJitter))

    def _replace(self, old, why, delay=0.0, keepUntil=None):
        """
        Build a path like C{old} in the background, then retire C{old}.

        @param delay: seconds to wait before building.
        @param keepUntil: when to retire C{old} if later than when its successor is built.
        """
        if old not in self.paths:
            return
        self.paths.remove(old)
        if not self.running:
            old.link.close()
            return
        self.log.info("replacing an {kind} path: {why}", kind=old.kind, why=why)

        def retire(result):
            wait = (keepUntil or 0) - self._clock.seconds()
            if wait > 0 and self.running:
                self._retiring[id(old)] = (old, self._clock.callLater(wait, self._retired, old))
            else:
                self._release(old)
            return result

        async def rebuild():
            if delay > 0:
                waiting = deferLater(self._clock, delay)
                self._rebuildDelays.add(waiting)
                try:
                    await waiting
                except CancelledError:
                    return None
                finally:
                    self._rebuildDelays.discard(waiting)
            return await self.build(old.kind, old.shape)

        def finished(result):
            if self.replacing.get(old.kind) is d:
                del self.replacing[old.kind]
            return result

        d = Deferred.fromCoroutine(rebuild())
        self.replacing[old.kind] = d
        d.addBoth(finished)
        d.addBoth(retire)
        d.addErrback(lambda failure: self.log.warn("no replacement path: {why}", why=failure.getErrorMessage()))

    def _release(self, path):
        """Close a replaced path once every hold on it is released, and C{lifetime} seconds after at most."""
        holds = [d for d in (hold(path) for hold in self._replacedHolds) if d is not None]
        if not holds or not self.running:
            path.link.close()
            return
        self.draining.append(path)

        def close(result):
            self.draining = [other for other in self.draining if other is not path]
            path.link.close()

        released = DeferredList(holds, consumeErrors=True)
        released.addTimeout(self.settings.lifetime, self._clock)
        released.addBoth(close)

    # What the tunnels of this node ask of its paths

    def holdReplaced(self, hold):
        """
        Keep a path that has been replaced open, though no longer handed out, until the Deferred
        C{hold(path)} fires (C{None}: nothing to wait for), and C{lifetime} seconds at most: what
        runs over it may finish there.
        """
        self._replacedHolds.append(hold)

    def onPathBuilt(self, f):
        """
        Call C{f(path)} with every path this node builds, as soon as it is built: before whoever
        waits for it gets it.
        """
        self._builtWatchers.append(f)

    def onBuildFinished(self, f):
        """
        Call C{f(kind, built, seconds)} when a L{build} ends: its L{PathKind}, whether it built a
        path, and how long it took, every attempt included.
        """
        self._finishedWatchers.append(f)

    def _buildFinished(self, kind, built, started):
        for watcher in self._finishedWatchers:
            watcher(kind, built, self._clock.seconds() - started)

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

    # Owner

    async def build(self, kind, shape=None, candidates=None):
        """
        Build a path, trying again with other nodes after a failed attempt.

        @param kind: a L{PathKind}.
        @param shape: a L{PathShape}; the configured one if not given.
        @param candidates: node records to plan the first attempt from; sampled from the network
            database if not given (and for every later attempt).
        @return: the finished L{Path}.
        @raise PathFailed: every attempt failed.
        """
        build = object()
        try:
            return await self._build(PathKind(kind), shape or PathShape(self.settings.x, self.settings.y), candidates, build)
        finally:
            self._entryEnds.pop(build, None)

    async def _build(self, kind, shape, candidates, build):
        retries = self._retries.setdefault(kind, Retries(self.keepEnds))
        excluded = set()
        failures = []
        began = self._clock.seconds()
        for attempt in range(self.settings.attempts):
            construction = None
            try:
                started = self._clock.seconds()
                retries.gone([record.nodeId for record in retries.ends or () if record is not None and self._gone(record)])
                construction = await self._plan(kind, shape, excluded, retries.ends, candidates if attempt == 0 else None, build)
                planned = {"plan": self._clock.seconds() - started}
                machine = OwnerBuild(construction, self.settings.roundTimeout, self._clock.seconds, planned)
                link = await BuildAttempt(machine, self._links, self._clock, self.settings.roundTimeout).run()
            except (PathFailed, NotEnoughNodes) as e:
                self._entryEnds.pop(build, None)
                failures.append(str(e))
                if construction is not None:
                    plan = construction.plan
                    gone = set(e.gone) if isinstance(e, AttemptFailed) else set()
                    gone.update(r.nodeId for r in (plan.adjacent, plan.terminating) if self._gone(r))
                    failed = retries.failed(plan, gone)
                    excluded.update(failed)
                    self.pool.discard(failed)
                else:
                    retries.cannotKeepEnds()
                continue
            retries.succeeded()
            path = Path(
                kind,
                construction.plan,
                link,
                self._clock.seconds(),
                machine.phases,
                construction.apAddress,
                construction.keySeeds,
                shape,
                failures,
                construction.keyCount,
            )
            self._scheduleRenewal(path, construction.expires)
            link.attach(PathLinkHandler(lambda payload: self.pathFrameReceived(path, None, payload), lambda: self._pathClosed(path)))
            self.paths.append(path)
            for watcher in self._builtWatchers:
                watcher(path)
            self._buildFinished(kind, True, began)
            self.log.info("built an {kind} path in {seconds:.3f} s", kind=kind, seconds=sum(path.phases.values()))
            return path
        self._buildFinished(kind, False, began)
        raise PathFailed(f"no {kind} path after {self.settings.attempts} attempts: " + "; ".join(failures))

    async def _plan(self, kind, shape, excluded, ends, candidates=None, build=None):
        if candidates is None:
            # Nodes this node's own requests found gone are not drawn (candidates given are used as given).
            self.pool.discard([nodeId for nodeId, record in self.pool.records.items() if self._gone(record)])
            candidates = await self.pool.draw(shape.size + 8, exclude=excluded | {self.identity.nodeId}, atLeast=shape.size)
            candidates = [record for record in candidates if not self._gone(record)]
        if self.settings.diversity == "off":
            self.log.info("building an {kind} path without the X-node diversity rule: [path] diversity = off", kind=kind)
        try:
            plan = planPath(shape, kind, candidates, self._random, diversity=self.settings.diversity != "off", exclude=excluded, ends=ends)
        except NotEnoughNetworks as e:
            if self.settings.diversity != "auto":
                raise
            self.log.warn("building an {kind} path without the X-node diversity rule ([path] diversity = auto): {why}", kind=kind, why=str(e))
            plan = planPath(shape, kind, candidates, self._random, diversity=False, exclude=excluded, ends=ends)
        entry, apAddress, expires = b"", bytes(16), None
        if kind == PathKind.ENTRY:
            terminating = plan.terminating
            now = self._clock.seconds()
            if self.settings.coarseEntries:
                expires = coarseExpiry(now, self._random)
            else:
                expires = int(now) + int(self.settings.lifetime)
            # The sequence is the expiry: a count of the entries made would skip a number for
            # every attempt that failed, and show whoever watches the database the AP-address
            # of the owner whose builds a hostile x0 (which sees the owner's address) failed.
            # It never goes back below an entry this node signed before: a sibling's, or one of
            # an attempt that failed, which its T (having had it from round 2) may publish all
            # the same. Were it lower, lookups would take that entry's list of entry nodes for
            # the newest and leave this path's node out.
            expires = self._entryFloor.raiseTo(
                max([expires] + [p.retireAt for p in self.paths if p.kind == PathKind.ENTRY and p.retireAt is not None])
            )
            routing = RoutingEntry.create(self.identity.routingKey, expires, expires, self._entryNodes(terminating, build), int(now))
            entry, apAddress = routing.encoded, routing.apAddress
        if self._links.address is None:
            raise PathFailed("this node does not know yet the address other nodes reach it at")
        owner = Contact(*self._links.address, self.identity.nodeId)
        return Construction(plan, owner, self._random, routingEntry=entry, apAddress=apAddress, expires=expires)

    def _gone(self, record):
        """
        Whether this node's own requests found the node of C{record} gone: at the address its
        record gives, not one another node named it at (L{phantom.netdb.service.DhtNode.unanswered}).
        """
        return self._dht.unanswered(record.nodeId, (record.host, record.port))

    def _entryNodes(self, terminating, build):
        """
        The entry nodes an entry path's routing entry names: its own T first, then those of
        this node's other entry paths, built (not the ones being replaced) or being built. A
        path that went is named no more, and lookups leave out its older entry once this one
        is out (L{phantom.netdb.records.RouteSet}): how an entry node is removed.

        @param terminating: the record of the path's T.
        @param build: what the build is known by among those under way.
        @return: L{Contact}s, at most L{MAX_ENTRY_NODES}.
        """
        own = Contact(terminating.host, terminating.port, terminating.nodeId)
        self._entryEnds[build] = own
        others = [Contact(p.plan.terminating.host, p.plan.terminating.port, p.plan.terminating.nodeId) for p in self.paths if p.kind == PathKind.ENTRY]
        others += [contact for key, contact in self._entryEnds.items() if key is not build]
        named = {own.nodeId: own}
        for contact in others:
            named.setdefault(contact.nodeId, contact)
        return list(named.values())[:MAX_ENTRY_NODES]

    # Participant

    @property
    def helping(self):
        """How many paths under construction this node is taking part in."""
        return len(self.participations)

    def _setupLinkArrived(self, link):
        for gone in [participant for participant in self._fromPeer if participant not in self.participations]:
            self._fromPeer.release(gone)
        prefix = addressPrefix(link.peer.host) if link.peer is not None else None
        if not self._fromPeer.admits(prefix, link.nodeId):
            self.log.info(
                "refused a path setup: {count} under construction, {held} of them for its address",
                count=len(self.participations), held=self._fromPeer.held(prefix),
            )
            return CloseAtOnce(link)
        participant = self._participant(link, self._participation)
        self._fromPeer.admit(participant, prefix, link.nodeId)
        return participant

    @property
    def peerShare(self):
        """
        How many paths under construction the nodes of one address (its /32, or its /64 for
        IPv6), and one node, may have this node take part in: a share of C{maxParticipations},
        counted against the SETUP link each came over (so a forger's round-1 packages, which
        must arrive over its own links, fill only its own share, however many node ids it
        makes). When all are taken, the oldest of the address holding the most gives way to an
        address holding fewer (L{phantom.quota.Shares}).
        """
        return max(1, self.settings.maxParticipations // PEER_SHARES)

    def _relay(self, rewiring):
        return relayPath(rewiring, self._links, self.relaying, self.pathFrameReceived, 2 * self.settings.roundTimeout, self._publish)

    def _publish(self, routingEntry):
        """
        As T of an entry path, publish its routing entry at the moment the entry decides
        (L{publicationDelay}), if the path is still relayed then.

        @return: a Deferred that fires once it is stored (with C{None} if it never is).
        """
        delay = publicationDelay(routingEntry.expires, self._clock.seconds(), self._random)
        if delay <= 0:
            return self._store(routingEntry)
        published = Deferred()

        def due():
            self._publications.discard(call)
            if any(relayed.routingEntry is routingEntry and not relayed.gone for relayed in self.relaying.values()):
                self._store(routingEntry).chainDeferred(published)
            else:
                published.callback(None)

        call = self._clock.callLater(delay, due)
        self._publications.add(call)
        return published

    def _store(self, routingEntry):
        return ensureDeferred(self._dht.storeRecord(Table.ROUTE, routingEntry.key, routingEntry.encoded))
