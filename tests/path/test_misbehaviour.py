"""
Two hundred path builds over real links, each with one misbehaving participant on the first
attempt's circle. Every time the next honest node or the owner notices, the attempt fails, and
the retry without that attempt's nodes succeeds: no build ever finishes with the culprit in it.
No owner ever waits out a timeout: the node that notices gives up, and closing links carry the
news round the circle to the owner.
"""

import random

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from phantom.config import PathSettings
from phantom.crypto import rawPublicBytes
from phantom.path.array import NO_INSTRUCTION, arrayHash, encodePackage, encodeSlot
from phantom.path.circle import NO_NEIGHBOUR
from phantom.path.plan import PathShape
from phantom.path.service import PathService, SetupParticipation
from phantom.wire.path import SetupArray
from tests.link.helpers import startLinkService, until
from tests.path.test_array import tamper
from tests.netdb.helpers import loopbackAddress, startDhtNetwork

BUILDS = 200
AT_ONCE = 25
SHAPE = PathShape(2, 3)
SETTINGS = PathSettings(roundTimeout=30.0, attempts=4)
"""Long timeouts: a node that notices gives up, the circle's links close, and the owner hears at once."""

BEHAVIOURS = {
    1: ["flip", "reorder", "insert", "drop", "wrongAddress", "wrongNext"],
    2: ["flip", "reorder", "insert", "drop", "replay", "forge"],
}


class Culprit(SetupParticipation):
    """A participant that plays by the rules except for one misbehaviour in one round."""

    def __init__(self, service, link):
        super().__init__(service, link)
        rng = service.rng
        self.round = rng.choice([1, 2])
        self.behaviour = rng.choice(BEHAVIOURS[self.round])
        self.rng = rng
        self.record = [self.round, self.behaviour]
        service.done.append(self.record)

    async def forwardFirst(self, forward):
        self.first = forward
        if self.round != 1:
            return await super().forwardFirst(forward)
        if self.behaviour == "wrongNext":
            others = [node for node in self.service.everyone if node.nodeId not in (forward.to.nodeId, self.service.identity.nodeId)]
            wrong = self.rng.choice(others).contact
            self._outgoing = await self.connectSetup(self.service._links, wrong, forward.linkId)
            slots = forward.slots
        elif self.behaviour == "wrongAddress":
            self._outgoing = await self.connectSetup(self.service.elsewhere, forward.to, forward.linkId)
            slots = forward.slots
        else:
            self._outgoing = await self.connectSetup(self.service._links, forward.to, forward.linkId)
            slots = tamper(forward.slots, self.behaviour, self.rng)
        self._outgoing.sendFrame(SetupArray.build({"round": 1, "slots": slots}))

    def forwardSecond(self, forward):
        if self.round != 2:
            return super().forwardSecond(forward)
        if self.behaviour == "replay":
            slots = self.first.slots
        elif self.behaviour == "forge":
            slots = self.forged(forward)
        else:
            slots = tamper(forward.slots, self.behaviour, self.rng)
        if slots == forward.slots:
            # Replaying an empty array as the last node sends what an honest node sends.
            self.record[1] = "insert"
            slots = tamper(forward.slots, "insert", self.rng)
        self._outgoing.sendFrame(SetupArray.build({"round": 2, "slots": slots}))

    def forged(self, forward):
        """
        A round-2 package for the next node, signed by another key but otherwise flawless: it
        opens for the next node, in the place the array hash covers, with the right hash.
        """
        recipient = self.service.keys.get(self.first.to.nodeId)
        if recipient is None:
            return tamper(forward.slots, "flip", self.rng)
        slots = [b""] + list(forward.slots[1:])
        package = encodePackage(
            {
                "role": "Y", "entry": 0, "success": 1,
                "previous": NO_NEIGHBOUR, "next": NO_NEIGHBOUR,
                "key_seed": bytes(32), "key_count": 0, "ap_address": bytes(16),
            },
            round=2,
            construction_key=rawPublicBytes(ed25519.Ed25519PrivateKey.generate().public_key()),
            array_hash=arrayHash(slots, 0),
            dummies=[NO_INSTRUCTION] * 4,
        )
        slots[0] = encodeSlot(package, recipient, self.first.linkId, 2, ed25519.Ed25519PrivateKey.generate())
        return slots


class CulpritPathService(PathService):
    """The path service of the misbehaving node."""

    def _setupLinkArrived(self, link):
        return Culprit(self, link)


class MisbehaviourTests(TestCase):
    timeout = 600

    async def test_everyMisbehaviourNoticed(self):
        """
        Over 200 builds, one participant of the first attempt misbehaves (a flipped bit, slots
        reordered, inserted or dropped, a round-1 array replayed in round 2, a forged round-2
        package, the array sent from the wrong address or to the wrong node): the attempt
        fails, and the retry without its nodes builds a path the culprit is not in.
        """
        nodes = await startDhtNetwork(self, 18, base=700)
        culpritNode = nodes[1]
        keys = {node.nodeId: node.identity.pathBuildingKey.public_key().public_bytes_raw() for node in nodes}
        for index, node in enumerate(nodes):
            cls = CulpritPathService if node is culpritNode else PathService
            node.paths = cls(node.identity, node.links, node, reactor, SETTINGS, random.Random(index))
            node.paths.startService()
            self.addCleanup(node.paths.stopService)
        culprit = culpritNode.paths
        culprit.rng = random.Random(2026)
        culprit.done = []
        culprit.everyone = nodes
        culprit.keys = keys
        culprit.elsewhere = startLinkService(self, address=loopbackAddress(40, 700), bindAddress=loopbackAddress(40, 700), identity=culpritNode.identity)
        culpritRecord = culpritNode.store.get(1, culpritNode.nodeId)

        owners = [node for node in nodes if node is not culpritNode]
        chooser = random.Random(7)

        async def oneBuild(owner):
            honest = [node for node in nodes if node is not culpritNode and node is not owner]
            records = [node.store.get(1, node.nodeId) for node in chooser.sample(honest, SHAPE.size - 1)]
            path = await owner.paths.build("exit", SHAPE, candidates=[culpritRecord] + records)
            return path

        paths = []
        for start in range(0, BUILDS, AT_ONCE):
            batch = [oneBuild(chooser.choice(owners)) for _ in range(min(AT_ONCE, BUILDS - start))]
            paths += await gatherResults([Deferred.fromCoroutine(build) for build in batch])

        self.assertEqual(len(paths), BUILDS)
        for path in paths:
            circle = {hop.record.nodeId for hop in path.plan.circle}
            self.assertNotIn(culpritNode.nodeId, circle)
            self.assertTrue(path.failures)
            for why in path.failures:
                self.assertNotIn("Timeout", why)
        self.assertEqual(len(culprit.done), BUILDS)
        kinds = {behaviour for _, behaviour in culprit.done}
        self.assertTrue(kinds >= set(BEHAVIOURS[1]) | set(BEHAVIOURS[2]), kinds)
        await until(lambda: all(node.paths.helping == 0 for node in nodes), timeout=30)
