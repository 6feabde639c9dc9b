"""
An in-memory network database for tests of the rooms above: one record store that every node
of a test network shares, with the calls paths and tunnels make of a node's database
(C{sampleNodes}, C{storeRecord}, C{findRecord}) and no lookups.

    clock = task.Clock()
    database = MemoryDatabase(clock, random.Random(1))
    dht = database.node(identity, host, port)   # publishes the node's record
    records = await dht.sampleNodes(8)

Records are real (signed, validated by L{phantom.netdb.records} on the way in) and judged by
the driven clock: a node record expires L{NODE_RECORD_LIFETIME} after it was made.
"""

from phantom.netdb.records import NodeRecord
from phantom.netdb.storage import RecordStore
from phantom.wire.dht import Table



class MemoryDatabase:
    """
    The records of a whole test network, in one store.

    @param clock: the C{IReactorTime} records are judged by.
    @param random: the source of the samples (a seeded C{random.Random} in tests).
    """

    def __init__(self, clock, random):
        self.clock = clock
        self.random = random
        self.store = RecordStore(clock)
        self.offline = set()
        """Node ids whose records are not handed out (their nodes are gone)."""
        self.unanswering = set()
        """Node ids of nodes gone whose records are still handed out, as a real database's are
        until they expire, and that every node has found not to answer (L{MemoryDhtNode.unanswered})."""

    def node(self, identity, host, port):
        """
        A node's view of the database; its node record is published at once.

        @return: a L{MemoryDhtNode}.
        """
        node = MemoryDhtNode(self, identity, (host, port))
        node.publishNodeRecord()
        return node

    def nodeRecords(self):
        """The live node records of nodes still on the network."""
        return [record for record in self.store.records(Table.NODE) if record.nodeId not in self.offline]


class MemoryDhtNode:
    """
    One node's network database on a L{MemoryDatabase}: the same calls as
    L{phantom.netdb.service.DhtNode}'s for sampling, storing and finding.
    """

    def __init__(self, database, identity, address):
        self._database = database
        self.identity = identity
        self.nodeId = identity.nodeId
        self.address = address
        self.stored = []
        """C{(table, key)} of every record this node stored, in order."""

    def publishNodeRecord(self):
        """Store this node's signed node record, timestamped now."""
        host, port = self.address
        record = NodeRecord.create(self.identity, host, port, int(self._database.clock.seconds()))
        self._database.store.put(Table.NODE, self.nodeId, record.encoded)
        return record

    async def sampleNodes(self, count, exclude=()):
        """
        Up to C{count} node records drawn at random, this node's and C{exclude}'s left out.

        @return: a list of L{NodeRecord}s.
        """
        excluded = set(exclude) | {self.nodeId}
        records = [record for record in self._database.nodeRecords() if record.nodeId not in excluded]
        return self._database.random.sample(records, min(count, len(records)))

    def unanswered(self, nodeId, address=None):
        """Whether C{nodeId} is known not to answer (at C{address} or any): it is offline or unanswering."""
        return nodeId in self._database.offline or nodeId in self._database.unanswering

    async def storeRecord(self, table, key, encoded, ttl=None, replication=None):
        """
        Validate and store a record.

        @return: 1, as if one other node accepted it.
        @raise InvalidRecord: the record is not valid.
        """
        self._database.store.put(table, key, encoded, ttl)
        self.stored.append((table, key))
        return 1

    async def findRecord(self, table, key):
        """@return: the live record under C{key} in C{table}, or C{None}."""
        return self._database.store.get(table, key)
