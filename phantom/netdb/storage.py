"""
What a node stores for the network: records by table and key, validated on the way in,
expired on the clock, bounded by what they cost in memory, in total and per storing peer.
"""

from dataclasses import dataclass

from phantom.config import DhtSettings
from phantom.netdb.records import InvalidRecord, RouteSet, parseRecord
from phantom.wire.dht import MAX_ROUTES, Table, asTable

DEFAULT_MAX_BYTES = DhtSettings.maxStoreBytes
"""How many bytes of memory the records a node holds for others may take at most."""

# What an entry costs in memory, on CPython 3.11 (64-bit), measured with tracemalloc by
# tests.netdb.test_storage.StoreMemoryTests: it fills a store with records as they come off the
# wire (fresh bytes nobody else holds), drops everything but the store, and divides the memory
# still traced by the number of entries. Measured: 400 bytes per 1-byte value, 534 when each value
# has a storer of its own (so 134 per storer's account), 921 per node record (155 encoded),
# 1,047 per routing entry with one entry node (180 encoded) and 3,175 with eight (530 encoded:
# 304 per further entry node); 276 more per routing entry of an AP-address of its own since a
# key keeps a route set (the set of its entry nodes). The constants are those, less the encoded bytes, rounded up; that
# test fails if the store charges less than an entry takes, or more than 1.3 times as much.
ENTRY_OVERHEAD = {Table.VALUE: 416, Table.NODE: 784, Table.ROUTE: 920}
"""Bytes an entry of each table costs besides its encoded record (and its entry nodes)."""
ENTRY_NODE_OVERHEAD = 272
"""Bytes each entry node of a stored routing entry costs besides its 50 encoded bytes."""
STORER_OVERHEAD = 160
"""Bytes the account of one storing peer costs (its node id held, its usage)."""


class StoreFull(InvalidRecord):
    """A valid record the store has no room for: in total, or in its storer's share."""


def entryCost(record):
    """@return: the bytes of memory C{record} takes once stored."""
    return ENTRY_OVERHEAD[record.table] + len(record.encoded) + ENTRY_NODE_OVERHEAD * len(getattr(record, "entryNodes", ()))


@dataclass(slots=True)
class StoredRecord:
    """A record held by this node, when it expires, who stored it and what it costs."""

    record: object
    expires: float
    storer: object
    cost: int
    slot: tuple
    """C{(table, key, entry node id)}, the entry node id empty outside the ROUTE table."""


class RecordStore:
    """
    Records by C{(table, key)}, each charged at what it costs in memory (L{entryCost}) to the
    peer that stored its current contents.

    A record that would take the store past C{maxBytes - reserve}, or its storer past
    C{peerShare}, is refused (updates that grow included); records for which C{reserved(table,
    key)} holds (the node records and routing entries this node is responsible for) may also
    use the last C{reserve} bytes, so a store filled with other records still takes them.

    @param clock: C{IReactorTime}; its C{seconds()} is the time records are judged by.
    @param maxValueTtl: module-API values are kept at most this long, whatever they ask.
    @param maxBytes: the bytes of memory all records may take together.
    @param peerShare: the bytes of memory the records one storer stored may take; C{None}:
        C{maxBytes}.
    @param reserve: the bytes of C{maxBytes} only reserved records may use.
    @param reserved: C{reserved(table, key)}: whether a record may use the reserve.
    """

    def __init__(
        self, clock, maxValueTtl=DhtSettings.maxValueTtl, maxBytes=DEFAULT_MAX_BYTES,
        peerShare=None, reserve=0, reserved=lambda table, key: False,
    ):
        if not 0 <= reserve < maxBytes:
            raise ValueError(f"a reserve of {reserve} bytes does not fit a store of {maxBytes}")
        self._clock = clock
        self.maxValueTtl = maxValueTtl
        self.maxBytes = maxBytes
        self.peerShare = maxBytes if peerShare is None else peerShare
        self.reserve = reserve
        self._reserved = reserved
        self._records = {}
        self._routes = {}
        """The entry nodes of the route set stored under each key."""
        self._usage = {}
        self.size = 0
        """The bytes of memory charged for the records held and their storers."""

    def put(self, table, key, encoded, ttl=None, storer=None):
        """
        Validate and store a record; a stored record is only replaced by one that supersedes it.
        Routing entries are kept one per entry node (L{RouteSet}), at most C{MAX_ROUTES} for an
        AP-address: an entry replaces that entry node's entry, and a full set gives up its
        oldest entry for a newer one.

        @param ttl: for module-API values, the lifetime asked for (clamped to 1 ..
            C{maxValueTtl} seconds); records of the other tables carry their own lifetime.
        @param storer: who stores it: the peer's node id, C{None} for this node.
        @return: the stored record object.
        @raise StoreFull: the record is valid but there is no room for it.
        @raise InvalidRecord: the record is invalid or older than the one stored.
        """
        now = self._clock.seconds()
        record = parseRecord(table, key, encoded, now)
        if record.table == Table.VALUE:
            expires = now + min(max(int(ttl or 0), 1), self.maxValueTtl)
        else:
            expires = record.expires
        slot = (record.table, bytes(key), record.entryNode if record.table == Table.ROUTE else b"")
        stored = self._live(slot, now)
        if stored is not None and not record.supersedes(stored.record):
            raise InvalidRecord(f"{record.table.name.lower()} record older than the one stored")
        if stored is not None and stored.record.encoded == record.encoded:
            # The same record again (a republish): it stays charged to whoever stored it first.
            storer = stored.storer
        displaced = self._displaced(record, slot, now) if stored is None and record.table == Table.ROUTE else None
        cost = entryCost(record)
        self._checkRoom(record, storer, cost, stored or displaced)
        if stored is not None:
            self._release(stored)
        if displaced is not None:
            self._drop(displaced.slot)
        self._records[slot] = StoredRecord(record, expires, storer, cost, slot)
        if record.table == Table.ROUTE:
            self._routes.setdefault(slot[1], set()).add(slot[2])
        self.size += cost if storer in self._usage else cost + STORER_OVERHEAD
        self._usage[storer] = self._usage.get(storer, STORER_OVERHEAD) + cost
        return record

    def _displaced(self, entry, slot, now):
        """
        The stored entry a new entry node's C{entry} takes the place of in a full route set:
        the oldest, if C{entry} is newer. @raise InvalidRecord: the set is full of newer ones.
        """
        held = [stored for stored in self._routeEntries(slot[1], now)]
        if len(held) < MAX_ROUTES:
            return None
        oldest = min(held, key=lambda stored: stored.record.sequence)
        if oldest.record.sequence >= entry.sequence:
            raise InvalidRecord("routing entry older than every one of the full route set stored")
        return oldest

    def _routeEntries(self, key, now):
        """The live stored entries of the route set under C{key}."""
        entries = []
        for entryNode in list(self._routes.get(key, ())):
            stored = self._live((Table.ROUTE, key, entryNode), now)
            if stored is not None:
                entries.append(stored)
        return entries

    def _checkRoom(self, record, storer, cost, stored):
        """@raise StoreFull: C{record} at C{cost}, replacing C{stored}, does not fit."""
        usage = self._usage.get(storer, STORER_OVERHEAD)
        grows = cost + (STORER_OVERHEAD if storer not in self._usage else 0)
        if stored is not None:
            grows -= stored.cost
            if stored.storer == storer:
                usage -= stored.cost
        if usage + cost > self.peerShare and usage + cost > self._usage.get(storer, 0):
            raise StoreFull("the storer's share of the record store is full")
        if grows > 0 and self.size + grows > self.maxBytes - self.reserve:
            if self.size + grows > self.maxBytes or not self._reserved(record.table, record.key):
                raise StoreFull("the record store is full")

    def usage(self, storer):
        """@return: the bytes of memory charged to C{storer} (C{None}: this node)."""
        return self._usage.get(storer, 0)

    def get(self, table, key):
        """
        @return: the live record stored under C{key} in C{table} (for the ROUTE table, the
            L{RouteSet} of the live entries), or C{None}.
        """
        now = self._clock.seconds()
        table = asTable(table)
        if table == Table.ROUTE:
            entries = self._routeEntries(bytes(key), now)
            return RouteSet.of([stored.record for stored in entries]) if entries else None
        stored = self._live((table, key if type(key) is bytes else bytes(key), b""), now)
        return stored.record if stored else None

    def remaining(self, table, key):
        """@return: seconds the record under C{key} has left (the last entry of a route set), or 0."""
        now = self._clock.seconds()
        if Table(table) == Table.ROUTE:
            return max((stored.expires - now for stored in self._routeEntries(bytes(key), now)), default=0)
        stored = self._live((Table(table), bytes(key), b""), now)
        return stored.expires - now if stored else 0

    def expire(self):
        """Drop every expired record. @return: how many were dropped."""
        now = self._clock.seconds()
        dead = [slot for slot, stored in self._records.items() if stored.expires <= now]
        for slot in dead:
            self._drop(slot)
        return len(dead)

    def records(self, table=None):
        """@return: the live records, of C{table} only if given, as a list."""
        now = self._clock.seconds()
        return [
            stored.record
            for (recordTable, _, _), stored in self._records.items()
            if stored.expires > now and (table is None or recordTable == table)
        ]

    def __len__(self):
        return len(self._records)

    def _live(self, slot, now):
        stored = self._records.get(slot)
        if stored is not None and stored.expires <= now:
            self._drop(slot)
            return None
        return stored

    def _drop(self, slot):
        self._release(self._records.pop(slot))
        if slot[0] == Table.ROUTE:
            entryNodes = self._routes[slot[1]]
            entryNodes.discard(slot[2])
            if not entryNodes:
                del self._routes[slot[1]]

    def _release(self, stored):
        self.size -= stored.cost
        usage = self._usage[stored.storer] - stored.cost
        if usage == STORER_OVERHEAD:
            del self._usage[stored.storer]
            self.size -= STORER_OVERHEAD
        else:
            self._usage[stored.storer] = usage
