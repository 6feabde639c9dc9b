"""
The owner's side of building one routing path, sans-io: the packages of both rounds, the link
ids, and what must come back.

Both rounds travel the same circle over the same links: the owner sends the array to the first
node over a link with id C{linkIds[0]}, node i forwards it over C{linkIds[i + 1]}, and the last
node sends it back to the owner over C{linkIds[-1]}. In round 1 every node learns its circle
neighbours; in round 2 each X-node also learns its neighbours in the finished path (new link
ids, made along the direction the arrays travel) and the seeds of its key set; T on an entry
path gets the AP-address and the routing entry, pre-signed with the owner's routing key, to
publish. Y-nodes forget the path after round 2.

Only circle neighbours ever see the owner's address: the first and last nodes (always Y-nodes)
and x0 in the finished path. T never does, so a path needs at least two X-nodes.
"""

import os
from dataclasses import dataclass
from enum import Enum, auto

from cryptography.hazmat.primitives.asymmetric import ed25519

from phantom.address import Contact, addressBytes
from phantom.path.array import Hop, buildArray
from phantom.path.interfaces import PathKind
from phantom.path.plan import OWNER, T, X
from phantom.wire.path import LINK_ID_SIZE

NO_NEIGHBOUR = {"address": bytes(16), "port": 0, "node_id": bytes(32), "link_id": bytes(LINK_ID_SIZE)}

DEFAULT_KEY_COUNT = 16
"""How many keys an X-node derives for its key set (paper §7.2; the tunnel key search is over them)."""

MIN_KEY_COUNT = 1
"""The fewest keys a round-2 package may ask an X-node for: a key set cannot be empty."""

MAX_KEY_COUNT = 256
"""
The most keys a round-2 package may ask an X-node for. The paper needs only that each hop's
choice of key is unpredictable (§7.2.3); the owner must search the product of the key counts
(at most C{MAX_COMBINATIONS} of L{phantom.tunnel.keys}, 2**24 = 256**3: three hops at this
bound). Deriving 256 keys costs a relay about 1.5 ms, where 65,535 cost it 0.35 s per path.
"""


class ToX0(Enum):
    """Which end opens the finished path's link between the owner and x0."""

    CONNECT = auto()
    """The owner connects to x0 (a normal circle)."""
    AWAIT = auto()
    """x0 connects to the owner (a reversed circle)."""


class UnsafePath(ValueError):
    """A path shape that would show the owner's address to the terminating node."""


@dataclass(frozen=True)
class RoundPlan:
    """One round as the owner sends it and as it must come back."""

    round: int
    first: Contact
    """The node the owner sends the array to."""
    linkId: bytes
    """The id of the link to the first node (round 1: opened with this id; round 2: reused)."""
    slots: list
    expectedReturn: list
    returnFrom: Contact
    """The node the array must come back from."""
    returnLinkId: bytes
    """The id of the link it comes back over."""


class Construction:
    """
    One path under construction, as its owner knows it.

    @param plan: the L{phantom.path.plan.PathPlan}.
    @param owner: the owner's own L{Contact} (its address, port and node id), shown to its
        circle neighbours only.
    @param random: a C{random.Random}-like source for the arrays (production: C{SystemRandom}).
    @param routingEntry: for an entry path, the encoded routing entry T publishes.
    @param apAddress: for an entry path, the AP-address (16 bytes).
    @param keyCount: how many keys each X-node derives, L{MIN_KEY_COUNT} to L{MAX_KEY_COUNT}.
    @param randomBytes: where link ids and key seeds come from.
    @param expires: for an entry path, when its routing entry expires.
    @raise ValueError: C{keyCount} is out of those bounds.
    """

    def __init__(
        self, plan, owner, random, routingEntry=b"", apAddress=bytes(16), keyCount=DEFAULT_KEY_COUNT, randomBytes=os.urandom, expires=None
    ):
        if len(plan.xNodes) < 2:
            raise UnsafePath("a path needs at least two X-nodes, or T would be the owner's neighbour")
        if not MIN_KEY_COUNT <= keyCount <= MAX_KEY_COUNT:
            raise ValueError(f"a key set has {MIN_KEY_COUNT} to {MAX_KEY_COUNT} keys, not {keyCount}")
        self.plan = plan
        self.owner = owner
        self._random = random
        self._randomBytes = randomBytes
        self.constructionKey = ed25519.Ed25519PrivateKey.generate()
        self.linkIds = [randomBytes(LINK_ID_SIZE) for _ in range(len(plan.circle) + 1)]
        self.routingEntry = routingEntry
        self.apAddress = apAddress
        self.expires = expires
        self.keyCount = keyCount
        self._finishedLinks = {}
        self.keySeeds = {hop.record.nodeId: randomBytes(32) for hop in plan.circle if hop.role in (X, T)}

    def finishedLinkId(self, fromNode, toNode):
        """
        The id of the finished path's link from C{fromNode} to C{toNode} (records or L{OWNER}),
        made in the direction the arrays travel.
        """
        key = (_idOf(fromNode), _idOf(toNode))
        if key not in self._finishedLinks:
            self._finishedLinks[key] = self._randomBytes(LINK_ID_SIZE)
        return self._finishedLinks[key]

    def _neighbour(self, node, linkId):
        if node is None:
            return NO_NEIGHBOUR
        contact = self.owner if node is OWNER else Contact(node.host, node.port, node.nodeId)
        return {"address": addressBytes(contact.host), "port": contact.port, "node_id": contact.nodeId, "link_id": linkId}

    def _fields(self, index, round):
        hop = self.plan.circle[index]
        previous, following = self.plan.neighbours(hop.record)
        fields = {
            "role": hop.role,
            "entry": 0,
            "success": 1 if round == 2 else 0,
            "previous": self._neighbour(previous, self.linkIds[index]),
            "next": self._neighbour(following, self.linkIds[index + 1]),
            "key_seed": bytes(32),
            "key_count": 0,
            "ap_address": bytes(16),
        }
        if round == 2 and hop.role in (X, T):
            newPrevious, newNext = self.plan.rewired(hop.record)
            fields["previous"] = self._neighbour(
                newPrevious, self.finishedLinkId(newPrevious, hop.record) if newPrevious is not None else None
            )
            fields["next"] = self._neighbour(
                newNext, self.finishedLinkId(hop.record, newNext) if newNext is not None else None
            )
            fields["key_seed"] = self.keySeeds[hop.record.nodeId]
            fields["key_count"] = self.keyCount
            if hop.role == T and self.plan.kind == PathKind.ENTRY:
                fields.update(entry=1, ap_address=self.apAddress, routing_entry=self.routingEntry)
        return fields

    def round(self, round):
        """
        Build the array of C{round} (1 or 2).

        @return: a L{RoundPlan}.
        """
        hops = [
            Hop(hop.record.pathBuildingKey, self.linkIds[index], self._fields(index, round))
            for index, hop in enumerate(self.plan.circle)
        ]
        built = buildArray(hops, round, self.constructionKey, self._random)
        first, last = self.plan.circle[0].record, self.plan.circle[-1].record
        return RoundPlan(
            round,
            Contact(first.host, first.port, first.nodeId),
            self.linkIds[0],
            built.initial,
            built.expectedReturn,
            Contact(last.host, last.port, last.nodeId),
            self.linkIds[-1],
        )

    def x0Gap(self):
        """
        As many Y-nodes as lie between two X-nodes of this path, at random: the gap the owner
        acts out before x0 when it opens x0's link (L{phantom.path.owner}).
        """
        return self._random.choice(self.plan.gaps)

    def ownerLink(self):
        """
        How the owner reaches x0 in the finished path.

        @return: C{(ToX0.CONNECT, contact, linkId)} when the owner opens the link to x0, or
            C{(ToX0.AWAIT, contact, linkId)} when x0 opens it to the owner (a reversed circle).
        """
        x0 = self.plan.adjacent
        contact = Contact(x0.host, x0.port, x0.nodeId)
        previous, following = self.plan.rewired(x0)
        if previous is OWNER:
            return ToX0.CONNECT, contact, self.finishedLinkId(OWNER, x0)
        return ToX0.AWAIT, contact, self.finishedLinkId(x0, OWNER)


def _idOf(node):
    return b"owner" if node is OWNER else node.nodeId
