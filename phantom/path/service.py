"""
Routing paths over links: the service that builds this node's paths and takes part in others'.

The owner draws nodes from its pool (sampled from the network database), plans the circle, and
runs each attempt as an L{OwnerBuild} (L{phantom.path.owner}); a failed attempt is retried
without its nodes, but for its ends, kept for a few attempts (L{phantom.path.retry}). A
participant is a L{SetupParticipant} (L{phantom.path.relay}); an X-node then relays the
finished path as a L{RelayedPath}. The service keeps the tables (owned paths, relayed paths,
participations), renews paths before their lifetime ends and replaces lost ones.
"""

import random
from dataclasses import dataclass, field

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from phantom.address import Contact
from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.link.ending import Ending, Goes
from phantom.link.service import CloseAtOnce
from phantom.netdb.records import RoutingEntry
from phantom.path.circle import Construction
from phantom.path.interfaces import PathKind
from phantom.path.owner import BuildAttempt, OwnerBuild
from phantom.path.plan import NotEnoughNetworks, NotEnoughNodes, PathShape, planPath
from phantom.path.pool import NodePool
from phantom.path.retry import KEEP_ENDS, Retries
from phantom.path.relay import ParticipationContext, PathLinkHandler, RelayedPath, SetupParticipant, relayPath
from phantom.upkeep import Upkeep
from phantom.wire.dht import Table
from phantom.wire.link import Purpose

__all__ = ["Path", "PathService", "RelayedPath"]


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
        for the node pool, C{storeRecord} for the routing entries this node publishes as T.
    @param clock: C{IReactorTime}.
    @param settings: L{PathSettings}.
    @param random: the secure source of every random choice (C{SystemRandom} in production).
    @param frameReceiver: the L{IPathFrameReceiver} that frames on PATH links go to (the tunnel
        service); without one, a frame on a PATH link closes its path.
    @param participant: C{participant(link, context) -> ILinkHandler}, what takes part in a path
        under construction from the SETUP link its array came over, given a
        L{ParticipationContext}; L{SetupParticipant} unless a test gives another.
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
    ):
        self.identity = identity
        self._links = links
        self._dht = dht
        self._clock = clock
        self.settings = settings
        self._random = random
        self.paths = []
        self.relaying = {}
        self.participations = set()
        self.keepEnds = KEEP_ENDS
        """How many failed attempts in a row one pair of ends is kept (L{Retries})."""
        self._retries = {}
        self.replacing = {}
        """Path kind to the Deferred of a replacement being built: it fires with the new path, or C{None}."""
        self._frameReceiver = frameReceiver
        self._participant = participant
        self._participation = ParticipationContext(
            identity, clock, links, 2 * settings.roundTimeout, self.participations, self._relay
        )
        self._exitShape = None
        self._waitingForExit = []
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
        for participation in list(self.participations):
            participation.giveUp("the node is stopping")
        for path in list(self.paths):
            self.paths.remove(path)
            path.link.close()
        for relayed in list(self.relaying.values()):
            relayed.tearDown()

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
        kind = PathKind(kind)
        shape = shape or PathShape(self.settings.x, self.settings.y)
        retries = self._retries.setdefault(kind, Retries(self.keepEnds))
        excluded = set()
        failures = []
        for attempt in range(self.settings.attempts):
            construction = None
            try:
                started = self._clock.seconds()
                construction = await self._plan(kind, shape, excluded, retries.ends, candidates if attempt == 0 else None)
                planned = {"plan": self._clock.seconds() - started}
                machine = OwnerBuild(construction, self.settings.roundTimeout, self._clock.seconds, planned)
                link = await BuildAttempt(machine, self._links, self._clock, self.settings.roundTimeout).run()
            except (PathFailed, NotEnoughNodes) as e:
                failures.append(str(e))
                if construction is not None:
                    failed = retries.failed(construction.plan)
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
            link.attach(PathLinkHandler(lambda payload: self.pathFrameReceived(path, None, payload), lambda: self._pathClosed(path)))
            self.paths.append(path)
            self.log.info("built an {kind} path in {seconds:.3f} s", kind=kind, seconds=sum(path.phases.values()))
            return path
        raise PathFailed(f"no {kind} path after {self.settings.attempts} attempts: " + "; ".join(failures))

    async def _plan(self, kind, shape, excluded, ends, candidates=None):
        if candidates is None:
            candidates = await self.pool.draw(shape.size + 8, exclude=excluded | {self.identity.nodeId}, atLeast=shape.size)
        diversity = self.settings.diversity != "off"
        try:
            plan = planPath(shape, kind, candidates, self._random, diversity=diversity, exclude=excluded, ends=ends)
        except NotEnoughNetworks:
            if self.settings.diversity != "auto":
                raise
            self.log.warn("too few networks for X-nodes in distinct /16s or /48s: building without the diversity rule")
            plan = planPath(shape, kind, candidates, self._random, diversity=False, exclude=excluded, ends=ends)
        entry, apAddress = b"", bytes(16)
        if kind == PathKind.ENTRY:
            terminating = plan.terminating
            now = int(self._clock.seconds())
            routing = RoutingEntry.create(
                self.identity.routingKey, now, now + int(self.settings.lifetime), [Contact(terminating.host, terminating.port, terminating.nodeId)], now
            )
            entry, apAddress = routing.encoded, routing.apAddress
        owner = Contact(*self._links.address, self.identity.nodeId)
        return Construction(plan, owner, self._random, routingEntry=entry, apAddress=apAddress)

    # Participant

    @property
    def helping(self):
        """How many paths under construction this node is taking part in."""
        return len(self.participations)

    def _setupLinkArrived(self, link):
        if len(self.participations) >= self.settings.maxParticipations:
            self.log.info("refused a path setup: already in {count} under construction", count=len(self.participations))
            return CloseAtOnce(link)
        return self._participant(link, self._participation)

    def _relay(self, rewiring):
        return relayPath(rewiring, self._links, self.relaying, self.pathFrameReceived, 2 * self.settings.roundTimeout, self._publish)

    def _publish(self, routingEntry):
        return self._dht.storeRecord(Table.ROUTE, routingEntry.key, routingEntry.encoded)
