"""
The records of the network database, validated before they are stored or believed.

- A L{NodeRecord} says where a node listens and which keys it has; signed with its
  communication key and stored under its node id.
- A L{RoutingEntry} says which entry nodes lead to an AP-address; signed with the routing key
  that hashes to that AP-address and stored under SHA-256 of the 16-byte AP-address.
- An L{OpaqueValue} is what a program put through the VoidPhone module API; anyone may
  overwrite it, and it lives for a clamped TTL.
"""

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from phantom.address import Contact, addressBytes, hostOf
from phantom.crypto import (
    apAddressOf,
    nodeIdOfPublicKey,
    rawPublicBytes,
    signWithDomain,
    verifyWithDomain,
)
from phantom.wire import ProtocolError, dht as wire, parseStrict
from phantom.wire.dht import MAX_VALUE, Table

NODE_RECORD_LIFETIME = 3 * 3600
"""Seconds a node record is believed after its timestamp; owners republish well before."""

MAX_ROUTE_LIFETIME = 24 * 3600
"""A routing entry may not claim to be valid for longer than this."""

MAX_CLOCK_SKEW = 300
"""Seconds a record's timestamp may lie in the future before it is rejected."""

NODE_RECORD_DOMAIN = b"phantom node record"
ROUTING_ENTRY_DOMAIN = b"phantom routing entry"


class InvalidRecord(Exception):
    """A record that must not be stored or believed; the message says why."""


def contactOf(parsed):
    """A L{Contact} from a parsed wire contact or entry node."""
    return _contact(parsed.address, parsed.port, parsed.node_id)


@functools.lru_cache(maxsize=4096)
def _contact(address, port, nodeId):
    # A node hears of the same contacts over and over (every NODES reply names 20); a Contact
    # is immutable, so one object serves them all.
    return Contact(hostOf(address), port, nodeId)


def routeKey(apAddress):
    """The key a routing entry for C{apAddress} (16 bytes) is stored under."""
    return hashlib.sha256(apAddress).digest()


def _parse(schema, encoded):
    try:
        return parseStrict(schema, encoded)
    except ProtocolError as e:
        raise InvalidRecord(str(e)) from e


class VerifiedRecords:
    """
    Records already checked, by their encoded bytes, the most recently used kept: a node hears
    the same node records over and over (every SAMPLE reply, every republished STORE, every
    lookup that finds one), and checking the same bytes again gives the same answer. Only what
    the bytes alone decide is kept (form, key, signature); the time is checked on every use.
    A peer sending new records only pushes older ones out: each costs what it costs unkept.

    @ivar size: how many records are kept at most.
    """

    def __init__(self, size):
        self.size = size
        self._records = OrderedDict()

    def get(self, encoded):
        """@return: the record checked for C{encoded}, or C{None}."""
        record = self._records.get(encoded)
        if record is not None:
            self._records.move_to_end(encoded)
        return record

    def add(self, encoded, record):
        """Keep C{record}, checked, as what C{encoded} gives, dropping the least recently used beyond L{size}."""
        self._records[encoded] = record
        while len(self._records) > self.size:
            self._records.popitem(last=False)

    def __len__(self):
        return len(self._records)


VERIFIED_NODE_RECORDS = VerifiedRecords(1024)
"""
The node records this process checked lately (about 1 KiB each). The simulation
(L{phantom.sim}), whose one process runs thousands of nodes, makes it larger.
"""


def _checkTimestamp(timestamp, now):
    if timestamp > now + MAX_CLOCK_SKEW:
        raise InvalidRecord(f"timestamp {timestamp} lies in the future")


@dataclass(frozen=True)
class NodeRecord:
    """Where a node listens and its public keys."""

    nodeId: bytes
    host: str
    port: int
    communicationKey: bytes
    pathBuildingKey: bytes
    timestamp: int
    encoded: bytes

    table = Table.NODE

    @property
    def key(self):
        return self.nodeId

    @property
    def expires(self):
        return self.timestamp + NODE_RECORD_LIFETIME

    @property
    def contact(self):
        return Contact(self.host, self.port, self.nodeId)

    @classmethod
    def create(cls, identity, host, port, timestamp):
        """The signed node record of C{identity}, reachable at C{host:port}."""
        body = wire.NodeRecordBody.build(
            {
                "format": wire.RECORD_FORMAT,
                "address": addressBytes(host),
                "port": port,
                "communication_key": rawPublicBytes(identity.communicationKey.public_key()),
                "path_building_key": rawPublicBytes(identity.pathBuildingKey.public_key()),
                "timestamp": int(timestamp),
            }
        )
        signature = signWithDomain(identity.communicationKey, NODE_RECORD_DOMAIN, body)
        return cls.parse(body + signature, identity.nodeId, timestamp)

    @classmethod
    def parse(cls, encoded, key, now):
        """
        @param key: the key it was stored or found under: the node id it must belong to.
        @raise InvalidRecord: malformed, badly signed, not the key's node, from the future, or expired.
        """
        encoded = bytes(encoded)
        record = VERIFIED_NODE_RECORDS.get(encoded)
        if record is None:
            record = cls._check(encoded, key)
            VERIFIED_NODE_RECORDS.add(encoded, record)
        elif record.nodeId != key:
            raise InvalidRecord("node record: its key is not the node id's")
        _checkTimestamp(record.timestamp, now)
        if record.timestamp + NODE_RECORD_LIFETIME <= now:
            raise InvalidRecord("node record: expired")
        return record

    @classmethod
    def _check(cls, encoded, key):
        """
        What the bytes alone decide of L{parse}: form, key and signature.

        @return: the record, its time not checked.
        """
        parsed = _parse(wire.NodeRecord, encoded)
        body = parsed.body.value
        try:
            communicationKey = ed25519.Ed25519PublicKey.from_public_bytes(body.communication_key)
        except ValueError as e:
            raise InvalidRecord(f"node record: bad communication key ({e})") from e
        nodeId = nodeIdOfPublicKey(communicationKey)
        if nodeId != key:
            raise InvalidRecord("node record: its key is not the node id's")
        if not verifyWithDomain(body.communication_key, NODE_RECORD_DOMAIN, parsed.body.data, parsed.signature):
            raise InvalidRecord("node record: bad signature")
        return cls(
            nodeId,
            hostOf(body.address),
            body.port,
            body.communication_key,
            body.path_building_key,
            body.timestamp,
            bytes(encoded),
        )

    @classmethod
    def parseSelfKeyed(cls, encoded, now):
        """
        Validate a node record that came without its key (a SAMPLE reply): the key is the node id
        its own communication key gives.

        @raise InvalidRecord: as L{parse}.
        """
        known = VERIFIED_NODE_RECORDS.get(bytes(encoded))
        if known is not None:
            return cls.parse(encoded, known.nodeId, now)
        body = _parse(wire.NodeRecord, encoded).body.value
        try:
            nodeId = nodeIdOfPublicKey(ed25519.Ed25519PublicKey.from_public_bytes(body.communication_key))
        except ValueError as e:
            raise InvalidRecord(f"node record: bad communication key ({e})") from e
        return cls.parse(encoded, nodeId, now)

    def supersedes(self, other):
        """Whether this record may replace C{other}, the one stored: it is not older."""
        return self.timestamp >= other.timestamp


@dataclass(frozen=True)
class RoutingEntry:
    """The entry nodes of an AP-address, signed by the routing key that owns the address."""

    apAddress: bytes
    sequence: int
    expires: int
    routingKey: bytes
    entryNodes: tuple
    encoded: bytes

    table = Table.ROUTE

    @property
    def key(self):
        return routeKey(self.apAddress)

    @classmethod
    def create(cls, routingPrivateKey, sequence, expires, entryNodes, now):
        """
        A routing entry signed by C{routingPrivateKey} for the AP-address it owns.

        @param entryNodes: L{Contact}s of the entry nodes, with node ids.
        """
        routingKey = rawPublicBytes(routingPrivateKey.public_key())
        apAddress = apAddressOf(routingKey)
        body = wire.RoutingEntryBody.build(
            {
                "format": wire.RECORD_FORMAT,
                "ap_address": apAddress,
                "sequence": sequence,
                "expires": int(expires),
                "routing_key": routingKey,
                "entry_nodes": [
                    {"node_id": node.nodeId, "address": addressBytes(node.host), "port": node.port}
                    for node in entryNodes
                ],
            }
        )
        signature = signWithDomain(routingPrivateKey, ROUTING_ENTRY_DOMAIN, body)
        return cls.parse(body + signature, routeKey(apAddress), now)

    @classmethod
    def parse(cls, encoded, key, now):
        """
        @param key: the key it was stored or found under: SHA-256 of its AP-address.
        @raise InvalidRecord: malformed, badly signed, for another AP-address, expired, or
            claiming too long a life.
        """
        parsed = _parse(wire.RoutingEntry, encoded)
        body = parsed.body.value
        if apAddressOf(body.routing_key) != body.ap_address:
            raise InvalidRecord("routing entry: the routing key does not own the AP-address")
        if routeKey(body.ap_address) != key:
            raise InvalidRecord("routing entry: its key is not its AP-address's")
        if not verifyWithDomain(body.routing_key, ROUTING_ENTRY_DOMAIN, parsed.body.data, parsed.signature):
            raise InvalidRecord("routing entry: bad signature")
        if body.expires <= now:
            raise InvalidRecord("routing entry: expired")
        if body.expires > now + MAX_ROUTE_LIFETIME + MAX_CLOCK_SKEW:
            raise InvalidRecord("routing entry: claims to be valid too long")
        return cls(
            body.ap_address,
            body.sequence,
            body.expires,
            body.routing_key,
            tuple(contactOf(node) for node in body.entry_nodes),
            bytes(encoded),
        )

    @property
    def entryNode(self):
        """The node id of the entry node this entry is of (its first): a node keeps one entry per entry node."""
        return self.entryNodes[0].nodeId

    def supersedes(self, other):
        """
        Whether this entry may replace C{other}, the one stored for the same entry node: it is
        newer, or the same entry again (a republish). An equal sequence with other contents
        changes nothing: the first one stays.
        """
        return self.sequence > other.sequence or self.encoded == other.encoded


@dataclass(frozen=True)
class RouteSet:
    """
    The valid routing entries of one AP-address, at most one per entry node (the newest) and
    L{wire.MAX_ROUTES} in all, the highest sequence first: what a node stores for an
    AP-address, what a FIND_VALUE of the ROUTE table returns (as L{encoded}), and what a lookup
    finds when it has merged every reply.

    An owner's newest entry names every entry node it has (its own first): an older entry of
    an entry node the newest does not name is stale (that entry path has gone) and is left out.

    @ivar entries: the L{RoutingEntry}s.
    """

    entries: tuple

    table = Table.ROUTE

    @classmethod
    def of(cls, entries):
        """
        The route set of C{entries} (of one AP-address): for each entry node the entry of the
        highest sequence, highest first, without the stale ones (of entry nodes the newest
        entry does not name), the lowest left out beyond L{wire.MAX_ROUTES}.
        """
        newest = {}
        for entry in entries:
            held = newest.get(entry.entryNode)
            if held is None or entry.sequence > held.sequence:
                newest[entry.entryNode] = entry
        ordered = sorted(newest.values(), key=lambda entry: (-entry.sequence, entry.entryNode))
        if ordered:
            top = ordered[0]
            named = {node.nodeId for node in top.entryNodes}
            ordered = [entry for entry in ordered if entry.sequence == top.sequence or entry.entryNode in named]
        return cls(tuple(ordered[: wire.MAX_ROUTES]))

    @classmethod
    def parse(cls, encoded, key, now):
        """
        @param key: the key it was found under: SHA-256 of its AP-address.
        @raise InvalidRecord: malformed, or an entry in it is not a valid routing entry for
            that key (then none of it is believed), or two are of one entry node.
        """
        entries = [RoutingEntry.parse(bytes(entry), key, now) for entry in _parse(wire.RouteSet, encoded).entries]
        if len({entry.entryNode for entry in entries}) != len(entries):
            raise InvalidRecord("route set: two entries of one entry node")
        return cls.of(entries)

    @property
    def encoded(self):
        """The set as a FIND_VALUE reply carries it."""
        return wire.RouteSet.build({"entries": [entry.encoded for entry in self.entries]})

    @property
    def newest(self):
        """The entry of the highest sequence."""
        return self.entries[0]

    @property
    def apAddress(self):
        return self.newest.apAddress

    @property
    def key(self):
        return self.newest.key

    @property
    def sequence(self):
        """The highest sequence."""
        return self.newest.sequence

    @property
    def expires(self):
        """When the last of its entries expires."""
        return max(entry.expires for entry in self.entries)

    @property
    def entryNodes(self):
        """
        Every entry node the entries name that the newest entries name (or that has an entry),
        those of higher sequences first, each once.
        """
        if not self.entries:
            return ()
        current = {entry.entryNode for entry in self.entries}
        current.update(node.nodeId for entry in self.entries if entry.sequence == self.sequence for node in entry.entryNodes)
        nodes = {}
        for entry in self.entries:
            for node in entry.entryNodes:
                if node.nodeId in current:
                    nodes.setdefault(node.nodeId, node)
        return tuple(nodes.values())

    def lacks(self, other):
        """@return: the entries of C{other} (a L{RouteSet}) this set has nothing as new as."""
        held = {entry.entryNode: entry.sequence for entry in self.entries}
        return [entry for entry in other.entries if held.get(entry.entryNode, -1) < entry.sequence]


@dataclass(frozen=True)
class OpaqueValue:
    """A value of the VoidPhone module API: any bytes, 1 to L{MAX_VALUE} of them."""

    key: bytes
    encoded: bytes

    table = Table.VALUE

    @classmethod
    def parse(cls, encoded, key, now):
        """@raise InvalidRecord: empty or oversized."""
        if not 1 <= len(encoded) <= MAX_VALUE:
            raise InvalidRecord(f"value of {len(encoded)} bytes; 1 to {MAX_VALUE} allowed")
        return cls(key, bytes(encoded))

    def supersedes(self, other):
        """The last writer wins."""
        return True


RECORD_TYPES = {Table.NODE: NodeRecord, Table.ROUTE: RoutingEntry, Table.VALUE: OpaqueValue}


def parseFound(table, key, encoded, now):
    """
    Validate C{encoded}, a FIND_VALUE reply's value from C{table} under C{key}: a L{RouteSet}
    for the ROUTE table, a record as L{parseRecord} gives for the others.

    @raise InvalidRecord: it must not be believed.
    """
    if wire.asTable(table) == Table.ROUTE:
        if len(key) != wire.KEY_SIZE:
            raise InvalidRecord(f"key of {len(key)} bytes")
        return RouteSet.parse(encoded, key, now)
    return parseRecord(table, key, encoded, now)


def parseRecord(table, key, encoded, now):
    """
    Validate C{encoded} as a record of C{table} stored under C{key} at time C{now}.

    @return: a L{NodeRecord}, L{RoutingEntry} or L{OpaqueValue}.
    @raise InvalidRecord: it must not be stored or believed.
    """
    if len(key) != wire.KEY_SIZE:
        raise InvalidRecord(f"key of {len(key)} bytes")
    return RECORD_TYPES[wire.asTable(table)].parse(encoded, key, now)
