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

Then each hop passes the tunnel's data through its stream layer (L{phantom.tunnel.keys}), and
the owners hold all layers of their paths. Nothing else is ever sent: a hop that finds anything
amiss closes, and the closing runs along the tunnel to both ends.
"""

import os
import random
from collections import OrderedDict
from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from phantom.address import Contact, addressBytes, describePeer, formatAddress
from phantom.errors import LinkFailed, TunnelFailed
from phantom.link.queue import FrameQueue
from phantom.link.service import CloseAtOnce
from phantom.netdb.records import RoutingEntry, routeKey
from phantom.tunnel.keys import BACKWARD, FORWARD, KeySet, StreamLayer, applyLayers, backward, exitConfirmation, forward, recoverKeys, wrapForHops
from phantom.link.local import LocalLink
from phantom.tunnel.transport import OwnerTunnel, Splice, TunnelAddress, firstThen
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.dht import Table
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import (
    BLOCK_SIZE,
    ApAnswer,
    ApRequest,
    InboundStatus,
    TunnelOpening,
    buildEntryInit,
    buildExitInit,
    buildInboundReply,
    buildOutboundReply,
    isExitInit,
    parseEntryInit,
    parseInboundReply,
    parseOutboundReply,
)

SETUP_TIMEOUT = 30.0
"""Seconds any step of a tunnel setup may take before the setup is given up."""
MAX_PENDING = 4096
"""The most blocks a node remembers at once, waiting for their tunnel links."""


def requireBlock(payload):
    """@return: C{payload} as bytes, if it is one setup block. @raise ProtocolError: it is not."""
    if len(payload) != BLOCK_SIZE:
        raise ProtocolError(f"a frame of {len(payload)} bytes where a {BLOCK_SIZE}-byte setup block was due")
    return bytes(payload)


@dataclass
class Remembered:
    """A block this node passed on along a path, waiting for the tunnel link that names it."""

    path: object
    """The L{phantom.path.service.RelayedPath} it came over."""
    towards: str
    """The side it went out to: the tunnel link must come from that neighbour."""
    cameFrom: str
    """The side it came from (C{None} at the entry node, where it started)."""
    key: bytes
    material: bytes
    """What the hop first saw of the tunnel: the block it received, or the entry node's init block."""
    expires: float
    entry: object = None
    """At the entry node: the Deferred the tunnel link is handed to."""


class TunnelService(Service):
    """
    This node's tunnels: those it opens and accepts as an owner, and those it carries as an
    X-node, exit node or entry node.

    @param links: the node's L{phantom.link.service.LinkService}.
    @param paths: the node's L{phantom.path.service.PathService}; its PATH links' frames come here.
    @param dht: the network database, to look up routing entries (C{findRecord}).
    @param clock: C{IReactorTime}.
    @param random: the secure source of key choices.
    @param randomBytes: the secure source of random blocks.
    @param apAddress: this node's AP-address (of its routing key).
    @param idleTimeout: seconds after which, while the service runs, a tunnel this node owns an
        end of and nothing has passed through is closed.
    @param ownExit: open tunnels without an exit path, as a non-anonymised client (paper §6.3):
        resolve the AP-address and ask its entry node directly.
    @param ownEntry: the routing key, to be this node's own entry node as a non-anonymised
        server: publish a routing entry naming this node, and take tunnels to its AP-address
        straight from the exit nodes that ask. C{None}: reachable over entry paths only.
    @param entryLifetime: how long an own routing entry is valid; it is renewed at half that.
    """

    log = Logger()

    def __init__(
        self, links, paths, dht, clock, apAddress, random=random.SystemRandom(), randomBytes=os.urandom,
        idleTimeout=600.0, ownExit=False, ownEntry=None, entryLifetime=600.0,
    ):
        self._links = links
        self._paths = paths
        self._dht = dht
        self._clock = clock
        self._random = random
        self._randomBytes = randomBytes
        self._remembered = OrderedDict()
        self._opening = {}
        self._keySets = {}
        self.idleTimeout = idleTimeout
        self._expiry = None
        self.ownExit = ownExit
        self._ownEntry = ownEntry
        self._entryLifetime = entryLifetime
        self._publishing = None
        self.address = TunnelAddress(apAddress)
        self.acceptor = None
        """C{acceptor(tunnel)} takes each inbound L{OwnerTunnel}; while C{None}, inbound tunnels are refused."""
        self.tunnels = set()
        """The open tunnels this node owns an end of."""
        self.carried = set()
        """The L{Splice}s of tunnels this node carries."""
        links.registerPurpose(Purpose.TUNNEL, self._tunnelLinkArrived)
        links.registerPurpose(Purpose.ENTRY, self._entryLinkArrived)

    # Keys

    def _keySet(self, seed, count, path):
        """The key set of C{seed}, made once and kept while C{path} lasts."""
        keySet = self._keySets.get(seed)
        if keySet is None:
            keySet = self._keySets[seed] = KeySet(seed, count)
            path.onGone(lambda: self._keySets.pop(seed, None))
        return keySet

    def _keySetsOf(self, path):
        """The key sets of an owned path's X-nodes, x0 first, T last."""
        return [self._keySet(path.keySeeds[record.nodeId], path.keyCount, path) for record in path.plan.xNodes]

    def _choose(self, relayed):
        keySet = self._keySet(relayed.keySeed, relayed.keyCount, relayed)
        return keySet.keys[keySet.choose(self._random)]

    # Frames on PATH links: setup blocks

    def pathFrameReceived(self, path, side, payload):
        """
        A frame on a PATH link: a setup block. An owner gets one only as an entry path's
        inbound request; an X-node passes it on, the exit node answers it.
        """
        try:
            block = requireBlock(payload)
        except ProtocolError as e:
            self.log.warn("closing a path: {why}", why=str(e))
            path.close()
            return
        if side is None:
            self._run(self._inbound(path, block), "an inbound tunnel")
            return
        others = [other for other in path.sides() if other != side]
        if others:
            self._passOn(path, side, others[0], block)
        elif path.terminating and path.routingEntry is None:
            self._run(self._exit(path, side, block), "an outbound tunnel at its exit node")
        else:
            self.log.warn("a setup block at the end of an entry path: closing the path")
            path.tearDown()

    def _passOn(self, path, cameFrom, towards, block):
        link = path.links[towards]
        if link is None:
            return
        key = self._choose(path)
        passed = forward(key, block)
        if self._remember(passed, Remembered(path, towards, cameFrom, key, block, 0.0)):
            link.sendFrame(passed)

    def _forgetExpired(self):
        """Forget the blocks whose tunnel links never came (they expire in the order remembered)."""
        now = self._clock.seconds()
        while self._remembered:
            oldest = next(iter(self._remembered.values()))
            if oldest.expires > now:
                break
            self._remembered.popitem(last=False)

    def _remember(self, block, remembered):
        now = self._clock.seconds()
        self._forgetExpired()
        if len(self._remembered) >= MAX_PENDING:
            self.log.warn("too many tunnel setups pending: dropped a setup block")
            return False
        remembered.expires = now + SETUP_TIMEOUT
        self._remembered[block] = remembered
        return True

    # Tunnel links: opened back along a path, named by the block they carry first

    def _tunnelLinkArrived(self, link):
        queue = FrameQueue(link)
        self._run(self._tunnelLink(link, queue), f"a tunnel link from {describePeer(link.peer)}")
        return queue

    async def _tunnelLink(self, link, queue):
        try:
            opening = parseStrict(TunnelOpening, await self._nextFrame(queue))
            first = bytes(opening.first)
            setup = self._opening.get(first)
            if setup is not None:
                return setup.linkArrived(link, queue, opening.second)
            remembered = self._remembered.pop(first, None)
            if remembered is None:
                raise ProtocolError("its first block names no tunnel setup")
            path, towards = remembered.path, remembered.towards
            contact = path.contacts[towards]
            if link.linkId != path.linkIds[towards] or link.nodeId != contact.nodeId or link.peer.host != contact.host:
                raise ProtocolError("it is not from the neighbour the block went to")
            second = backward(remembered.key, bytes(opening.second))
            layer = StreamLayer(remembered.key, remembered.material)
            if remembered.entry is not None:
                remembered.entry.callback((link, queue, second, layer))
                return
            onward = await self._connectBack(path, remembered.cameFrom)
            onward.sendFrame(TunnelOpening.build({"first": remembered.material, "second": second}))
            self._carry(
                path,
                (link, queue),
                (onward, None),
                firstThen(lambda frame: backward(remembered.key, requireBlock(frame)), layer.against),
                firstThen(lambda frame: backward(remembered.key, requireBlock(frame)), layer.along),
            )
        except Exception:
            link.close()
            raise

    async def _connectBack(self, path, side):
        contact = path.contacts[side]
        return await self._links.connect(contact.host, contact.port, Purpose.TUNNEL, path.linkIds[side], contact.nodeId)

    def _carry(self, path, a, b, aToB, bToA):
        """Splice two links of a tunnel this node carries; the path's end closes them."""
        (linkA, queueA), (linkB, queueB) = a, b
        pathGone = None
        splice = Splice(linkA, linkB, aToB, bToA, onClosed=lambda: self._uncarry(splice, pathGone))
        self.carried.add(splice)
        for queue, link, end in ((queueA, linkA, splice.ends[0]), (queueB, linkB, splice.ends[1])):
            if queue is not None:
                queue.handOver(end)
            else:
                link.attach(end)
        pathGone = path.onGone(splice.close)
        return splice

    def _uncarry(self, splice, pathGone):
        self.carried.discard(splice)
        if pathGone is not None:
            pathGone.cancel()

    # The exit node

    async def _exit(self, path, side, block):
        key = self._choose(path)
        layer = StreamLayer(key, block)
        back = await self._connectBack(path, side)
        entry = None
        # The owner giving up (closing) while the entry node is asked ends the asking too.
        queue = FrameQueue(back, lambda: entry is not None and entry.close())
        back.attach(queue)
        try:
            back.sendFrame(TunnelOpening.build({"first": block, "second": backward(key, buildExitInit(self._randomBytes))}))
            apAddress = parseOutboundReply(backward(key, requireBlock(await self._nextFrame(queue))))
            entry, entryQueue = await self._reachEntry(apAddress)
            if queue.closed:
                raise TunnelFailed("the owner gave up while the entry node was reached")
            entry.sendFrame(ApRequest.build({"ap_address": apAddress}))
            answer = parseStrict(ApAnswer, await self._nextFrame(entryQueue))
            if int(answer.status) != InboundStatus.ACCEPTED:
                raise TunnelFailed(f"{formatAddress(apAddress)} refused the tunnel")
            back.sendFrame(exitConfirmation(key, block))
            self._carry(path, (back, queue), (entry, entryQueue), layer.along, layer.against)
        except Exception:
            back.close()
            if entry is not None:
                entry.close()
            raise

    async def _reachEntry(self, apAddress):
        """An ENTRY link to one of the entry nodes the AP-address's verified routing entry names."""
        entry = await self._dht.findRecord(Table.ROUTE, routeKey(apAddress))
        if entry is None:
            raise TunnelFailed(f"no routing entry for {formatAddress(apAddress)}")
        reasons = []
        for node in entry.entryNodes:
            if node.nodeId == self._links.nodeId:
                # This exit node is the entry node asked for too: both roles meet in-process.
                return self._enterLocally()
            try:
                link = await self._links.connect(node.host, node.port, Purpose.ENTRY, self._randomBytes(LINK_ID_SIZE), node.nodeId)
            except Exception as e:
                reasons.append(str(e))
                continue
            queue = FrameQueue(link)
            link.attach(queue)
            return link, queue
        raise TunnelFailed(f"no entry node of {formatAddress(apAddress)} reachable: {'; '.join(reasons)}")

    def _enterLocally(self):
        host, port = self._links.address
        exitEnd, entryEnd = LocalLink.pair(self._links.nodeId, host, port, self._clock)
        entryQueue = FrameQueue(entryEnd)
        entryEnd.attach(entryQueue)
        self._run(self._entry(entryEnd, entryQueue), "an entry request of this node's own exit role")
        exitQueue = FrameQueue(exitEnd)
        exitEnd.attach(exitQueue)
        return exitEnd, exitQueue

    # The entry node

    def _entryLinkArrived(self, link):
        if self._ownEntry is None and not self._paths.isEntryNode:
            self.log.info("refused an entry link from {peer}: this node is no entry node", peer=describePeer(link.peer))
            return CloseAtOnce(link)
        queue = FrameQueue(link)
        self._run(self._entry(link, queue), f"an entry request from {describePeer(link.peer)}")
        return queue

    async def _entry(self, request, queue):
        block = None
        try:
            apAddress = bytes(parseStrict(ApRequest, await self._nextFrame(queue)).ap_address)
            if self._ownEntry is not None and apAddress == self.address.apAddress:
                return self._acceptDirectly(request, queue)
            path = self._paths.entryPathFor(apAddress)
            if path is None:
                request.sendFrame(ApAnswer.build({"status": InboundStatus.REFUSED}))
                raise TunnelFailed(f"this node is no entry node of {formatAddress(apAddress)}")
            [side] = path.sides()
            key = self._choose(path)
            init = buildEntryInit(apAddress, addressBytes(request.peer.host), self._randomBytes)
            block = forward(key, init)
            arrived = Deferred()
            if not self._remember(block, Remembered(path, side, None, key, init, 0.0, entry=arrived)):
                raise TunnelFailed("too many tunnel setups pending")
            path.links[side].sendFrame(block)
            # The exit node giving up, or the path going, ends the wait.
            giveUp = lambda: arrived.called or arrived.cancel()  # noqa: E731
            queue.onClosed = giveUp
            pathGone = path.onGone(giveUp)
            try:
                back, backQueue, reply, layer = await arrived.addTimeout(SETUP_TIMEOUT, self._clock)
            finally:
                queue.onClosed = None
                pathGone.cancel()
            try:
                status = parseInboundReply(reply)
                request.sendFrame(ApAnswer.build({"status": status}))
                if status != InboundStatus.ACCEPTED:
                    raise TunnelFailed(f"the owner of {formatAddress(apAddress)} refused the tunnel")
                back.sendFrame(self._randomBytes(BLOCK_SIZE))
                self._carry(path, (back, backQueue), (request, queue), firstThen(lambda frame: requireBlock(frame) and None, layer.against), layer.along)
            except Exception:
                back.close()
                raise
        except Exception:
            if block is not None:
                self._remembered.pop(block, None)
            request.close()
            raise

    def _acceptDirectly(self, request, queue):
        """A tunnel to this node's own AP-address, asked for by an exit node (or a direct client)."""
        if self.acceptor is None:
            request.sendFrame(ApAnswer.build({"status": InboundStatus.REFUSED}))
            request.close()
            self.log.info("refused a direct tunnel: nothing listens")
            return
        request.sendFrame(ApAnswer.build({"status": InboundStatus.ACCEPTED}))
        self.acceptor(self._owned(None, request, queue, [], False, self.address, TunnelAddress(None)))

    # The owner: outbound

    def open(self, apAddress):
        """
        Open a tunnel to C{apAddress} over one of this node's exit paths (built if there is none).

        @return: a Deferred of the L{OwnerTunnel}, not yet started.
        @raise TunnelFailed: (errback) the tunnel could not be opened.
        """
        return Deferred.fromCoroutine(self._open(apAddress))

    async def _open(self, apAddress):
        if self.ownExit:
            return await self._openDirectly(apAddress)
        path = await self._paths.exitPath()
        block = self._randomBytes(BLOCK_SIZE)
        setup = _OutboundSetup(self, path, apAddress, block)
        self._opening[block] = setup
        try:
            path.link.sendFrame(block)
            return await setup.done.addTimeout(SETUP_TIMEOUT, self._clock)
        except Exception as e:
            setup.abandon()
            if isinstance(e, TunnelFailed):
                raise
            raise TunnelFailed(f"no tunnel to {formatAddress(apAddress)}: {type(e).__name__}: {e}") from e
        finally:
            self._opening.pop(block, None)

    async def _openDirectly(self, apAddress):
        """A tunnel with no exit path: this node asks the entry node itself."""
        link, queue = await self._reachEntry(apAddress)
        try:
            link.sendFrame(ApRequest.build({"ap_address": apAddress}))
            answer = parseStrict(ApAnswer, await self._nextFrame(queue))
            if int(answer.status) != InboundStatus.ACCEPTED:
                raise TunnelFailed(f"{formatAddress(apAddress)} refused the tunnel")
        except TunnelFailed:
            link.close()
            raise
        except Exception as e:
            link.close()
            raise TunnelFailed(f"no tunnel to {formatAddress(apAddress)}: {type(e).__name__}: {e}") from e
        return self._owned(None, link, queue, [], True, self.address, TunnelAddress(apAddress))

    # The owner: inbound

    async def _inbound(self, path, block):
        if path.kind != "entry":
            raise TunnelFailed("a setup block came back over an exit path")
        keySets = self._keySetsOf(path)
        chosen = recoverKeys(keySets, block, BACKWARD, lambda plain: _isEntryInitFor(plain, path.apAddress))
        if chosen is None:
            raise TunnelFailed("an inbound tunnel request that does not check out")
        keys = [keySet.keys[index] for keySet, index in zip(keySets, chosen)]
        status = InboundStatus.ACCEPTED if self.acceptor is not None else InboundStatus.REFUSED
        x0 = path.plan.adjacent
        link = await self._links.connect(x0.host, x0.port, Purpose.TUNNEL, path.link.linkId, x0.nodeId)
        timers = []
        queue = FrameQueue(link, lambda: [timer.cancel() for timer in timers if timer.active()])
        link.attach(queue)
        try:
            link.sendFrame(TunnelOpening.build({"first": block, "second": wrapForHops(keys, buildInboundReply(status, self._randomBytes))}))
            if status != InboundStatus.ACCEPTED:
                # The entry node closes on reading the refusal, and the closing comes back.
                timers.append(self._clock.callLater(SETUP_TIMEOUT, link.close))
                self.log.info("refused an inbound tunnel: nothing listens")
                return
            requireBlock(await self._nextFrame(queue))
            link.sendFrame(self._randomBytes(BLOCK_SIZE))
        except Exception:
            link.close()
            raise
        layers = [StreamLayer(key, applyLayers(keys[: index + 1], block, BACKWARD)) for index, key in enumerate(keys)]
        tunnel = self._owned(path, link, queue, layers, False, self.address, TunnelAddress(None))
        self.acceptor(tunnel)

    def _owned(self, path, link, queue, layers, sendsAlong, host, peer):
        tunnel = OwnerTunnel(link, layers, sendsAlong, host, peer, self._clock)
        tunnel.openedAt = self._clock.seconds()
        tunnel.outbound = sendsAlong
        self.tunnels.add(tunnel)
        pathGone = None

        def closed():
            self.tunnels.discard(tunnel)
            if pathGone is not None:
                pathGone.cancel()

        tunnel.whenClosed.append(closed)
        queue.handOver(tunnel)
        if path is not None:
            pathGone = path.onGone(tunnel.loseConnection)
        return tunnel

    # Helpers

    async def _nextFrame(self, queue):
        return await queue.next().addTimeout(SETUP_TIMEOUT, self._clock)

    def _run(self, coroutine, what):
        def failed(failure):
            if failure.check(ProtocolError, TunnelFailed):
                self.log.warn("{what} failed: {why}", what=what, why=failure.getErrorMessage())
            else:
                self.log.info("{what} ended: {why}", what=what, why=failure.getErrorMessage())

        Deferred.fromCoroutine(coroutine).addErrback(failed)

    def startService(self):
        super().startService()
        self._expiry = LoopingCall(self.expireIdle)
        self._expiry.clock = self._clock
        self._expiry.start(min(30.0, self.idleTimeout / 2), now=False)
        if self._ownEntry is not None:
            self._publishing = LoopingCall(self.publishOwnEntry)
            self._publishing.clock = self._clock
            self._publishing.start(self._entryLifetime / 2, now=True)

    def stopService(self):
        super().stopService()
        for loop in (self._expiry, self._publishing):
            if loop is not None and loop.running:
                loop.stop()
        self.stop()

    def publishOwnEntry(self):
        """Publish a routing entry that names this node as the entry node of its own AP-address."""
        now = int(self._clock.seconds())
        host, port = self._links.address
        entry = RoutingEntry.create(self._ownEntry, now, now + int(self._entryLifetime), [Contact(host, port, self._links.nodeId)], now)
        published = Deferred.fromCoroutine(self._dht.storeRecord(Table.ROUTE, entry.key, entry.encoded))
        published.addErrback(lambda failure: self.log.warn("publishing this node's own routing entry failed: {why}", why=failure.getErrorMessage()))
        return published

    def expireIdle(self):
        """
        Close the tunnels this node owns an end of that have been idle for C{idleTimeout}, and
        forget the setup blocks whose tunnel links never came.
        """
        self._forgetExpired()
        now = self._clock.seconds()
        for tunnel in list(self.tunnels):
            if now - tunnel.lastActive >= self.idleTimeout:
                self.log.info("closing a tunnel idle for {seconds:.0f} s", seconds=now - tunnel.lastActive)
                tunnel.loseConnection()

    def stop(self):
        """Close every tunnel this node owns an end of or carries."""
        for tunnel in list(self.tunnels):
            tunnel.loseConnection()
        for splice in list(self.carried):
            splice.close()


def _isEntryInitFor(block, apAddress):
    try:
        return parseEntryInit(block)[0] == apAddress
    except ProtocolError:
        return False


class _OutboundSetup:
    """The owner's side of one outbound tunnel setup, waiting for its tunnel link."""

    def __init__(self, service, path, apAddress, block):
        self._service = service
        self._path = path
        self._apAddress = apAddress
        self._block = block
        self.done = Deferred()
        self._link = None

    def linkArrived(self, link, queue, second):
        service, path = self._service, self._path
        if self._link is not None or link.linkId != path.link.linkId or link.nodeId != path.plan.adjacent.nodeId:
            raise ProtocolError("a tunnel link naming our setup, not from x0 over our path")
        self._link = link
        service._run(self._finish(link, queue, bytes(second)), "an outbound tunnel")

    async def _finish(self, link, queue, second):
        service, path = self._service, self._path
        try:
            keySets = service._keySetsOf(path)
            chosen = recoverKeys(keySets, second, FORWARD, isExitInit)
            if chosen is None:
                raise TunnelFailed("the exit node's init block does not check out")
            keys = [keySet.keys[index] for keySet, index in zip(keySets, chosen)]
            link.sendFrame(wrapForHops(keys, buildOutboundReply(self._apAddress, service._randomBytes)))
            # The exit node's success block, with the relays' transforms peeled off, proves
            # that its stream layer is made from the block this node sent.
            confirmation = applyLayers(keys[:-1], requireBlock(await service._nextFrame(queue)), FORWARD)
            if confirmation != exitConfirmation(keys[-1], applyLayers(keys[:-1], self._block, FORWARD)):
                raise TunnelFailed("the exit node's success block does not check out: a relay altered the setup block")
        except Exception as e:
            link.close()
            # Nothing is reported back along a tunnel: the exit node just closes it.
            why = "the exit node closed it: no entry node answered, or the owner refused" if isinstance(e, LinkFailed) else str(e)
            if not self.done.called:
                self.done.errback(TunnelFailed(f"no tunnel to {formatAddress(self._apAddress)}: {why}"))
            return
        layers = [StreamLayer(key, applyLayers(keys[:index], self._block, FORWARD)) for index, key in enumerate(keys)]
        tunnel = service._owned(path, link, queue, layers, True, service.address, TunnelAddress(self._apAddress))
        if self.done.called:
            tunnel.loseConnection()
        else:
            self.done.callback(tunnel)

    def abandon(self):
        if self._link is not None:
            self._link.close()
