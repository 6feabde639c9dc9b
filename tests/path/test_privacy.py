"""
Over many builds, the terminating node T never learns who owns its path: it holds no link
from or to the owner's address, no frame it receives carries that address, and neither round
names the owner as its neighbour. Y-nodes hold nothing of a path once round 2 has passed.
"""

from twisted.trial.unittest import TestCase

from phantom.address import addressBytes
from phantom.path.plan import PathShape
from phantom.path.service import PathService, SetupParticipation
from phantom.wire.link import Purpose
from phantom.wire.path import Role
from tests.link.helpers import until
from tests.path.test_service import byId, startPathNetwork

BUILDS = 40


class RecordingParticipation(SetupParticipation):
    """An honest participant that keeps what it received: frames, its packages, its rewiring."""

    def __init__(self, service, link):
        super().__init__(service, link)
        self.frames = []
        self.rewiring = None
        service.seen.append(self)

    def frameReceived(self, payload):
        self.frames.append(bytes(payload))
        super().frameReceived(payload)

    def _finish(self, rewiring):
        self.rewiring = rewiring
        super()._finish(rewiring)

    @property
    def package(self):
        return self._participation.first


class RecordingPathService(PathService):
    """A path service whose participations record what they see."""

    seen = None

    def _setupLinkArrived(self, link):
        if self.seen is None:
            self.seen = []
        return RecordingParticipation(self, link)


class PrivacyTests(TestCase):
    timeout = 300

    async def test_terminatingNodeNeverLearnsOwner(self):
        """
        Forty builds, exit and entry, from changing owners: what T received in both rounds
        never carries the owner's address, T's neighbours are never the owner, T has no SETUP
        or PATH link with the owner's address, and no Y-node keeps anything of the path.
        """
        nodes = await startPathNetwork(self, 16, base=720, cls=RecordingPathService)
        everyone = byId(nodes)
        reversedSeen = 0
        for build in range(BUILDS):
            for node in nodes:
                node.paths.seen = []
            owner = nodes[build % len(nodes)]
            kind = "entry" if build % 2 else "exit"
            path = await owner.paths.build(kind, PathShape(3, 5))
            ownerAddress = addressBytes(owner.address[0])
            t = everyone[path.plan.terminating.nodeId]
            [participation] = t.paths.seen
            self.assertEqual(participation.package.role, Role.T.name)
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
            linked = {link.peer.host for link in t.links.connections if link.purpose in (Purpose.SETUP, Purpose.PATH)}
            self.assertNotIn(owner.address[0], linked)
            yNodes = [everyone[record.nodeId] for record in path.plan.yNodes]
            await until(lambda: all(y.paths.helping == 0 for y in yNodes))
            for y in yNodes:
                [helped] = [seen for seen in y.paths.seen if seen.package is not None]
                self.assertEqual(helped.package.role, Role.Y.name)
                self.assertIsNone(helped.rewiring)
                self.assertFalse(
                    [key for key, relayed in y.paths.relaying.items() if relayed.keySeed in path.keySeeds.values()]
                )
            owner.paths.retire(path)
        # Both directions of the circle were built: on a reversed one T has no previous node.
        self.assertGreater(reversedSeen, 0)
        self.assertLess(reversedSeen, BUILDS)
