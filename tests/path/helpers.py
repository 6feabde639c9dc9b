"""Path services on an in-memory network and database, driven by a L{task.Clock}."""

import random

from twisted.internet.task import Clock
from twisted.python.failure import Failure

from phantom.config import PathSettings
from phantom.identity import Identity
from phantom.link.testing import MemoryNetwork
from phantom.netdb.testing import MemoryDatabase
from phantom.path.relay import SetupParticipant
from phantom.path.service import PathService
from phantom.wire.dht import Table

SETTINGS = PathSettings(roundTimeout=5.0)

START = 1_800_000_000
"""Where the clock starts: records are timestamped and judged by it."""


class MemoryNode:
    """One node: an identity, its link service, its view of the database, its path service."""

    def __init__(self, network, index, settings, participant, frameReceiver):
        self._database = network.database
        self.identity = Identity.generate()
        self.nodeId = self.identity.nodeId
        self.links = network.links.linkService(nodeId=self.nodeId)
        self.address = self.links.address
        self.dht = network.database.node(self.identity, *self.address)
        self.paths = PathService(
            self.identity, self.links, self.dht, network.clock, settings, random.Random(index),
            frameReceiver=frameReceiver, participant=participant,
        )

    @property
    def record(self):
        """This node's node record."""
        return self._database.store.get(Table.NODE, self.nodeId)


class MemoryPathNetwork:
    """
    C{count} nodes with path services on a L{MemoryNetwork} and a L{MemoryDatabase}.

    @param participants: node index to the C{participant} factory its path service uses.
    @param frameReceivers: node index to the frame receiver its path service is given (none
        by default: a frame on a PATH link then closes its path).
    """

    def __init__(self, testCase, count, settings=SETTINGS, participants=None, frameReceivers=None, seed=0):
        self.clock = Clock()
        self.clock.advance(START)
        self.links = MemoryNetwork(self.clock)
        self.database = MemoryDatabase(self.clock, random.Random(seed))
        participants = participants or {}
        frameReceivers = frameReceivers or {}
        self.nodes = [
            MemoryNode(self, index, settings, participants.get(index, SetupParticipant), frameReceivers.get(index))
            for index in range(count)
        ]
        self.byId = {node.nodeId: node for node in self.nodes}
        for node in self.nodes:
            node.paths.startService()
            testCase.addCleanup(self._stop, node)

    def _stop(self, node):
        if node.paths.running:
            node.paths.stopService()
        self.clock.advance(0)

    def settle(self):
        """Let everything due now happen: links open, frames and closings arrive."""
        self.clock.advance(0)

    def run(self, d, limit=600.0):
        """
        Drive the clock until C{d} fires: a turn at a time while anything is due, else on to the
        next call.

        @param limit: the simulated seconds after which the test fails.
        @return: C{d}'s result. @raise: its failure.
        """
        results = []
        d.addBoth(results.append)
        end = self.clock.seconds() + limit
        while not results:
            self.clock.advance(0)
            if results:
                break
            calls = self.clock.getDelayedCalls()
            if not calls or self.clock.seconds() > end:
                raise AssertionError(f"nothing fired within {limit} simulated seconds")
            self.clock.advance(max(0.0, min(call.getTime() for call in calls) - self.clock.seconds()))
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def wait(self, predicate, limit=600.0, step=0.5):
        """Drive the clock in steps of C{step} seconds until C{predicate()} holds."""
        end = self.clock.seconds() + limit
        while not predicate():
            if self.clock.seconds() > end:
                raise AssertionError(f"not true within {limit} simulated seconds")
            self.clock.advance(step)
            self.clock.advance(0)
