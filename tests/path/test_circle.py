"""
Both rounds of a path build, simulated in memory with real keys: the owner's construction and
every participant's checks, the finished path's wiring, and who learns the owner's address.
"""

import random

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact, addressBytes
from phantom.identity import Identity
from phantom.netdb.records import NodeRecord, RoutingEntry
from phantom.path.array import SetupRejected
from phantom.path.circle import MAX_KEY_COUNT, MIN_KEY_COUNT, Construction, ToX0, UnsafePath
from phantom.path.participant import Participation
from phantom.path.plan import T, Y, PathShape, planPath

NOW = 1_800_000_000
OWNER_CONTACT = Contact("192.0.2.1", 7402, b"\x0f" * 32)


class Network:
    """Node identities and records at documentation addresses (no traffic is sent)."""

    def __init__(self, size=24):
        self.identities = [Identity.generate() for _ in range(size)]
        self.records = [NodeRecord.create(identity, f"10.{i}.0.1", 7402, NOW) for i, identity in enumerate(self.identities)]
        self.byId = {identity.nodeId: identity for identity in self.identities}

    def participation(self, record):
        return Participation(self.byId[record.nodeId].pathBuildingKey, record.nodeId)


class Build:
    """One simulated build: the owner's construction and each participant's state."""

    def __init__(self, network, shape=PathShape(3, 12), kind="exit", seed=0, reversed=None):
        rng = random.Random(seed)
        while True:
            self.plan = planPath(shape, kind, network.records, rng)
            if reversed is None or self.plan.reversed == reversed:
                break
        self.routingKey = ed25519.Ed25519PrivateKey.generate()
        entry = b""
        ap = bytes(16)
        if kind == "entry":
            t = self.plan.terminating
            routing = RoutingEntry.create(self.routingKey, 1, NOW + 3600, [Contact(t.host, t.port, t.nodeId)], NOW)
            entry, ap = routing.encoded, routing.apAddress
        self.construction = Construction(self.plan, OWNER_CONTACT, rng, routingEntry=entry, apAddress=ap)
        self.participants = [network.participation(hop.record) for hop in self.plan.circle]

    def contacts(self):
        return [Contact(h.record.host, h.record.port, h.record.nodeId) for h in self.plan.circle]

    def runRound1(self, tamper=None):
        """@return: (slots that came back, link id they came back over)."""
        first = self.construction.round(1)
        senderHost, senderId, slots, linkId = OWNER_CONTACT.host, OWNER_CONTACT.nodeId, first.slots, first.linkId
        for index, participant in enumerate(self.participants):
            if tamper is not None:
                senderHost, slots = tamper(index, senderHost, slots)
            forward = participant.firstRound(slots, linkId, senderHost, senderId)
            record = self.plan.circle[index].record
            senderHost, senderId, slots, linkId = record.host, record.nodeId, forward.slots, forward.linkId
        return first, slots, linkId

    def runRound2(self, slots=None):
        second = self.construction.round(2)
        slots = second.slots if slots is None else slots
        rewirings = []
        for participant in self.participants:
            forward, rewiring = participant.secondRound(slots, NOW)
            rewirings.append(rewiring)
            slots = forward.slots
        return second, slots, rewirings


class BuildTests(SynchronousTestCase):
    """A path is built when everyone plays by the rules."""

    def test_bothRounds(self):
        """Both arrays come back exactly as predicted, over the predicted link."""
        network = Network()
        for seed in range(6):
            build = Build(network, seed=seed)
            first, back, linkId = build.runRound1()
            self.assertEqual((back, linkId), (first.expectedReturn, first.returnLinkId))
            second, back, _ = build.runRound2()
            self.assertEqual(back, second.expectedReturn)

    def test_roundOneForwardsAlongTheCircle(self):
        """Each node forwards to the next node of the circle, the last to the owner."""
        network = Network()
        build = Build(network, seed=1)
        first = build.construction.round(1)
        contacts = build.contacts() + [OWNER_CONTACT]
        slots, linkId, host, nodeId = first.slots, first.linkId, OWNER_CONTACT.host, OWNER_CONTACT.nodeId
        for index, participant in enumerate(build.participants):
            forward = participant.firstRound(slots, linkId, host, nodeId)
            self.assertEqual(forward.to, contacts[index + 1])
            slots, linkId, host, nodeId = forward.slots, forward.linkId, contacts[index].host, contacts[index].nodeId

    def test_finishedPathWiring(self):
        """
        In both directions the rewired links form the chain owner - x0 - x1 - T: every
        connection one X makes is the one its neighbour expects, with the same link id.
        """
        network = Network()
        for reversed in (False, True):
            build = Build(network, seed=3, reversed=reversed)
            build.runRound1()
            _, _, rewirings = build.runRound2()
            byId = {hop.record.nodeId: r for hop, r in zip(build.plan.circle, rewirings) if r is not None}
            self.assertEqual(len(byId), 3)
            for nodeId, rewiring in byId.items():
                if rewiring.connectTo is not None and rewiring.connectTo != OWNER_CONTACT:
                    target = byId[rewiring.connectTo.nodeId]
                    self.assertEqual((target.expectFrom.nodeId, target.expectLinkId), (nodeId, rewiring.connectLinkId))
            t = byId[build.plan.terminating.nodeId]
            self.assertTrue(t.terminating)
            if reversed:
                self.assertIsNone(t.expectFrom)
            else:
                self.assertIsNone(t.connectTo)
            how, x0, linkId = build.construction.ownerLink()
            x0Rewiring = byId[x0.nodeId]
            if how == ToX0.CONNECT:
                self.assertEqual((x0Rewiring.expectFrom, x0Rewiring.expectLinkId), (OWNER_CONTACT, linkId))
            else:
                self.assertEqual((x0Rewiring.connectTo, x0Rewiring.connectLinkId), (OWNER_CONTACT, linkId))
            self.assertEqual(how, ToX0.AWAIT if reversed else ToX0.CONNECT)

    def test_keySeedsFreshPerNode(self):
        """Every X-node gets its own key seed; Y-nodes get none."""
        build = Build(Network(), seed=4)
        build.runRound1()
        _, _, rewirings = build.runRound2()
        seeds = [r.keySeed for r in rewirings if r is not None]
        self.assertEqual(len(set(seeds)), 3)
        self.assertNotIn(bytes(32), seeds)

    def test_entryPath(self):
        """On an entry path T, and only T, gets the verified routing entry naming it."""
        build = Build(Network(), kind="entry", seed=5)
        build.runRound1()
        _, _, rewirings = build.runRound2()
        published = [r for r in rewirings if r is not None and r.routingEntry is not None]
        self.assertEqual(len(published), 1)
        self.assertTrue(published[0].terminating)
        self.assertEqual([n.nodeId for n in published[0].routingEntry.entryNodes], [build.plan.terminating.nodeId])

    def test_oneXRefused(self):
        """The owner refuses a path whose T would be its neighbour."""
        network = Network()
        plan = planPath(PathShape(1, 4), "exit", network.records, random.Random(0))
        self.assertRaises(UnsafePath, Construction, plan, OWNER_CONTACT, random.Random(0))


class PrivacyTests(SynchronousTestCase):
    """Who learns the owner's address."""

    @settings(max_examples=30)
    @given(st.integers(0, 2**32), st.sampled_from(["exit", "entry"]))
    def test_onlyCircleNeighboursAndX0(self, seed, kind):
        """
        Only the first and last node of the circle (Y-nodes) and x0 ever see the owner's
        address; T never does, in either round.
        """
        build = Build(Network(20), kind=kind, seed=seed)
        build.runRound1()
        _, _, rewirings = build.runRound2()
        owner = addressBytes(OWNER_CONTACT.host)
        x0 = build.plan.adjacent.nodeId
        for index, (hop, participant, rewiring) in enumerate(zip(build.plan.circle, build.participants, rewirings)):
            sawInRound1 = owner in (participant.first.previous.address, participant.first.next.address)
            sawInRound2 = rewiring is not None and OWNER_CONTACT in (rewiring.expectFrom, rewiring.connectTo)
            if index in (0, len(build.plan.circle) - 1):
                self.assertEqual(hop.role, Y)
            else:
                self.assertFalse(sawInRound1)
            if hop.record.nodeId != x0:
                self.assertFalse(sawInRound2)
            if hop.role == T:
                self.assertFalse(sawInRound1 or sawInRound2)


class MisbehaviourTests(SynchronousTestCase):
    """The checks a node makes on what reaches it."""

    def test_wrongSender(self):
        """An array that comes from another address than the package names is refused."""
        build = Build(Network(), seed=6)

        def fromElsewhere(index, host, slots):
            return ("10.250.0.1" if index == 4 else host), slots

        self.assertRaises(SetupRejected, build.runRound1, fromElsewhere)

    def test_forwardedToWrongNode(self):
        """A node that forwards to another node than its next: that node finds no slot for itself."""
        network = Network()
        build = Build(network, seed=7)
        first = build.construction.round(1)
        forward = build.participants[0].firstRound(first.slots, first.linkId, OWNER_CONTACT.host, OWNER_CONTACT.nodeId)
        wrong = build.participants[2]
        sender = build.plan.circle[0].record
        self.assertRaises(SetupRejected, wrong.firstRound, forward.slots, forward.linkId, sender.host, sender.nodeId)

    def test_ownSlotSignatureChecked(self):
        """A bit flipped in the signature of a node's own slot is noticed in round 1 too."""
        build = Build(Network(), seed=11)
        first = build.construction.round(1)
        participant = build.participants[0]
        for index in range(len(first.slots)):
            slots = list(first.slots)
            slot = bytearray(slots[index])
            slot[5] ^= 0x01
            slots[index] = bytes(slot)
            try:
                participant.firstRound(slots, first.linkId, OWNER_CONTACT.host, OWNER_CONTACT.nodeId)
            except SetupRejected:
                continue
            self.fail(f"a flipped signature bit in slot {index} went unnoticed")

    def test_roundOneReplayedAsRoundTwo(self):
        """A round-1 array replayed in round 2 opens for nobody."""
        build = Build(Network(), seed=8)
        first, _, _ = build.runRound1()
        self.assertRaises(SetupRejected, build.participants[0].secondRound, first.slots, NOW)

    def test_forgedRoundTwo(self):
        """A round-2 array signed by another key than round 1's is refused."""
        build = Build(Network(), seed=9)
        build.runRound1()
        forger = Construction(build.plan, OWNER_CONTACT, random.Random(1))
        forger.linkIds = build.construction.linkIds
        self.assertRaises(SetupRejected, build.participants[0].secondRound, forger.round(2).slots, NOW)

    def test_roundTwoFirst(self):
        """Round 2 without round 1 is refused."""
        build = Build(Network(), seed=10)
        self.assertRaises(SetupRejected, build.participants[0].secondRound, build.construction.round(2).slots, NOW)



class KeyCountTests(SynchronousTestCase):
    """
    Round 2 asks each X-node for a key set of C{key_count} keys: a count out of bounds is refused
    like any other bad package, before the node derives a key or relays a tunnel block.
    """

    network = Network()

    def rewirings(self, keyCount, seed=12):
        """@return: the rewirings of a build whose owner asks for C{keyCount} keys per X-node."""
        build = Build(self.network, seed=seed)
        build.construction.keyCount = keyCount
        build.runRound1()
        return [rewiring for rewiring in build.runRound2()[2] if rewiring is not None]

    def test_outOfBoundsRefused(self):
        """0 (which made a relay raise in its PATH frame handler) and 65,535 are refused."""
        for keyCount in (0, MIN_KEY_COUNT - 1, MAX_KEY_COUNT + 1, 0xFFFF):
            with self.assertRaises(SetupRejected) as raised:
                self.rewirings(keyCount)
            self.assertIn(f"a key count of {keyCount}", str(raised.exception))

    def test_boundsAccepted(self):
        """The bounds themselves build, and each X-node is told the count."""
        for keyCount in (MIN_KEY_COUNT, MAX_KEY_COUNT):
            self.assertEqual({rewiring.keyCount for rewiring in self.rewirings(keyCount)}, {keyCount})

    @settings(max_examples=25, deadline=None)
    @given(st.integers(0, 0xFFFF))
    def test_anyKeyCount(self, keyCount):
        """Any 16-bit key count builds exactly when it is within the bounds."""
        try:
            rewirings = self.rewirings(keyCount, seed=13)
        except SetupRejected:
            self.assertFalse(MIN_KEY_COUNT <= keyCount <= MAX_KEY_COUNT)
        else:
            self.assertTrue(MIN_KEY_COUNT <= keyCount <= MAX_KEY_COUNT)
            self.assertTrue(rewirings)

    def test_ownerRefusesToAsk(self):
        """The owner's construction refuses a key count out of bounds."""
        plan = Build(self.network, seed=14).plan
        for keyCount in (MIN_KEY_COUNT - 1, MAX_KEY_COUNT + 1):
            self.assertRaises(ValueError, Construction, plan, OWNER_CONTACT, random.Random(1), keyCount=keyCount)
