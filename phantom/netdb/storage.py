"""
What a node stores for the network: records by table and key, validated on the way in,
expired on the clock, bounded in size.
"""

from dataclasses import dataclass

from phantom.config import DhtSettings
from phantom.netdb.records import InvalidRecord, parseRecord
from phantom.wire.dht import Table

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""How many bytes of records a node holds for others at most."""


@dataclass
class StoredRecord:
    """A record held by this node and when it expires."""

    record: object
    expires: float


class RecordStore:
    """
    Records by C{(table, key)}.

    @param clock: C{IReactorTime}; its C{seconds()} is the time records are judged by.
    @param maxValueTtl: module-API values are kept at most this long, whatever they ask.
    @param maxBytes: once this many bytes are held, new keys are refused (updates still land).
    """

    def __init__(self, clock, maxValueTtl=DhtSettings.maxValueTtl, maxBytes=DEFAULT_MAX_BYTES):
        self._clock = clock
        self.maxValueTtl = maxValueTtl
        self.maxBytes = maxBytes
        self._records = {}
        self.size = 0

    def put(self, table, key, encoded, ttl=None):
        """
        Validate and store a record; a stored record is only replaced by one that supersedes it.

        @param ttl: for module-API values, the lifetime asked for (clamped to 1 ..
            C{maxValueTtl} seconds); records of the other tables carry their own lifetime.
        @return: the stored record object.
        @raise InvalidRecord: the record is invalid, older than the one stored, or the store is full.
        """
        now = self._clock.seconds()
        record = parseRecord(table, key, encoded, now)
        if record.table == Table.VALUE:
            expires = now + min(max(int(ttl or 0), 1), self.maxValueTtl)
        else:
            expires = record.expires
        slot = (record.table, bytes(key))
        stored = self._live(slot, now)
        if stored is not None and not record.supersedes(stored.record):
            raise InvalidRecord(f"{record.table.name.lower()} record older than the one stored")
        grows = len(record.encoded) - (len(stored.record.encoded) if stored else 0)
        if stored is None and self.size + grows > self.maxBytes:
            raise InvalidRecord("the record store is full")
        self._records[slot] = StoredRecord(record, expires)
        self.size += grows
        return record

    def get(self, table, key):
        """@return: the live record stored under C{key} in C{table}, or C{None}."""
        stored = self._live((Table(table), bytes(key)), self._clock.seconds())
        return stored.record if stored else None

    def remaining(self, table, key):
        """@return: seconds the record under C{key} has left, or 0."""
        stored = self._live((Table(table), bytes(key)), self._clock.seconds())
        return stored.expires - self._clock.seconds() if stored else 0

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
            for (recordTable, _), stored in self._records.items()
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
        stored = self._records.pop(slot)
        self.size -= len(stored.record.encoded)
