"""
Over many builds, the terminating node T never learns who owns its path: it holds no link
from or to the owner's address, no frame it receives carries that address, and neither round
names the owner as its neighbour. Y-nodes hold nothing of a path once round 2 has passed.
"""

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import addressBytes
from phantom.path.plan import PathShape
from phantom.path.relay import Rewire, SetupParticipant
from phantom.wire.link import Purpose
from phantom.wire.path import Role
from tests.path.helpers import MemoryPathNetwork

BUILDS = 40
COUNT = 16


class RecordingParticipant(SetupParticipant):
    """An honest participant that keeps what it received: frames, its packages, its rewiring."""

    def __init__(self, link, context, seen):
        super().__init__(link, context)
        self.frames = []
        self.rewiring = None
        seen.append(self)

    def frameReceived(self, payload):
        self.frames.append(bytes(payload))
        super().frameReceived(payload)

    def perform(self, actions):
        for action in actions:
            if isinstance(action, Rewire):
                self.rewiring = action.rewiring
        super().perform(actions)

    @property
    def package(self):
        return self.machine.participation.first


class PrivacyTests(SynchronousTestCase):
    def test_terminatingNodeNeverLearnsOwner(self):
        """
        Forty builds, exit and entry, from changing owners: what T received in both rounds
        never carries the owner's address, T's neighbours are never the owner, T has no SETUP
        or PATH link with the owner's address, and no Y-node keeps anything of the path.
        """
        seen = {index: [] for index in range(COUNT)}
        participants = {
            index: (lambda link, context, index=index: RecordingParticipant(link, context, seen[index])) for index in range(COUNT)
        }
        network = MemoryPathNetwork(self, COUNT, participants=participants)
        nodes = network.nodes
        everyone = network.byId
        reversedSeen = 0
        for build in range(BUILDS):
            for records in seen.values():
                records.clear()
            owner = nodes[build % len(nodes)]
            kind = "entry" if build % 2 else "exit"
            path = network.run(Deferred.fromCoroutine(owner.paths.build(kind, PathShape(3, 5))))
            ownerAddress = addressBytes(owner.address[0])
            t = everyone[path.plan.terminating.nodeId]
            [participation] = seen[nodes.index(t)]
            self.assertEqual(participation.machine.participation.role, Role.T)
            for frame in participation.frames:
                self.assertNotIn(ownerAddress, frame)
            for neighbour in (participation.package.previous, participation.package.next):
                self.assertNotEqual(neighbour.address, ownerAddress)
            rewiring = participation.rewiring
            self.assertIsNotNone(rewiring)
            reversedSeen += rewiring.expectFrom is None
            for contact in (rewiring.expectFrom, rewiring.connectTo):
                if contact is not None:
                    self.assertNotEqual(contact.host, owner.address[0])
            linked = {link.peer.host for link in t.links.links if link.purpose in (Purpose.SETUP, Purpose.PATH)}
            self.assertTrue(linked)
            self.assertNotIn(owner.address[0], linked)
            yNodes = [everyone[record.nodeId] for record in path.plan.yNodes]
            network.settle()
            for y in yNodes:
                self.assertEqual(y.paths.helping, 0)
                [helped] = [participant for participant in seen[nodes.index(y)] if participant.package is not None]
                self.assertEqual(helped.machine.participation.role, Role.Y)
                self.assertIsNone(helped.rewiring)
                self.assertFalse(
                    [key for key, relayed in y.paths.relaying.items() if relayed.keySeed in path.keySeeds.values()]
                )
            owner.paths.retire(path)
        # Both directions of the circle were built: on a reversed one T has no previous node.
        self.assertGreater(reversedSeen, 0)
        self.assertLess(reversedSeen, BUILDS)
