"""
Path services on an in-memory network and database, driven by one clock (a L{HeapClock}):
the harness the path tests run on, and the one the tunnel tests build theirs on.

    network = MemoryPathNetwork(testCase, 20)
    path = network.run(Deferred.fromCoroutine(network.nodes[5].paths.build(PathKind.EXIT)))
    path = network.buildPath(owner, PathKind.ENTRY, [x0, x1, t])   # X-nodes chosen by the test
"""

import random

from twisted.internet.defer import Deferred, succeed

from phantom.config import PathSettings
from phantom.identity import Identity
from phantom.link.testing import HeapClock, MemoryNetwork
from phantom.netdb.records import routeKey
from phantom.netdb.testing import MemoryDatabase
from phantom.path.plan import PathShape, minimumY
from phantom.path.relay import SetupParticipant
from phantom.path.service import PathService
from phantom.wire.dht import Table

SETTINGS = PathSettings(roundTimeout=5.0, coarseEntries=False)
"""Entries published at once: the tests that wait for coarse ones say so."""

START = 1_800_000_000
"""Where the clock starts: records are timestamped and judged by it."""


class ChosenXNodes(random.Random):
    """
    A seeded random for a node's path service through which a test chooses a path's X-nodes:
    while L{lead} names node ids, a shuffle of node records that holds them all puts them
    first, in that order. L{phantom.path.plan.planPath} takes the first x records of its
    shuffle as the X-nodes, x0 first and T last.
    """

    def __init__(self, seed):
        super().__init__(seed)
        self.lead = None

    def shuffle(self, items):
        super().shuffle(items)
        if self.lead is None:
            return
        nodeIds = [getattr(item, "nodeId", None) for item in items]
        if not set(self.lead) <= set(nodeIds):
            return
        first = [items[nodeIds.index(nodeId)] for nodeId in self.lead]
        items[:] = first + [item for item in items if getattr(item, "nodeId", None) not in self.lead]


class MemoryNode:
    """
    One node: an identity, its link service, its view of the database, its path service (and
    the L{ChosenXNodes} random that service is given, as C{random}).
    """

    def __init__(self, network, index, settings, participant, frameReceiver):
        self._database = network.database
        self.identity = Identity.generate()
        self.nodeId = self.identity.nodeId
        # One /16 per node unless the network is on one, so the X-node diversity rule can hold.
        host = None if network.oneNetwork else f"10.{index + 1}.0.1"
        self.links = network.links.linkService(nodeId=self.nodeId, host=host)
        self.address = self.links.address
        self.dht = network.database.node(self.identity, *self.address)
        self.random = ChosenXNodes(index)
        self.paths = PathService(
            self.identity, self.links, self.dht, network.clock, settings, self.random,
            frameReceiver=frameReceiver, participant=participant,
        )

    @property
    def record(self):
        """This node's node record."""
        return self._database.store.get(Table.NODE, self.nodeId)


class MemoryPathNetwork:
    """
    C{count} nodes with path services on a L{MemoryNetwork} (as C{links}) and a
    L{MemoryDatabase} (as C{database}), on one L{HeapClock}. C{run}, C{runFor} and C{settle}
    are the network's (L{MemoryNetwork.run} and so on).

    @param participants: node index to the C{participant} factory its path service uses.
    @param frameReceivers: node index to the frame receiver its path service is given (none
        by default: a frame on a PATH link then closes its path).
    @param oneNetwork: put every node in 10.0.0.0/16, as on a testnet, rather than each in a
        /16 of its own.
    """

    def __init__(self, testCase, count, settings=SETTINGS, participants=None, frameReceivers=None, seed=0, oneNetwork=False):
        self.oneNetwork = oneNetwork
        self.clock = HeapClock()
        self.clock.advance(START)
        self.links = MemoryNetwork(self.clock)
        self.run, self.runFor, self.settle = self.links.run, self.links.runFor, self.links.settle
        self.database = MemoryDatabase(self.clock, random.Random(seed))
        self.random = random.Random(seed)
        participants = participants or {}
        frameReceivers = frameReceivers or {}
        self.nodes = [
            self.makeNode(index, settings, participants.get(index, SetupParticipant), frameReceivers.get(index))
            for index in range(count)
        ]
        self.byId = {node.nodeId: node for node in self.nodes}
        for node in self.nodes:
            node.paths.startService()
        testCase.addCleanup(self._stop)

    def makeNode(self, index, settings, participant, frameReceiver):
        """@return: node C{index} of this network (a L{MemoryNode})."""
        return MemoryNode(self, index, settings, participant, frameReceiver)

    def _stop(self):
        # Every service stops before the links' closings arrive, so no owner replaces a path
        # that goes because a hop stopped.
        for node in self.nodes:
            if node.paths.running:
                node.paths.stopService()
        self.settle()

    def buildPath(self, owner, kind, xNodes, shape=None):
        """
        Build a path of C{kind} for C{owner} with its path service, through the X-nodes
        C{xNodes} (x0 first, T last) and Y-nodes drawn at random from the rest; run the network
        until the path is built and every hop has linked.

        @param shape: a L{PathShape} of C{len(xNodes)} X-nodes; the fewest Y-nodes if not given.
        @return: the owner's L{phantom.path.service.Path}.
        """
        shape = shape or PathShape(len(xNodes), minimumY(len(xNodes)))
        others = [node for node in self.nodes if node is not owner and node not in xNodes]
        if len(others) < shape.y:
            raise ValueError(f"{len(others)} nodes left for the {shape.y} Y-nodes: make the network bigger")
        candidates = [node.record for node in list(xNodes) + self.random.sample(others, shape.y)]
        owner.random.lead = [node.nodeId for node in xNodes]
        try:
            path = self.run(Deferred.fromCoroutine(owner.paths.build(kind, shape, candidates)))
        finally:
            owner.random.lead = None
        self.settle()
        if [record.nodeId for record in path.plan.xNodes] != [node.nodeId for node in xNodes]:
            raise AssertionError("the path was not built through the X-nodes chosen")
        return path


class PublishedRoutes:
    """
    The routing entries stored through the given network databases (each a
    L{phantom.netdb.service.DhtNode} or a L{phantom.netdb.testing.MemoryDhtNode}), from now
    on: L{whenStored} fires once a node's C{storeRecord} of one has finished, so a test awaits
    the entry instead of polling the stores for it.
    """

    def __init__(self, dhts):
        self._stored = set()
        self._waiting = {}
        for dht in dhts:
            dht.storeRecord = self._storing(dht.storeRecord)

    def _storing(self, storeRecord):
        async def storing(table, key, encoded, *args, **kwargs):
            result = await storeRecord(table, key, encoded, *args, **kwargs)
            if Table(table) == Table.ROUTE:
                self._stored.add(bytes(key))
                for d in self._waiting.pop(bytes(key), []):
                    d.callback(result)
            return result

        return storing

    def whenStored(self, apAddress):
        """@return: a Deferred that fires once the routing entry of C{apAddress} has been stored."""
        key = routeKey(apAddress)
        if key in self._stored:
            return succeed(None)
        d = Deferred()
        self._waiting.setdefault(key, []).append(d)
        return d
