"""
A node's part in building someone's routing path, sans-io: what it checks in each round and
what it does next. Any failed check raises L{SetupRejected}; the node then stays silent,
closes and forgets (paper §7.1.1 step 7: nothing is ever reported backwards).
"""

from dataclasses import dataclass

from phantom.address import Contact, addressBytes, hostOf
from phantom.netdb.records import InvalidRecord, RoutingEntry, routeKey
from phantom.path.array import SetupRejected, checkArray, openOwnSlot, passOn
from phantom.path.circle import MAX_KEY_COUNT, MIN_KEY_COUNT
from phantom.wire.path import Role

ZERO_ADDRESS = bytes(16)


@dataclass(frozen=True)
class Forward:
    """Pass C{slots} on to C{to} over the link with C{linkId} (round 1: open it; round 2: reuse it)."""

    to: Contact
    linkId: bytes
    slots: list


@dataclass(frozen=True)
class Rewiring:
    """What an X-node does after round 2 to take its place in the finished path."""

    expectFrom: Contact
    """Who connects to this node in the finished path, or C{None} (a reversed circle's T)."""
    expectLinkId: bytes
    connectTo: Contact
    """Whom this node connects to in the finished path, or C{None} (a normal circle's T)."""
    connectLinkId: bytes
    keySeed: bytes
    keyCount: int
    terminating: bool
    routingEntry: object
    """For T on an entry path, the verified L{RoutingEntry} to publish; otherwise C{None}."""


def roleOf(package):
    """The L{Role} a parsed setup package gives its recipient."""
    return Role(package.role.intvalue)


def _contactOf(neighbour):
    if neighbour.address == ZERO_ADDRESS and neighbour.port == 0:
        return None
    return Contact(hostOf(neighbour.address), neighbour.port, neighbour.node_id)


class Participation:
    """
    This node's part in one path under construction.

    @param pathBuildingKey: this node's X25519 private path-building key.
    @param nodeId: this node's id (an entry path's routing entry must name it).
    @param tried: called for each slot this node's key is tried on (L{openOwnSlot}).
    """

    def __init__(self, pathBuildingKey, nodeId, tried=lambda: None):
        self._key = pathBuildingKey
        self._nodeId = nodeId
        self._tried = tried
        self.first = None
        """The round-1 package, once accepted."""

    @property
    def role(self):
        """This node's L{Role} in the path, once round 1 is accepted."""
        return roleOf(self.first) if self.first is not None else None

    def firstRound(self, slots, linkId, peerHost, peerNodeId):
        """
        The round-1 array arrived over the link C{linkId} from C{peerHost} (node C{peerNodeId}).

        @return: a L{Forward}.
        @raise SetupRejected: not for us, not as predicted, or from the wrong node.
        """
        opened = openOwnSlot(slots, linkId, 1, self._key, tried=self._tried)
        checkArray(slots, opened)
        package = opened.package
        # The array hash leaves our own slot out; its signature covers the rest of it.
        if not opened.signedBy(package.construction_key):
            raise SetupRejected("our slot is not signed by the construction key it names")
        previous = package.previous
        if previous.link_id != linkId:
            raise SetupRejected("the array came over another link than the package names")
        if previous.address != addressBytes(peerHost) or previous.node_id != peerNodeId:
            raise SetupRejected(f"the array came from {peerHost}, not from the node the package names")
        if package.success or package.entry or package.key_count:
            raise SetupRejected("round-2 fields in a round-1 package")
        following = _contactOf(package.next)
        if following is None:
            raise SetupRejected("no next node in a round-1 package")
        self.first = package
        return Forward(following, package.next.link_id, passOn(slots, opened))

    def secondRound(self, slots, now):
        """
        The round-2 array arrived over the round-1 link from the previous node.

        @param now: the time, to judge an entry path's routing entry.
        @return: C{(Forward, Rewiring or None)}: where the array goes (the round-1 next node),
            and for an X-node how it joins the finished path.
        @raise SetupRejected: not signed by the path's construction key, no success flag,
            another role than in round 1, for an X-node a key count out of L{MIN_KEY_COUNT} to
            L{MAX_KEY_COUNT}, or a routing entry that is not valid for this node.
        """
        if self.first is None:
            raise SetupRejected("round 2 before round 1")
        opened = openOwnSlot(slots, self.first.previous.link_id, 2, self._key, tried=self._tried)
        checkArray(slots, opened)
        if not opened.signedBy(self.first.construction_key):
            raise SetupRejected("round 2 is not signed by the path's construction key")
        package = opened.package
        if not package.success:
            raise SetupRejected("round 2 without the success flag")
        if roleOf(package) != self.role:
            raise SetupRejected("another role in round 2 than in round 1")
        forward = Forward(_contactOf(self.first.next), self.first.next.link_id, passOn(slots, opened))
        if self.role == Role.Y:
            return forward, None
        if not MIN_KEY_COUNT <= package.key_count <= MAX_KEY_COUNT:
            raise SetupRejected(f"a key count of {package.key_count}, not {MIN_KEY_COUNT} to {MAX_KEY_COUNT}")
        entry = None
        if package.entry:
            if self.role != Role.T:
                raise SetupRejected("an entry path's routing entry for a node that is not T")
            try:
                entry = RoutingEntry.parse(package.routing_entry, routeKey(package.ap_address), now)
            except InvalidRecord as e:
                raise SetupRejected(f"the routing entry to publish is invalid: {e}") from e
            if self._nodeId not in {node.nodeId for node in entry.entryNodes}:
                raise SetupRejected("the routing entry to publish does not name this node")
        rewiring = Rewiring(
            _contactOf(package.previous),
            package.previous.link_id,
            _contactOf(package.next),
            package.next.link_id,
            package.key_seed,
            package.key_count,
            self.role == Role.T,
            entry,
        )
        if rewiring.connectTo is None and rewiring.expectFrom is None:
            raise SetupRejected("an X-node with no neighbour in the finished path")
        return forward, rewiring
