"""
Setup arrays, sans-io: the owner builds them; every node on the circle finds its own slot,
checks the array and passes it on.

The owner first plays the whole round through on tokens (which real slot or which dummy sits
where when the array reaches each node), then builds the real slots in reverse order of the
circle. Every node's package therefore carries the exact hash of the ordered array it will
receive, minus its own slot (paper §7.1.1 step 5.10). A node removes its slot and inserts or
deletes dummies only where the owner said, so that the array keeps one size all the way round
(L{playRound}); nobody shuffles. Any slot changed, moved, added or
dropped by a node on the way is caught by the next honest node, or by the owner, who knows the
exact array that must come back.

A slot is, under an AES-256-CTR layer keyed by the recipient's incoming link id and the round:
the construction key's Ed25519 signature over the sealed package, then the package sealed to
the recipient's X25519 path-building key. Without the link id a slot is indistinguishable from
a dummy, which is AES-CTR keystream under a seed.
"""

import hashlib
from dataclasses import dataclass

from phantom.crypto import (
    deriveKey,
    keystreamXor,
    openSealed,
    pseudorandomBytes,
    rawPublicBytes,
    sealTo,
    signWithDomain,
    verifyWithDomain,
)
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.path import (
    DUMMY_INSTRUCTIONS,
    DUMMY_SEED_SIZE,
    MAX_SLOTS,
    PACKAGE_FORMAT,
    ROUTING_ENTRY_FIELD,
    SIGNATURE_SIZE,
    SLOT_SIZE,
    DummyOperation,
    SetupPackage,
)

SLOT_DOMAIN = b"phantom setup slot"
SEAL_DOMAIN = b"phantom setup package"
SIGNATURE_DOMAIN = b"phantom setup signature"

NO_INSTRUCTION = {"operation": DummyOperation.NONE.name, "index": 0, "seed": bytes(DUMMY_SEED_SIZE)}


class SetupRejected(Exception):
    """A node will not take part: the array or its package is not what it must be."""


def slotKey(linkId, round):
    """The key of the link-id layer of a slot sent over the link C{linkId} in C{round}."""
    return deriveKey(linkId, SLOT_DOMAIN + bytes([round]))


def dummySlot(seed):
    """The dummy slot a seed stands for."""
    return pseudorandomBytes(seed, SLOT_SIZE)


def arrayHash(slots, ownIndex):
    """
    SHA-256 over where the node's own slot is and every other slot in order: the whole state
    of the array as the node receives it, its own slot's contents aside.
    """
    digest = hashlib.sha256(ownIndex.to_bytes(2, "big"))
    for index, slot in enumerate(slots):
        if index != ownIndex:
            digest.update(slot)
    return digest.digest()


def encodeSlot(package, recipientKey, linkId, round, constructionKey):
    """
    A slot for one recipient.

    @param package: the encoded setup package.
    @param recipientKey: the recipient's X25519 path-building public key, 32 raw bytes.
    @param linkId: the id of the link the array reaches the recipient over.
    @param constructionKey: the path's Ed25519 construction private key.
    """
    sealed = sealTo(recipientKey, package, SEAL_DOMAIN)
    signature = signWithDomain(constructionKey, SIGNATURE_DOMAIN, sealed)
    return keystreamXor(slotKey(linkId, round), signature + sealed)


@dataclass(frozen=True)
class OpenedSlot:
    """A node's own slot, found and opened."""

    index: int
    package: object
    """The parsed setup package."""
    signature: bytes
    sealed: bytes

    def signedBy(self, constructionKey):
        """Whether the construction key (32 raw bytes) signed this slot."""
        return verifyWithDomain(constructionKey, SIGNATURE_DOMAIN, self.sealed, self.signature)


def parseOfRound(schema, payload, round, what):
    """
    C{payload} parsed by C{schema} (a setup array or package), which must be of C{round}.

    @param what: what it is, for the error (C{"array"}, C{"package"}).
    @raise SetupRejected: it does not parse, or is of another round.
    """
    try:
        parsed = parseStrict(schema, payload)
    except ProtocolError as e:
        raise SetupRejected(str(e)) from e
    if parsed.round != round:
        raise SetupRejected(f"a round-{parsed.round} {what} where round {round} was due")
    return parsed


MAX_TRIALS = 32
"""
The most slots of one array a node tries its path-building key on. Only slots that may be
real are tried (L{mayBeReal}: 1 in 16 of the others), so an honest array of L{MAX_SLOTS} slots
needs about 9 trials, and more than 32 with probability below 10^-9.
"""


def mayBeReal(plain):
    """
    Whether a slot, its link-id layer taken off, may be a real one: the Ed25519 signature's S
    is below 2^253 (its last byte's top three bits clear) and the ephemeral X25519 key is below
    2^255 (its last byte's top bit clear), as every real slot's are. Random bytes pass with
    probability 1/16. Only a node that knows the link id can take that layer off, and the
    previous node, which does, could tell as much already: the hint tells nobody anything.
    """
    return not plain[SIGNATURE_SIZE - 1] & 0xE0 and not plain[SIGNATURE_SIZE + 31] & 0x80


def openOwnSlot(slots, linkId, round, pathBuildingKey, maxTrials=MAX_TRIALS, tried=lambda: None):
    """
    Find and open the slot meant for this node: the one that opens with the layer of the link it
    came over and with this node's path-building key, trying the key on at most C{maxTrials}
    slots that L{mayBeReal}.

    @param tried: called for each slot the key is tried on (an X25519 exchange each).
    @raise SetupRejected: no slot is ours, or ours is malformed or of another round.
    """
    key = slotKey(linkId, round)
    trials = 0
    for index, slot in enumerate(slots):
        plain = keystreamXor(key, slot)
        if not mayBeReal(plain):
            continue
        if trials == maxTrials:
            raise SetupRejected(f"no slot of this node among the first {maxTrials} that may be real")
        trials += 1
        tried()
        sealed = plain[SIGNATURE_SIZE:]
        package = openSealed(pathBuildingKey, sealed, SEAL_DOMAIN)
        if package is None:
            continue
        parsed = parseOfRound(SetupPackage, package, round, "package")
        return OpenedSlot(index, parsed, plain[:SIGNATURE_SIZE], sealed)
    raise SetupRejected("no slot of this node in the array")


def checkArray(slots, opened):
    """
    @raise SetupRejected: the array, without our slot, is not exactly what the owner built it to be.
    """
    if arrayHash(slots, opened.index) != opened.package.array_hash:
        raise SetupRejected("the array is not in the state its owner predicted")


def passOn(slots, opened):
    """
    The array this node forwards: its own slot removed, then its dummy instructions applied.

    @raise SetupRejected: an instruction points outside the array or would make it too large.
    """
    forwarded = list(slots)
    del forwarded[opened.index]
    for instruction in opened.package.dummies:
        operation = DummyOperation[str(instruction.operation)]
        if operation == DummyOperation.INSERT:
            if instruction.index > len(forwarded) or len(forwarded) >= MAX_SLOTS:
                raise SetupRejected("a dummy insertion outside the array")
            forwarded.insert(instruction.index, dummySlot(instruction.seed))
        elif operation == DummyOperation.DELETE:
            if instruction.index >= len(forwarded):
                raise SetupRejected("a dummy deletion outside the array")
            del forwarded[instruction.index]
    return forwarded


@dataclass(frozen=True)
class Hop:
    """One node of the circle as the owner addresses its package."""

    pathBuildingKey: bytes
    """The node's X25519 path-building public key, 32 raw bytes."""
    linkId: bytes
    """The id of the link the array reaches the node over (the slot layer's key)."""
    fields: dict
    """The package's fields other than format, round, construction key, hash and dummy instructions."""


@dataclass(frozen=True)
class BuiltArray:
    """A round's array as the owner sends it, and as it must come back."""

    initial: list
    expectedReturn: list
    sizes: tuple
    """How many slots the array has when it reaches each node, in circle order: one size."""


EXTRA_DUMMIES = (1, 3)
"""
How many dummies the owner adds to a round's array, beyond one slot per node: the array has
N + d slots all the way round (N nodes, d drawn from this range), so its size tells a node
neither where it sits nor exactly how long the circle is.
"""


def playRound(hopCount, random, extraDummies=EXTRA_DUMMIES):
    """
    Decide where every slot sits at every step of a round, on tokens: C{("hop", i)} for node
    C{i}'s slot, C{("dummy", seed)} for a dummy.

    The array keeps one size all the way round (paper §7.1.2 steps 5.7 and 7.8: dummies hide
    how far along the path a node is): each node removes its own slot and then, where the
    owner says, either inserts one dummy or deletes one dummy and inserts two, in a random
    order. Every arrangement is a uniformly random order of the tokens it holds, so where a
    node finds its own slot tells it nothing either.

    @param random: a C{random.Random}-like source (production: C{SystemRandom}).
    @param extraDummies: the range the number of dummies beyond one slot per node is drawn from.
    @return: (the arrangement on arrival at each node, the dummy instructions of each node,
        the arrangement that returns to the owner).
    """
    arrangement = [("hop", i) for i in range(hopCount)]
    random.shuffle(arrangement)
    for _ in range(random.randint(*extraDummies)):
        arrangement.insert(random.randint(0, len(arrangement)), ("dummy", random.randbytes(DUMMY_SEED_SIZE)))
    arrivals, instructions = [], []
    for hop in range(hopCount):
        arrivals.append(list(arrangement))
        arrangement.remove(("hop", hop))
        operations = [DummyOperation.INSERT] if random.random() < 0.5 else [DummyOperation.INSERT] * 2 + [DummyOperation.DELETE]
        random.shuffle(operations)
        chosen = []
        for operation in operations:
            dummies = [index for index, token in enumerate(arrangement) if token[0] == "dummy"]
            if operation == DummyOperation.DELETE and dummies:
                index = random.choice(dummies)
                del arrangement[index]
                chosen.append({"operation": DummyOperation.DELETE.name, "index": index, "seed": bytes(DUMMY_SEED_SIZE)})
            else:
                index = random.randint(0, len(arrangement))
                seed = random.randbytes(DUMMY_SEED_SIZE)
                arrangement.insert(index, ("dummy", seed))
                chosen.append({"operation": DummyOperation.INSERT.name, "index": index, "seed": seed})
        instructions.append(chosen + [NO_INSTRUCTION] * (DUMMY_INSTRUCTIONS - len(chosen)))
    return arrivals, instructions, arrangement


def buildArray(hops, round, constructionKey, random):
    """
    Build one round's setup array.

    @param hops: the L{Hop}s in the order the array visits them.
    @param constructionKey: the path's Ed25519 construction private key.
    @param random: a C{random.Random}-like source for the arrangement and the dummies.
    @return: a L{BuiltArray}.
    """
    arrivals, instructions, returned = playRound(len(hops), random)
    constructionPublic = rawPublicBytes(constructionKey.public_key())
    slots = {}

    def bytesOf(token):
        return slots[token[1]] if token[0] == "hop" else dummySlot(token[1])

    for hop in reversed(range(len(hops))):
        arrival = arrivals[hop]
        own = arrival.index(("hop", hop))
        package = encodePackage(
            hops[hop].fields,
            round=round,
            construction_key=constructionPublic,
            array_hash=arrayHash([b"" if index == own else bytesOf(token) for index, token in enumerate(arrival)], own),
            dummies=instructions[hop],
        )
        slots[hop] = encodeSlot(package, hops[hop].pathBuildingKey, hops[hop].linkId, round, constructionKey)
    return BuiltArray(
        [bytesOf(token) for token in arrivals[0]] if hops else [],
        [bytesOf(token) for token in returned],
        tuple(len(arrival) for arrival in arrivals),
    )


def encodePackage(fields, **more):
    """
    Build a setup package from its fields, filling in the format byte, the routing-entry length
    and its padding.
    """
    values = dict(fields, **more)
    entry = values.pop("routing_entry", b"")
    return SetupPackage.build(
        dict(
            values,
            format=PACKAGE_FORMAT,
            routing_entry_length=len(entry),
            routing_entry=entry,
            padding=bytes(ROUTING_ENTRY_FIELD - len(entry)),
        )
    )
