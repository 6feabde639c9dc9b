"""
Setup packages and setup arrays: the two-round routing-path construction (paper §7.1).

Every package has one fixed size, whatever the recipient's role and the round: neighbours are
named by fixed address fields and 32-byte pins (node ids) rather than certificates, a fixed
number of dummy instructions is always present, and the routing-entry field is padded to the
largest routing entry. Sealed, signed and encrypted, every package becomes a slot of
L{SLOT_SIZE} bytes, the same size as a dummy slot, which is PRNG output.
"""

import enum

from construct import (
    Array,
    Bytes,
    Check,
    Const,
    ExprValidator,
    Int8ub,
    Int16ub,
    OneOf,
    PrefixedArray,
    Struct,
    Terminated,
    this,
)

from phantom.wire import enumOf
from phantom.wire.dht import MAX_ENTRY_NODES

LINK_ID_SIZE = 16
DUMMY_INSTRUCTIONS = 4
"""How many dummy instructions every package carries (unused ones are NONE)."""
DUMMY_SEED_SIZE = 16
ROUTING_ENTRY_FIELD = 1 + 16 + 8 + 8 + 32 + 1 + MAX_ENTRY_NODES * (32 + 16 + 2) + 64
"""Room for the largest routing entry (eight entry nodes)."""
MAX_SLOTS = 128
"""The most slots a setup array holds, dummies included."""
PACKAGE_FORMAT = b"\x01"


class Role(enum.IntEnum):
    """What a node is in a path under construction."""

    Y = 1
    """A helper, gone after round 2."""
    X = 2
    """An intermediate node of the finished path."""
    T = 3
    """The terminating X-node: the exit node of an exit path, the entry node of an entry path."""


class DummyOperation(enum.IntEnum):
    """What one dummy instruction makes a node do to the array after removing its own slot."""

    NONE = 0
    INSERT = 1
    """Insert the dummy slot generated from the seed at the index."""
    DELETE = 2
    """Delete the slot at the index (always a dummy the owner knows)."""


DummyInstruction = Struct(
    "operation" / enumOf(DummyOperation),
    "index" / Int16ub,
    "seed" / Bytes(DUMMY_SEED_SIZE),
    # Parsing gives the name with its number, building takes the name or the number.
    Check(lambda ctx: ctx.operation not in ("NONE", 0) or (ctx.index == 0 and ctx.seed == bytes(DUMMY_SEED_SIZE))),
)

Neighbour = Struct(
    "address" / Bytes(16),
    "port" / Int16ub,
    "node_id" / Bytes(32),
    "link_id" / Bytes(LINK_ID_SIZE),
)
"""A neighbour on the circle: all zeros where there is none (a reversed circle's T in round 2)."""

SetupPackage = Struct(
    "format" / Const(PACKAGE_FORMAT),
    "round" / OneOf(Int8ub, [1, 2]),
    "role" / enumOf(Role),
    "entry" / OneOf(Int8ub, [0, 1]),
    "success" / OneOf(Int8ub, [0, 1]),
    "previous" / Neighbour,
    "next" / Neighbour,
    "construction_key" / Bytes(32),
    "array_hash" / Bytes(32),
    "dummies" / Array(DUMMY_INSTRUCTIONS, DummyInstruction),
    "key_seed" / Bytes(32),
    "key_count" / Int16ub,
    "ap_address" / Bytes(16),
    "routing_entry_length" / ExprValidator(Int16ub, lambda obj, ctx: obj <= ROUTING_ENTRY_FIELD),
    "routing_entry" / Bytes(this.routing_entry_length),
    "padding" / Bytes(ROUTING_ENTRY_FIELD - this.routing_entry_length),
    Check(lambda ctx: ctx.padding == bytes(len(ctx.padding))),
    Terminated,
)
SetupPackage.name = "setup package"

PACKAGE_SIZE = 5 + 2 * (16 + 2 + 32 + LINK_ID_SIZE) + 32 + 32 + DUMMY_INSTRUCTIONS * (1 + 2 + DUMMY_SEED_SIZE) + 32 + 2 + 16 + 2 + ROUTING_ENTRY_FIELD
"""Every setup package is exactly this long."""

SEALED_SIZE = 32 + PACKAGE_SIZE + 16
"""A package sealed to a path-building key: ephemeral X25519 key, AES-GCM ciphertext and tag."""

SIGNATURE_SIZE = 64
SLOT_SIZE = SIGNATURE_SIZE + SEALED_SIZE
"""A slot: the construction key's signature and the sealed package, under the link-id layer."""

SetupArray = Struct(
    "round" / OneOf(Int8ub, [1, 2]),
    # Empty when the last node's slot and every dummy are gone: what may return to the owner.
    "slots" / PrefixedArray(ExprValidator(Int16ub, lambda obj, ctx: obj <= MAX_SLOTS), Bytes(SLOT_SIZE)),
    Terminated,
)
SetupArray.name = "setup array"
