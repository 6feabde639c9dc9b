"""
The setup-array core on a simulated circle: real keys and slots, no network. Whatever a node
on the circle does to the array beyond its instructions, the next honest node or the owner
notices.
"""

import os
import random

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.crypto import rawPublicBytes
from phantom.path.array import (
    Hop,
    SetupRejected,
    arrayHash,
    buildArray,
    checkArray,
    dummySlot,
    encodePackage,
    openOwnSlot,
    passOn,
    playRound,
)
from phantom.wire import parseStrict
from phantom.wire.path import PACKAGE_SIZE, SLOT_SIZE, SetupArray, SetupPackage
from tests.properties import assertCanonicalOrRejected, mutated

NO_NEIGHBOUR = {"address": bytes(16), "port": 0, "node_id": bytes(32), "link_id": bytes(16)}


def fieldsFor(role="Y"):
    return {
        "role": role,
        "entry": 0,
        "success": 0,
        "previous": NO_NEIGHBOUR,
        "next": dict(NO_NEIGHBOUR, port=7402, node_id=os.urandom(32), link_id=os.urandom(16)),
        "key_seed": bytes(32),
        "key_count": 0,
        "ap_address": bytes(16),
    }


class Circle:
    """The nodes of one simulated circle: their keys and the ids of the links into them."""

    def __init__(self, size, seed=0):
        self.keys = [x25519.X25519PrivateKey.generate() for _ in range(size)]
        self.linkIds = [os.urandom(16) for _ in range(size)]
        self.construction = ed25519.Ed25519PrivateKey.generate()
        self.random = random.Random(seed)

    def build(self, round=1):
        hops = [Hop(rawPublicBytes(key.public_key()), linkId, fieldsFor()) for key, linkId in zip(self.keys, self.linkIds)]
        return buildArray(hops, round, self.construction, self.random)

    def visit(self, hop, slots, round=1):
        """What node C{hop} does with the array: open, check, pass on."""
        opened = openOwnSlot(slots, self.linkIds[hop], round, self.keys[hop])
        checkArray(slots, opened)
        if not opened.signedBy(rawPublicBytes(self.construction.public_key())):
            raise SetupRejected("bad signature")
        return passOn(slots, opened)


def tamper(slots, how, rng):
    """
    A node's misbehaviour on the array it forwards; one that would change nothing (on an empty
    or one-slot array) becomes an insertion. @return: the tampered array, never the same one.
    """
    slots = list(slots)
    if how in ("flip", "drop", "replace") and not slots or how == "reorder" and len(slots) < 2:
        how = "insert"
    if how == "flip":
        index = rng.randrange(len(slots))
        position = rng.randrange(SLOT_SIZE)
        slot = bytearray(slots[index])
        slot[position] ^= 1 << rng.randrange(8)
        slots[index] = bytes(slot)
    elif how == "reorder":
        i, j = rng.sample(range(len(slots)), 2)
        slots[i], slots[j] = slots[j], slots[i]
    elif how == "insert":
        slots.insert(rng.randint(0, len(slots)), dummySlot(os.urandom(16)))
    elif how == "drop":
        del slots[rng.randrange(len(slots))]
    elif how == "replace":
        slots[rng.randrange(len(slots))] = os.urandom(SLOT_SIZE)
    return slots


class ArrayTests(SynchronousTestCase):
    """The array goes round the circle exactly as predicted."""

    def test_roundTrip(self):
        """Every node finds, checks and passes on; the array comes back exactly as predicted."""
        for size in (1, 4, 15):
            circle = Circle(size)
            built = circle.build()
            slots = built.initial
            self.assertEqual(len(slots), built.sizes[0])
            for hop in range(size):
                self.assertEqual(len(slots), built.sizes[hop])
                slots = circle.visit(hop, slots)
            self.assertEqual(slots, built.expectedReturn)

    def test_sizeTellsNoPosition(self):
        """
        Every node of a circle receives as many slots as every other, and as many as come back
        to the owner: the size of the array tells a node nothing of where it sits (issue 12,
        finding 1; before, the array lost about a slot a hop and the last node often got one).
        """
        for size in (1, 4, 15):
            circle = Circle(size)
            built = circle.build()
            self.assertEqual(set(built.sizes), {len(built.initial)})
            self.assertEqual(len(built.expectedReturn), len(built.initial))
            self.assertGreater(len(built.initial), size)
        rng = random.Random(3)
        for _ in range(2000):
            arrivals, instructions, returned = playRound(15, rng)
            sizes = {len(arrival) for arrival in arrivals} | {len(returned)}
            self.assertEqual(len(sizes), 1, sizes)

    def test_ownPlaceUniform(self):
        """
        Where a node finds its own slot is spread alike over the array at every position on
        the circle: at no position is any index more than half as likely again as its share.
        """
        rng = random.Random(4)
        rounds = 4000
        for position in (0, 7, 14):
            places = [0] * 4
            for _ in range(rounds):
                arrivals, _, _ = playRound(15, rng)
                arrival = arrivals[position]
                places[arrival.index(("hop", position)) * len(places) // len(arrival)] += 1
            self.assertLess(max(places) / rounds, 1.5 / len(places), places)

    def test_slotsLookAlike(self):
        """Every slot, real or dummy, has the same size; packages are all the same size too."""
        built = Circle(6).build()
        self.assertEqual({len(slot) for slot in built.initial}, {SLOT_SIZE})
        self.assertEqual(len(encodePackage(fieldsFor("X"), round=2, construction_key=bytes(32), array_hash=bytes(32), dummies=[
            {"operation": "NONE", "index": 0, "seed": bytes(16)}] * 4, routing_entry=b"e" * 530)), PACKAGE_SIZE)

    def test_otherRoundRefused(self):
        """A round-1 array replayed as round 2 opens for nobody."""
        circle = Circle(3)
        built = circle.build(round=1)
        self.assertRaises(SetupRejected, circle.visit, 0, built.initial, 2)

    def test_foreignSignature(self):
        """A slot signed by another construction key is noticed."""
        circle = Circle(3)
        built = circle.build()
        circle.construction = ed25519.Ed25519PrivateKey.generate()
        self.assertRaises(SetupRejected, circle.visit, 0, built.initial)

    def test_wrongLink(self):
        """An array that arrives over another link than its slot was made for opens for nobody."""
        circle = Circle(3)
        built = circle.build()
        circle.linkIds[0] = os.urandom(16)
        self.assertRaises(SetupRejected, circle.visit, 0, built.initial)

    @settings(max_examples=200)
    @given(st.integers(2, 16), st.data())
    def test_tamperingAlwaysNoticed(self, size, data):
        """
        Over 200 circles, one node tampers with the array it forwards (flips a bit, reorders,
        inserts, drops or replaces a slot): the next node or the owner notices, every time.
        """
        circle = Circle(size, seed=data.draw(st.integers(0, 2**32)))
        built = circle.build()
        culprit = data.draw(st.integers(0, size - 1))
        how = data.draw(st.sampled_from(["flip", "reorder", "insert", "drop", "replace"]))
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        slots = built.initial
        for hop in range(culprit + 1):
            slots = circle.visit(hop, slots)
        tampered = tamper(slots, how, rng)
        self.assertNotEqual(tampered, slots)
        if culprit + 1 < size:
            self.assertRaises(SetupRejected, circle.visit, culprit + 1, tampered)
        else:
            self.assertNotEqual(tampered, built.expectedReturn)

    def test_hashCoversOrderAndOwnPlace(self):
        """The array hash covers every other slot in order, and where the node's own slot is."""
        slots = [bytes([i]) * SLOT_SIZE for i in range(3)]
        self.assertEqual(arrayHash(slots, 1), arrayHash([slots[0], b"anything", slots[2]], 1))
        self.assertNotEqual(arrayHash(slots, 1), arrayHash([slots[2], slots[1], slots[0]], 1))
        self.assertNotEqual(arrayHash(slots, 1), arrayHash([slots[1], slots[0], slots[2]], 0))


packageFields = st.builds(
    lambda role, entry, success, entryLength: encodePackage(
        fieldsFor(role),
        round=1,
        construction_key=bytes(32),
        array_hash=bytes(32),
        dummies=[{"operation": "NONE", "index": 0, "seed": bytes(16)}] * 4,
        entry=entry,
        success=success,
        routing_entry=b"r" * entryLength,
    ),
    st.sampled_from(["X", "Y", "T"]),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 530),
)


class SchemaTests(SynchronousTestCase):
    """The setup schemas accept exactly their canonical form."""

    @given(mutated(packageFields))
    def test_packageMutations(self, data):
        assertCanonicalOrRejected(self, SetupPackage, data)

    @given(st.lists(st.binary(min_size=SLOT_SIZE, max_size=SLOT_SIZE), min_size=1, max_size=4), st.sampled_from([1, 2]))
    def test_arrayRoundTrip(self, slots, round):
        data = SetupArray.build({"round": round, "slots": slots})
        self.assertEqual(SetupArray.build(parseStrict(SetupArray, data)), data)

    @given(mutated(st.lists(st.binary(min_size=SLOT_SIZE, max_size=SLOT_SIZE), min_size=1, max_size=3).map(
        lambda slots: SetupArray.build({"round": 1, "slots": slots}))))
    def test_arrayMutations(self, data):
        assertCanonicalOrRejected(self, SetupArray, data)

    def test_paddingMustBeZero(self):
        """Non-zero padding after the routing entry is malformed."""
        package = bytearray(encodePackage(fieldsFor(), round=1, construction_key=bytes(32), array_hash=bytes(32),
                                          dummies=[{"operation": "NONE", "index": 0, "seed": bytes(16)}] * 4))
        package[-1] = 1
        from phantom.wire import ProtocolError
        self.assertRaises(ProtocolError, parseStrict, SetupPackage, bytes(package))
