"""
Routing tunnels over routing paths (paper §7.2), in every role a node plays in them.

A tunnel is set up by one 48-byte block passed along a path's PATH links, each hop (X-node)
transforming it with a key it picked from its key set and remembering the result, then by
tunnel links opened back along the path, hop by hop, each authenticated by the PATH link's id
and the neighbour's pinned node id and matched to the remembered block by its content:

    - Outbound, over an exit path: the owner sends a random block; the exit node answers with an
      init block on a tunnel link; the owner finds every hop's key, sends the target AP-address
      in layers; the exit node reaches the target's entry node, and sends a success block.
    - Inbound, over an entry path: the entry node, asked for its AP by an exit node, sends an
      init block naming it; the owner finds every hop's key, opens the tunnel link and answers
      in layers; the two exchange dummy blocks, so that both setups look alike.

Each role is a machine without I/O (L{phantom.tunnel.relay}, L{phantom.tunnel.exit},
L{phantom.tunnel.entry}, L{phantom.tunnel.owner}, on L{phantom.tunnel.common}); this service
feeds them the events of links, the network database, timers and paths, and carries out the
actions they return.

Then each hop passes the tunnel's data through its stream layer (L{phantom.tunnel.keys}), and
the owners hold all layers of their paths. Nothing else is ever sent: a hop that finds anything
amiss closes, and the closing runs along the tunnel to both ends.
"""

import os
import random
from dataclasses import dataclass

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from phantom.address import Contact, describePeer, formatAddress
from phantom.errors import TunnelFailed
from phantom.link.interfaces import ILinkHandler
from phantom.link.local import LocalLink
from phantom.link.quota import addressPrefix
from phantom.link.service import CloseAtOnce
from phantom.netdb.records import RoutingEntry, routeKey
from phantom.quota import RateLimits, Shares
from phantom.tunnel.common import (
    ENTRY_REQUEST_RATE,
    KEY_SEARCH_BURST,
    KEY_SEARCH_RATE,
    MAX_ENTRY_PENDING_PER_PEER,
    MAX_PENDING,
    MAX_PENDING_PER_PATH,
    MAX_PENDING_PER_PEER,
    SETUP_TIMEOUT,
    ClosePath,
    CloseLink,
    Fail,
    KeySets,
    LookUpRoute,
    Note,
    OpenLink,
    OwnTunnel,
    RefuseLink,
    RememberedBlocks,
    SeenBlocks,
    SendFrame,
    SendOnPath,
    SpliceLinks,
    chooseKey,
    requireBlock,
)
from phantom.tunnel.entry import EntrySetup
from phantom.tunnel.exit import ExitSetup
from phantom.tunnel.identities import ExitIdentities
from phantom.tunnel.owner import DirectSetup, InboundSetup, OutboundSetup
from phantom.tunnel.relay import RelaySetup
from phantom.tunnel.transport import OwnerTunnel, Splice, TunnelAddress
from phantom.upkeep import Upkeep
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.dht import Table
from phantom.wire.link import Purpose
from phantom.wire.tunnel import BLOCK_SIZE, TunnelOpening


@dataclass
class _Opener:
    """
    The Deferred a tunnel's opener waits on, the block its setup is named by (if any), and the
    client identity it opens with.
    """

    opened: Deferred
    block: bytes
    identity: object


@implementer(ILinkHandler)
class _MachineLink:
    """
    A link's frames and closing, as events of the machine that holds it; a TUNNEL link's first
    frame, the opening, first finds that machine.
    """

    def __init__(self, service, link, machine=None):
        self._service = service
        self._link = link
        self.machine = machine
        self.waiting = None
        """While a TUNNEL link's opening is awaited: the call that gives up on it."""

    def frameReceived(self, payload):
        if self.machine is None:
            self._service.openingReceived(self, self._link, payload)
        else:
            self._service.feed(self.machine, self.machine.frameReceived(self._link, payload))

    def linkClosed(self, reason):
        if self.waiting is not None and self.waiting.active():
            self.waiting.cancel()
        if self.machine is not None:
            self._service.feed(self.machine, self.machine.linkClosed(self._link))


def _prefixOf(link):
    """The address (its /32, or its /64 for IPv6) a link came from: what one peer is taken to hold."""
    return addressPrefix(link.peer.host) if link.peer is not None else None


@implementer(IListeningPort)
class TunnelListeningPort:
    """
    The one listener of a L{TunnelService}: inbound tunnels go to its C{acceptor} until
    L{stopListening}, after which they are refused again.
    """

    def __init__(self, tunnels, acceptor):
        self._tunnels = tunnels
        self.acceptor = acceptor

    def startListening(self):
        pass

    def stopListening(self):
        """Refuse inbound tunnels again (unless another listener has taken over since)."""
        if self._tunnels._listener is self:
            self._tunnels._listener = None
        return succeed(None)

    def getHost(self):
        """@return: the node's L{TunnelAddress}."""
        return self._tunnels.address


class TunnelService(MultiService):
    """
    This node's tunnels: those it opens and accepts as an owner, and those it carries as an
    X-node, exit node or entry node. The roles are machines; this service carries out what they
    ask (links, routing entries, timers) and feeds them what happens.

    @param links: the node's L{phantom.link.interfaces.ILinkService}.
    @param paths: the node's L{phantom.path.service.PathService} (its C{exitPath()},
        C{entryPathFor(apAddress)} and C{isEntryNode}); its PATH links' frames come to
        L{pathFrameReceived}.
    @param dht: the network database, to look up routing entries (C{findRecord}) and publish
        this node's own (C{storeRecord}).
    @param clock: C{IReactorTime}.
    @param apAddress: this node's AP-address (of its routing key).
    @param random: the secure source of key choices.
    @param randomBytes: the secure source of random blocks.
    @param idleTimeout: seconds after which, while the service runs, a tunnel this node owns an
        end of and nothing has passed through is closed.
    @param ownExit: open tunnels without an exit path, as a non-anonymised client (paper §6.3):
        resolve the AP-address and ask its entry node directly.
    @param ownEntry: the routing key, to be this node's own entry node as a non-anonymised
        server: publish a routing entry naming this node, and take tunnels to its AP-address
        straight from the exit nodes that ask. C{None}: reachable over entry paths only.
    @param entryLifetime: how long an own routing entry is valid; it is renewed at half that.
    @param relaySetup: what makes the machine of each block this node relays (L{RelaySetup}'s
        signature); tests wrap it to play a relay that tampers.
    @param exits: the client identities of this node's exit paths (L{ExitIdentities}, on
        C{clock}, if not given); every exit path C{paths} builds takes one.
    """

    log = Logger()

    def __init__(
        self, links, paths, dht, clock, apAddress, random=random.SystemRandom(), randomBytes=os.urandom,
        idleTimeout=600.0, ownExit=False, ownEntry=None, entryLifetime=600.0, relaySetup=RelaySetup, exits=None,
    ):
        super().__init__()
        self._links = links
        self._paths = paths
        self._dht = dht
        self._clock = clock
        self._random = random
        self._randomBytes = randomBytes
        self._relaySetup = relaySetup
        self.setupTimeout = SETUP_TIMEOUT
        """Seconds each step of a setup may take."""
        self.remembered = RememberedBlocks(clock)
        """The blocks this node passed on (or sent as an entry node), waiting for their tunnel links."""
        self._warnings = RateLimits(1.0, 5, clock.seconds)
        self.seen = SeenBlocks()
        """Every setup block each path brought, while the path lasts: replays are refused."""
        self.exiting = Shares(MAX_PENDING, MAX_PENDING_PER_PEER, MAX_PENDING_PER_PATH, onEvicted=self._abandon)
        """The outbound setups under way at this node as an exit node, by neighbour and path."""
        self.entering = Shares(MAX_PENDING, MAX_ENTRY_PENDING_PER_PEER, MAX_ENTRY_PENDING_PER_PEER, onEvicted=self._abandon)
        """The entry requests under way at this node, by the address (its /32 or /64) and the node that asked."""
        self.entryRequests = RateLimits(ENTRY_REQUEST_RATE, MAX_ENTRY_PENDING_PER_PEER, clock.seconds)
        """ENTRY links a second, per address (its /32 or /64) they come from: node ids are free."""
        self.keySearches = RateLimits(KEY_SEARCH_RATE, KEY_SEARCH_BURST, clock.seconds)
        """Inbound requests a second per owned entry path: each costs a key search."""
        self.opening = {}
        """The first blocks of the tunnels this node is opening, to their L{OutboundSetup}s."""
        self.keySets = KeySets()
        self._timers = {}
        self._pathWatches = {}
        self._openers = {}
        self.idleTimeout = idleTimeout
        self.ownExit = ownExit
        self._ownEntry = ownEntry
        self._entryLifetime = entryLifetime
        self.address = TunnelAddress(apAddress)
        self.exits = exits if exits is not None else ExitIdentities(clock)
        """The client identities of this node's exit paths: outbound tunnels present theirs, never L{address}."""
        paths.onPathBuilt(self.exits.pathBuilt)
        paths.holdReplaced(self.exits.whenUnused)
        self._listener = None
        self.tunnels = set()
        """The open tunnels this node owns an end of."""
        self.carried = set()
        """The L{Splice}s of tunnels this node carries."""
        Upkeep(min(30.0, idleTimeout / 2), self.expireIdle, clock, "closing idle tunnels").setServiceParent(self)
        if ownEntry is not None:
            Upkeep(entryLifetime / 2, self.publishOwnEntry, clock, "publishing this node's own routing entry").setServiceParent(self)
        links.registerPurpose(Purpose.TUNNEL, self._tunnelLinkArrived)
        links.registerPurpose(Purpose.ENTRY, self._entryLinkArrived)

    # Events in

    def pathFrameReceived(self, path, side, payload):
        """
        A frame on a PATH link: a setup block. An owner gets one only as an entry path's
        inbound request; an X-node passes it on, the exit node answers it.
        """
        try:
            block = requireBlock(payload)
        except ProtocolError as e:
            self._do(None, ClosePath(path, str(e)))
            return
        if side is None:
            if not self.keySearches.allow(path.link.linkId):
                self.log.debug("too many inbound tunnel requests on an entry path: dropped one")
            elif self._fresh(path, path.link.nodeId, block):
                self.begin(InboundSetup(path, block, self.keySets.ofOwned(path), self.listener is not None, self._randomBytes))
            return
        others = [other for other in path.sides() if other != side]
        neighbour = path.contacts[side].nodeId
        if others:
            if path.links[others[0]] is None:
                return
            if not self.remembered.admits(neighbour, path):
                self.log.debug("a neighbour's share of pending tunnel setups is full: dropped a setup block")
                return
            if not self._fresh(path, neighbour, block):
                return
            relay = self._relaySetup(path, side, others[0], self._choose(path), block)
            if not self.remembered.remember(relay.passed, relay, neighbour, path):
                return
            self.begin(relay)
        elif path.terminating and path.routingEntry is None:
            if not self.exiting.admits(neighbour, path):
                self.log.debug("too many tunnel setups pending at this exit node: dropped a setup block")
                return
            if not self._fresh(path, neighbour, block):
                return
            machine = ExitSetup(path, side, block, self._choose(path), self._randomBytes)
            self.exiting.admit(machine, neighbour, path)
            self.begin(machine)
        else:
            self._do(None, ClosePath(path, "a setup block at the end of an entry path"))

    def _fresh(self, path, neighbour, block):
        """Whether C{block} is the first of its kind over C{path}: a replay, or one too many, is dropped with a warning."""
        why = self.seen.firstSight(path, neighbour, block)
        if why is not None:
            # A warning a second per neighbour at most: a replaying neighbour cannot flood the log.
            level = LogLevel.warn if self._warnings.allow(neighbour) else LogLevel.debug
            self.log.emit(level, "dropped a setup block from {peer}: {why}", peer=neighbour.hex()[:16], why=why)
        return why is None

    def _choose(self, relayed):
        return chooseKey(self.keySets.ofRelayed(relayed), self._random)

    def _tunnelLinkArrived(self, link):
        handler = _MachineLink(self, link)
        handler.waiting = self._clock.callLater(self.setupTimeout, link.close)
        return handler

    def openingReceived(self, handler, link, payload):
        """The first frame of a TUNNEL link: it names the block of the setup it belongs to."""
        if handler.waiting.active():
            handler.waiting.cancel()
        try:
            opening = parseStrict(TunnelOpening, payload)
        except ProtocolError as e:
            self._do(None, RefuseLink(link, str(e)))
            return
        first = bytes(opening.first)
        machine = self.opening.get(first) or self.remembered.take(first)
        if machine is None:
            self._do(None, RefuseLink(link, "its first block names no tunnel setup"))
            return
        handler.machine = machine
        self.feed(machine, machine.tunnelLinkArrived(link, bytes(opening.second)))

    def _entryLinkArrived(self, link):
        if self._ownEntry is None and not self._paths.isEntryNode:
            self.log.info("refused an entry link from {peer}: this node is no entry node", peer=describePeer(link.peer))
            return CloseAtOnce(link)
        prefix = _prefixOf(link)
        if not self.entering.admits(prefix, link.nodeId) or not self.entryRequests.allow(prefix):
            self.log.debug("refused an entry link from {peer}: its share of entry requests is spent", peer=describePeer(link.peer))
            return CloseAtOnce(link)
        return self._enter(link)

    def _enter(self, link):
        machine = EntrySetup(
            link, self.address.apAddress if self._ownEntry is not None else None, lambda: self.listener is not None,
            self._paths.entryPathFor, self.keySets.ofRelayed, self.remembered, self._random, self._randomBytes,
        )
        self.entering.admit(machine, _prefixOf(link), link.nodeId)
        self.begin(machine)
        return _MachineLink(self, link, machine)

    # Running machines

    def _abandon(self, machine):
        self.feed(machine, machine.abandon())

    def begin(self, machine):
        """Start C{machine}."""
        self.feed(machine, machine.start())

    def feed(self, machine, actions):
        """Carry out the C{actions} C{machine} returned for an event, and time its next step."""
        for action in actions:
            self._do(machine, action)
        timer = self._timers.pop(machine, None)
        if timer is not None and timer.active():
            timer.cancel()
        if machine.ended:
            self.exiting.release(machine)
            self.entering.release(machine)
            watch = self._pathWatches.pop(machine, None)
            if watch is not None:
                watch.cancel()
            opener = self._openers.pop(machine, None)
            if opener is not None:
                self.opening.pop(opener.block, None)
            return
        if machine.path is not None and machine not in self._pathWatches:
            self._pathWatches[machine] = machine.path.onGone(lambda: self.feed(machine, machine.pathGone()))
        if machine.timed:
            self._timers[machine] = self._clock.callLater(self.setupTimeout, lambda: self.feed(machine, machine.timedOut()))

    def _do(self, machine, action):
        match action:
            case SendFrame(link, payload):
                link.sendFrame(payload)
            case SendOnPath(path, side, payload):
                link = path.links[side]
                if link is not None:
                    link.sendFrame(payload)
            case OpenLink(purpose, contact, linkId):
                self._open(machine, purpose, contact, linkId)
            case LookUpRoute(apAddress):
                found = ensureDeferred(self._dht.findRecord(Table.ROUTE, routeKey(apAddress)))
                found.addCallbacks(
                    lambda entry: self.feed(machine, machine.routeFound(entry)),
                    lambda failure: self.feed(machine, machine.linkFailed(f"looking up {formatAddress(apAddress)} failed: {failure.getErrorMessage()}")),
                )
            case SpliceLinks(path, a, b, aToB, bToA):
                self._carry(path, a, b, aToB, bToA)
            case OwnTunnel():
                self._own(machine, action)
            case CloseLink(link):
                link.close()
            case RefuseLink(link, why):
                self.log.warn("a tunnel link from {peer} failed: {why}", peer=describePeer(link.peer), why=why)
                link.close()
            case ClosePath(path, why):
                self.log.warn("closing a path: {why}", why=why)
                path.close()
            case Fail(why, level):
                self.log.emit(level, "{what} failed: {why}", what=machine.what, why=why)
                opener = self._openers.get(machine)
                if opener is not None and not opener.opened.called:
                    opener.opened.errback(TunnelFailed(f"no tunnel to {formatAddress(machine.apAddress)}: {why}"))
            case Note(message, level):
                self.log.emit(level, message)

    def _open(self, machine, purpose, contact, linkId):
        if contact.nodeId == self._links.nodeId and purpose == Purpose.ENTRY:
            # This exit node is the entry node asked for too: both roles meet in-process.
            host, port = self._links.address
            exitEnd, entryEnd = LocalLink.pair(self._links.nodeId, host, port, self._clock)
            entryEnd.attach(self._enter(entryEnd))
            opened = succeed(exitEnd)
        else:
            opened = self._links.connect(contact.host, contact.port, purpose, linkId, contact.nodeId)

        def connected(link):
            link.attach(_MachineLink(self, link, machine))
            self.feed(machine, machine.linkOpened(link))

        opened.addCallbacks(connected, lambda failure: self.feed(machine, machine.linkFailed(failure.getErrorMessage())))

    def _carry(self, path, a, b, aToB, bToA):
        """Splice two links of a tunnel this node carries; the path's end closes them."""
        pathGone = None

        def uncarry():
            self.carried.discard(splice)
            if pathGone is not None:
                pathGone.cancel()

        splice = Splice(a, b, aToB, bToA, self._clock, onClosed=uncarry)
        self.carried.add(splice)
        a.attach(splice.ends[0])
        b.attach(splice.ends[1])
        pathGone = path.onGone(splice.close)
        return splice

    def _own(self, machine, owned):
        peer = TunnelAddress(owned.peer)
        opener = self._openers.get(machine) if owned.outbound else None
        host = TunnelAddress(opener.identity.apAddress) if opener is not None else self.address
        tunnel = OwnerTunnel(owned.link, owned.layers, owned.outbound, host, peer, self._clock)
        self.tunnels.add(tunnel)
        pathGone = None

        def closed():
            self.tunnels.discard(tunnel)
            if pathGone is not None:
                pathGone.cancel()

        tunnel.whenClosed.append(closed)
        owned.link.attach(tunnel)
        if owned.path is not None:
            pathGone = owned.path.onGone(tunnel.loseConnection)
        if owned.outbound:
            if opener is None or opener.opened.called:
                tunnel.loseConnection()
            else:
                self.exits.tunnelOpened(opener.identity, tunnel)
                opener.opened.callback(tunnel)
        elif self.listener is None:
            tunnel.loseConnection()
        else:
            self.listener.acceptor(tunnel)

    # The owner: inbound

    def listen(self, acceptor):
        """
        Take the inbound tunnels to this node's AP-address: each L{OwnerTunnel} goes to
        C{acceptor(tunnel)}, not yet started, until the returned port stops listening. While
        nobody listens, inbound tunnels are refused.

        @return: a L{TunnelListeningPort} (an C{IListeningPort}).
        @raise CannotListenError: another listener takes them already.
        """
        if self._listener is not None:
            raise CannotListenError(formatAddress(self.address.apAddress), 0, "another listener takes this node's inbound tunnels")
        self._listener = TunnelListeningPort(self, acceptor)
        return self._listener

    @property
    def listener(self):
        """The L{TunnelListeningPort} whose acceptor takes each inbound L{OwnerTunnel}; C{None} while nobody listens."""
        return self._listener

    # The owner: outbound

    def open(self, apAddress, source=None):
        """
        Open a tunnel to C{apAddress} over one of this node's exit paths (built if there is none).

        @param source: the exit AP to open it from, over that AP's exit path (L{ExitIdentities.choose});
            any exit path if C{None}.
        @return: a Deferred of the L{OwnerTunnel}, not yet started, whose C{getHost()} is the
            exit AP it was opened with (L{exits}C{.ofTunnel} gives its identity); cancelling it
            gives up.
        @raise TunnelFailed: (errback) the tunnel could not be opened.
        """
        machines = []

        def cancel(opened):
            if not machines:
                finding.cancel()
            else:
                self.feed(machines[0], machines[0].abandon())

        opened = Deferred(cancel)

        def start(chosen):
            identity, path = chosen
            if opened.called:
                return
            if path is None:
                machine, block = DirectSetup(apAddress, self._randomBytes), None
            else:
                block = self._randomBytes(BLOCK_SIZE)
                machine = self.opening[block] = OutboundSetup(path, apAddress, block, self.keySets.ofOwned(path), self._randomBytes)
            machines.append(machine)
            self._openers[machine] = _Opener(opened, block, identity)
            self.begin(machine)

        def failed(failure):
            if not opened.called:
                why = failure.getErrorMessage()
                opened.errback(TunnelFailed(f"no tunnel to {formatAddress(apAddress)}: {failure.type.__name__}: {why}"))

        finding = Deferred.fromCoroutine(self.exits.choose(source, None if self.ownExit else self._paths.exitPath))
        finding.addCallback(start).addErrback(failed)
        return opened

    # Loops

    def publishOwnEntry(self):
        """Publish a routing entry that names this node as the entry node of its own AP-address."""
        now = int(self._clock.seconds())
        host, port = self._links.address
        entry = RoutingEntry.create(self._ownEntry, now, now + int(self._entryLifetime), [Contact(host, port, self._links.nodeId)], now)
        published = ensureDeferred(self._dht.storeRecord(Table.ROUTE, entry.key, entry.encoded))
        published.addErrback(lambda failure: self.log.warn("publishing this node's own routing entry failed: {why}", why=failure.getErrorMessage()))
        return published

    def expireIdle(self):
        """
        Close the tunnels this node owns an end of that have been idle for C{idleTimeout}, and
        forget the setup blocks whose tunnel links never came.
        """
        self.remembered.forgetExpired()
        now = self._clock.seconds()
        for tunnel in list(self.tunnels):
            if now - tunnel.lastActive >= self.idleTimeout:
                self.log.info("closing a tunnel idle for {seconds:.0f} s", seconds=now - tunnel.lastActive)
                tunnel.loseConnection()

    def stopService(self):
        stopped = super().stopService()
        self.stop()
        return stopped

    def stop(self):
        """Close every tunnel this node owns an end of or carries."""
        for tunnel in list(self.tunnels):
            tunnel.loseConnection()
        for splice in list(self.carried):
            splice.close()
