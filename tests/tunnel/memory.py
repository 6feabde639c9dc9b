"""
Tunnel services on an in-memory network (L{phantom.link.testing.MemoryNetwork}) driven by one
C{task.Clock}: paths laid by hand over PATH links of that network (as the path service leaves
them: what L{TunnelService} uses of L{phantom.path.service.Path} and C{RelayedPath}, and of the
path service), and one network database that validates every record as the real one does.
"""

import os
import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from phantom.address import Contact
from phantom.crypto import apAddressOf
from phantom.errors import PathFailed
from phantom.link.ending import Ending, Goes
from phantom.link.interfaces import ILinkHandler
from phantom.link.testing import MemoryNetwork
from phantom.netdb.records import RoutingEntry, parseRecord
from phantom.path.interfaces import PathKind, Side
from phantom.tunnel.endpoint import EndToEnd
from phantom.tunnel.service import TunnelService
from phantom.wire.dht import Table
from phantom.wire.link import LINK_ID_SIZE, Purpose
from tests.tunnel.tampering import Tampering

KEY_COUNT = 6
"""Keys per X-node: few, so that key recovery takes no time."""


class MemoryDht:
    """C{findRecord} and C{storeRecord} over one table for the whole network, each record checked by L{parseRecord}."""

    def __init__(self, clock):
        self._clock = clock
        self.records = {}

    async def storeRecord(self, table, key, encoded):
        parseRecord(table, key, encoded, int(self._clock.seconds()))
        self.records[(Table(table), key)] = encoded
        return 1

    async def findRecord(self, table, key):
        encoded = self.records.get((Table(table), key))
        return None if encoded is None else parseRecord(table, key, encoded, int(self._clock.seconds()))


@implementer(ILinkHandler)
class _PathLinkHandler:
    def __init__(self, onFrame, onClosed):
        self.frameReceived = onFrame
        self._onClosed = onClosed

    def linkClosed(self, reason):
        self._onClosed()


@dataclass
class Plan:
    xNodes: list
    adjacent: Contact
    terminating: object


@dataclass
class OwnedPath(Goes):
    """A path a node owns: what tunnels use of L{phantom.path.service.Path}."""

    kind: PathKind
    plan: Plan
    apAddress: bytes
    keySeeds: dict
    keyCount: int
    link: object = None
    ending: Ending = field(default_factory=Ending)

    def close(self):
        self.link.close()


class RelayedPath(Goes):
    """A node's place in a path: what tunnels use of L{phantom.path.service.RelayedPath}."""

    def __init__(self, node, contacts, linkIds, keySeed, terminating, routingEntry):
        self._node = node
        self.contacts = contacts
        self.linkIds = linkIds
        self.links = {Side.PREVIOUS: None, Side.NEXT: None}
        self.keySeed = keySeed
        self.keyCount = KEY_COUNT
        self.terminating = terminating
        self.routingEntry = routingEntry
        self.ending = Ending()

    def sides(self):
        return [side for side, contact in self.contacts.items() if contact is not None]

    def linked(self, side, link):
        self.links[side] = link
        return _PathLinkHandler(lambda payload: self._node.tunnels.pathFrameReceived(self, side, payload), self.close)

    def close(self):
        if self.gone:
            return
        for link in self.links.values():
            if link is not None:
                link.close()
        self._node.paths.relaying.remove(self)
        self.ending.end()

    tearDown = close


class MemoryPaths:
    """One node's paths: what L{TunnelService} asks of L{phantom.path.service.PathService}."""

    def __init__(self):
        self.paths = []
        self.relaying = []

    def exitPath(self):
        exits = [path for path in self.paths if path.kind == PathKind.EXIT and not path.gone]
        return succeed(exits[0]) if exits else fail(PathFailed("no exit path"))

    def entryPathFor(self, apAddress):
        for relayed in self.relaying:
            if relayed.routingEntry is not None and relayed.routingEntry.apAddress == apAddress and relayed.links[relayed.sides()[0]] is not None:
                return relayed
        return None

    @property
    def isEntryNode(self):
        return any(relayed.routingEntry is not None for relayed in self.relaying)


class MemoryNode:
    """
    A node of a L{MemoryTunnelNetwork}: C{links}, C{paths}, C{tunnels}, C{routingKey},
    C{apAddress}, C{endToEnd} (on the network's clock); C{options} for its tunnel service, and
    C{ownEntry=True}, C{tampering=True} (its L{Tampering} as C{tampering}).
    """

    def __init__(self, network, index, **options):
        self.links = network.memory.linkService()
        self.nodeId = self.links.nodeId
        self.contact = Contact(*self.links.address, self.nodeId)
        self.routingKey = Ed25519PrivateKey.generate()
        self.apAddress = apAddressOf(self.routingKey.public_key())
        self.paths = MemoryPaths()
        self._awaited = {}
        self.links.registerPurpose(Purpose.PATH, lambda link: self._awaited.pop(link.linkId)(link))
        if options.pop("ownEntry", False):
            options["ownEntry"] = self.routingKey
        if options.pop("tampering", False):
            self.tampering = options["relaySetup"] = Tampering()
        self.tunnels = TunnelService(
            self.links, self.paths, network.dht, network.clock, self.apAddress, random.Random(index), **options
        )
        self.endToEnd = EndToEnd(self.routingKey, network.clock)

    def expectPathLink(self, linkId, relayed):
        self._awaited[linkId] = lambda link: relayed.linked(Side.PREVIOUS, link)


class MemoryTunnelNetwork:
    """
    C{count} L{MemoryNode}s on one clock (C{options}: node index to more keyword arguments of
    its tunnel service; C{every}: keyword arguments for all).
    """

    def __init__(self, count, options=None, **every):
        self.clock = Clock()
        self.memory = MemoryNetwork(self.clock)
        self.dht = MemoryDht(self.clock)
        self.nodes = [MemoryNode(self, index, **{**every, **(options or {}).get(index, {})}) for index in range(count)]

    def run(self, seconds=0.0):
        """Let C{seconds} pass, a turn at a time, and every turn due by then run."""
        end = self.clock.seconds() + seconds
        while True:
            due = [call.getTime() for call in self.clock.getDelayedCalls() if call.getTime() <= end]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))
        self.clock.advance(max(0.0, end - self.clock.seconds()))

    def buildPath(self, owner, kind, hops):
        """
        Lay a path of C{kind} from C{owner} through C{hops} (x0 first, T last), as the path
        service would leave it; an entry path's routing entry is published.

        @return: the owner's L{OwnedPath}.
        """
        contacts = [owner.contact] + [hop.contact for hop in hops]
        linkIds = [os.urandom(LINK_ID_SIZE) for _ in hops]
        seeds = [os.urandom(32) for _ in hops]
        routingEntry = None
        if kind == PathKind.ENTRY:
            now = int(self.clock.seconds())
            routingEntry = RoutingEntry.create(owner.routingKey, now, now + 3600, [hops[-1].contact], now)
            self.dht.records[(Table.ROUTE, routingEntry.key)] = routingEntry.encoded
        relayed = []
        for index, hop in enumerate(hops):
            last = index == len(hops) - 1
            place = RelayedPath(
                hop,
                {Side.PREVIOUS: contacts[index], Side.NEXT: None if last else contacts[index + 2]},
                {Side.PREVIOUS: linkIds[index], Side.NEXT: None if last else linkIds[index + 1]},
                seeds[index], last, routingEntry if last else None,
            )
            hop.paths.relaying.append(place)
            hop.expectPathLink(linkIds[index], place)
            relayed.append(place)
        path = OwnedPath(
            kind, Plan([hop.contact for hop in hops], contacts[1], hops[-1].contact),
            owner.apAddress, {hop.nodeId: seed for hop, seed in zip(hops, seeds)}, KEY_COUNT,
        )

        def ownerLinked(link):
            path.link = link
            link.attach(_PathLinkHandler(lambda payload: owner.tunnels.pathFrameReceived(path, None, payload), lambda: self._lost(owner, path)))

        def hopLinked(place, link):
            link.attach(place.linked(Side.NEXT, link))

        owner.links.connect(contacts[1].host, contacts[1].port, Purpose.PATH, linkIds[0], hops[0].nodeId).addCallback(ownerLinked)
        for index, hop in enumerate(hops[:-1]):
            hop.links.connect(contacts[index + 2].host, contacts[index + 2].port, Purpose.PATH, linkIds[index + 1], hops[index + 1].nodeId).addCallback(
                lambda link, place=relayed[index]: hopLinked(place, link)
            )
        self.run()
        owner.paths.paths.append(path)
        return path

    def _lost(self, owner, path):
        if path in owner.paths.paths:
            owner.paths.paths.remove(path)
        path.ending.end()

    def relayedOn(self, node, path):
        """C{node}'s place in C{path}."""
        seed = path.keySeeds[node.nodeId]
        return next(relayed for relayed in node.paths.relaying if relayed.keySeed == seed)

    def leftovers(self, remembered=True):
        """What tunnels left behind, as L{tests.tunnel.helpers.leftovers} finds it on real nodes."""
        found = []
        for index, node in enumerate(self.nodes):
            held = {
                "owned tunnels": len(node.tunnels.tunnels),
                "carried splices": len(node.tunnels.carried),
                "TUNNEL/ENTRY links": sum(1 for link in node.links.links if link.purpose in (Purpose.TUNNEL, Purpose.ENTRY)),
                "setups under way": len(node.tunnels.opening),
            }
            if remembered:
                held["remembered blocks"] = len(node.tunnels.remembered)
            found.extend((index, what, count) for what, count in held.items() if count)
        return found
