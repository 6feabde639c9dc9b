"""
Key sets, block transforms, the owner's key recovery and the stream layers, without a network:
the hops are simulated by applying their transforms.
"""

import os
import random
from functools import partial

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from bench.tunnel import firstBlockNestedSearch, naiveRecoverKeys
from phantom.tunnel import keys
from phantom.path.circle import MAX_KEY_COUNT, MIN_KEY_COUNT
from phantom.tunnel.keys import (
    BACKWARD,
    FORWARD,
    MAX_COMBINATIONS,
    CellCipher,
    KeySet,
    StreamLayer,
    applyLayers,
    backward,
    forward,
    recoverKeys,
    streamKeys,
    wrapForHops,
)
from phantom.wire import ProtocolError
from phantom.wire.tunnel import (
    BLOCK_SIZE,
    CELL_CAPACITY,
    CELL_SIZE,
    buildCell,
    buildEntryInit,
    buildExitInit,
    cellLength,
    isExitInit,
    parseCell,
    parseEntryInit,
    requireCell,
)
from tests.tunnel.helpers import flipBit

OPPOSITE = {FORWARD: BACKWARD, BACKWARD: FORWARD}

seeds = st.binary(min_size=32, max_size=32)
blocks = st.binary(min_size=BLOCK_SIZE, max_size=BLOCK_SIZE)
peels = st.sampled_from([FORWARD, BACKWARD])


def keySetsFor(sizes, rng):
    return [KeySet(rng.randbytes(32), size) for size in sizes]


def chosenKeys(keySets, chosen):
    return [keySet.keys[index] for keySet, index in zip(keySets, chosen)]


def sentBack(keySets, chosen, block, peel):
    """
    C{block} as the owner receives it: T first, then every hop towards the owner, each adds
    its layer with the transform opposite to C{peel}.
    """
    return applyLayers(reversed(chosenKeys(keySets, chosen)), block, OPPOSITE[peel])


def _entryFor(block, apAddress):
    """The owner's check of an entry init block: well-formed, and for its own AP-address."""
    try:
        return parseEntryInit(block)[0] == apAddress
    except ProtocolError:
        return False


class KeySetTests(SynchronousTestCase):
    """A key set is a pure function of its seed and count, its keys all different."""

    def test_deterministic(self):
        """The owner derives the very keys the hop derives from the same seed."""
        seed = os.urandom(32)
        self.assertEqual(KeySet(seed, 5).keys, KeySet(seed, 5).keys)
        self.assertEqual(KeySet(seed, 5).keys, KeySet(seed, 8).keys[:5])

    def test_keysDiffer(self):
        """Keys of different indices and of different seeds all differ."""
        gathered = [key for _ in range(20) for key in KeySet(os.urandom(32), 30).keys]
        self.assertEqual(len(set(gathered)), len(gathered))
        self.assertEqual({len(key) for key in gathered}, {32})

    def test_choose(self):
        """A hop chooses every index of its set, and nothing else."""
        keySet = KeySet(bytes(32), 6)
        rng = random.Random(1)
        self.assertEqual({keySet.choose(rng) for _ in range(500)}, set(range(6)))

    def test_badArguments(self):
        """Seeds are 32 bytes; a set has MIN_KEY_COUNT to MAX_KEY_COUNT keys."""
        self.assertRaises(ValueError, KeySet, bytes(31), 4)
        self.assertRaises(ValueError, KeySet, bytes(32), MIN_KEY_COUNT - 1)
        self.assertRaises(ValueError, KeySet, bytes(32), MAX_KEY_COUNT + 1)
        self.assertEqual(len(KeySet(bytes(32), MAX_KEY_COUNT)), MAX_KEY_COUNT)

    def test_firstBlockCiphersKept(self):
        """The ECB contexts are made once per direction and give CBC's first block."""
        keySet = KeySet(os.urandom(32), 3)
        self.assertIs(keySet.firstBlockCiphers(FORWARD), keySet.firstBlockCiphers(FORWARD))
        block = os.urandom(BLOCK_SIZE)
        for direction, transform in ((FORWARD, forward), (BACKWARD, backward)):
            for key, cipher in zip(keySet.keys, keySet.firstBlockCiphers(direction)):
                self.assertEqual(cipher.update(block[:16]), transform(key, block)[:16])
        self.assertRaises(ValueError, keySet.firstBlockCiphers, "sideways")


class TransformTests(SynchronousTestCase):
    """Per-hop transforms of 48-byte blocks."""

    @given(seeds, blocks)
    def test_inverse(self, key, block):
        """Backward undoes forward and the other way round."""
        self.assertEqual(backward(key, forward(key, block)), block)
        self.assertEqual(forward(key, backward(key, block)), block)

    @given(seeds, blocks, blocks)
    def test_firstBlockAlone(self, key, block, other):
        """The first AES block of the output depends on the first of the input only."""
        mixed = block[:16] + other[16:]
        self.assertEqual(forward(key, block)[:16], forward(key, mixed)[:16])
        self.assertEqual(backward(key, block)[:16], backward(key, mixed)[:16])

    @given(seeds, blocks)
    def test_chained(self, key, block):
        """CBC: a change in the first AES block changes every output block going forward."""
        changed = bytes([block[0] ^ 1]) + block[1:]
        out, outChanged = forward(key, block), forward(key, changed)
        for start in (0, 16, 32):
            self.assertNotEqual(out[start : start + 16], outChanged[start : start + 16])

    def test_blockSize(self):
        """Only 48-byte blocks are transformed."""
        self.assertRaises(ValueError, forward, bytes(32), bytes(32))
        self.assertRaises(ValueError, backward, bytes(32), bytes(64))

    @given(st.lists(seeds, min_size=1, max_size=5), blocks)
    def test_wrapForHops(self, hopKeys, block):
        """Each hop in turn removes one layer with backward; T ends with the plain block."""
        travelling = wrapForHops(hopKeys, block)
        for key in hopKeys:
            self.assertNotEqual(travelling, block)
            travelling = backward(key, travelling)
        self.assertEqual(travelling, block)

    @given(st.lists(seeds, min_size=1, max_size=5), blocks, peels)
    def test_peelWhatHopsAdded(self, hopKeys, block, peel):
        """
        Layers added by the hops towards the owner (T first) come off with C{peel}, adjacent
        hop first.
        """
        received = applyLayers(reversed(hopKeys), block, OPPOSITE[peel])
        self.assertEqual(applyLayers(hopKeys, received, peel), block)


class RecoveryTests(SynchronousTestCase):
    """The owner finds the key every hop chose, and nothing else."""

    @given(st.data())
    def test_findsChosenKeys(self, data):
        """
        For random choices over 1 to 4 hops, either direction, exit and entry blocks: the keys
        chosen, the same as the thesis's nested loops find.
        """
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        sizes = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
        keySets = keySetsFor(sizes, rng)
        chosen = tuple(data.draw(st.integers(0, size - 1)) for size in sizes)
        peel = data.draw(peels)
        ap = b"\xfd" + rng.randbytes(15)
        if data.draw(st.booleans()):
            plain, accept = buildExitInit(rng.randbytes), isExitInit
        else:
            plain = buildEntryInit(ap, rng.randbytes(16), rng.randbytes)
            accept = partial(_entryFor, apAddress=ap)
        package = sentBack(keySets, chosen, plain, peel)
        self.assertEqual(recoverKeys(keySets, package, peel, accept), chosen)
        self.assertEqual(naiveRecoverKeys(keySets, package, peel, accept), chosen)
        self.assertEqual(firstBlockNestedSearch(keySets, package, peel, accept), chosen)
        self.assertEqual(applyLayers(chosenKeys(keySets, chosen), package, peel), plain)

    def test_worstCase(self):
        """The last combination in search order is found, with 4 hops of 30 keys."""
        rng = random.Random(7)
        keySets = keySetsFor([30] * 4, rng)
        for peel in (FORWARD, BACKWARD):
            for chosen in ((29, 29, 29, 29), (0, 0, 0, 0), (29, 0, 29, 0)):
                package = sentBack(keySets, chosen, buildExitInit(rng.randbytes), peel)
                self.assertEqual(recoverKeys(keySets, package, peel, isExitInit), chosen)

    def test_noChoiceFits(self):
        """A random package, or one under keys outside the sets, is never accepted."""
        rng = random.Random(3)
        keySets = keySetsFor([5, 5, 5], rng)
        strangers = keySetsFor([1, 1, 1], rng)
        for peel in (FORWARD, BACKWARD):
            self.assertIsNone(recoverKeys(keySets, rng.randbytes(BLOCK_SIZE), peel, isExitInit))
            package = sentBack(strangers, (0, 0, 0), buildExitInit(rng.randbytes), peel)
            self.assertIsNone(recoverKeys(keySets, package, peel, isExitInit))

    def test_anyBitFlipRejected(self):
        """
        A package with any one bit flipped is never accepted, with the right keys or wrong ones:
        the checksum covers the whole block and every layer spreads a change.
        """
        rng = random.Random(11)
        for hops in (1, 3):
            keySets = keySetsFor([4] * hops, rng)
            for peel in (FORWARD, BACKWARD):
                chosen = tuple(keySet.choose(rng) for keySet in keySets)
                package = sentBack(keySets, chosen, buildExitInit(rng.randbytes), peel)
                self.assertEqual(recoverKeys(keySets, package, peel, isExitInit), chosen)
                for bit in range(BLOCK_SIZE * 8):
                    flipped = bytearray(package)
                    flipped[bit // 8] ^= 1 << bit % 8
                    self.assertIsNone(recoverKeys(keySets, bytes(flipped), peel, isExitInit), (hops, peel, bit))

    def test_fastTestFirst(self):
        """Only candidates passing the fast test reach the full check."""
        rng = random.Random(5)
        keySets = keySetsFor([8, 8, 8], rng)
        checked = []

        def accept(block):
            checked.append(block)
            return isExitInit(block)

        chosen = (7, 7, 7)
        package = sentBack(keySets, chosen, buildExitInit(rng.randbytes), FORWARD)
        self.assertEqual(recoverKeys(keySets, package, FORWARD, accept), chosen)
        self.assertEqual(len(checked), 1)

    def test_tooManyCombinations(self):
        """More than the bound is refused at once, before any work."""
        rng = random.Random(9)
        self.assertRaises(ValueError, recoverKeys, keySetsFor([30] * 5, rng), bytes(BLOCK_SIZE), FORWARD, isExitInit)
        self.assertGreater(30**5, MAX_COMBINATIONS)
        self.patch(keys, "MAX_HELD_BLOCKS", 24)
        self.assertRaises(ValueError, recoverKeys, keySetsFor([5, 5, 2], rng), bytes(BLOCK_SIZE), FORWARD, isExitInit)
        self.assertIsNone(recoverKeys(keySetsFor([4, 6, 2], rng), bytes(BLOCK_SIZE), FORWARD, isExitInit))

    def test_badArguments(self):
        """No key set, a package of the wrong size, or an unknown direction are refused."""
        keySets = keySetsFor([2], random.Random(1))
        self.assertRaises(ValueError, recoverKeys, [], bytes(BLOCK_SIZE), FORWARD, isExitInit)
        self.assertRaises(ValueError, recoverKeys, keySets, bytes(BLOCK_SIZE - 1), FORWARD, isExitInit)
        self.assertRaises(ValueError, recoverKeys, keySets, bytes(BLOCK_SIZE), "sideways", isExitInit)


class StreamTests(SynchronousTestCase):
    """Stream keys never repeat; the owner's layers and the hops' cancel out."""

    def test_keysAllDistinct(self):
        """
        Keys differ across directions, hops (each its own chosen key) and tunnels (each its own
        material), including a hop choosing the same key in two tunnels.
        """
        gathered = []
        for _ in range(20):
            material = os.urandom(BLOCK_SIZE)
            for chosenKey in KeySet(os.urandom(32), 3).keys:
                gathered += streamKeys(chosenKey, material)
        sameKey = os.urandom(32)
        for _ in range(20):
            gathered += streamKeys(sameKey, os.urandom(BLOCK_SIZE))
        self.assertEqual(len(set(gathered)), len(gathered))
        self.assertEqual({len(key) for key in gathered}, {32})

    def test_deterministic(self):
        """The owner derives the hop's keys from what it knows: the chosen key and the block."""
        key, material = os.urandom(32), os.urandom(BLOCK_SIZE)
        self.assertEqual(streamKeys(key, material), streamKeys(key, material))

    def test_badArguments(self):
        """A chosen key is 32 bytes; the material is a 48-byte block."""
        self.assertRaises(ValueError, streamKeys, bytes(16), bytes(BLOCK_SIZE))
        self.assertRaises(ValueError, streamKeys, bytes(32), bytes(16))

    @given(st.lists(st.binary(max_size=CELL_CAPACITY), min_size=1, max_size=6), st.integers(0, 4))
    @settings(deadline=None)
    def test_layersCancel(self, chunks, hops):
        """
        A cell the owner wraps in every layer's inverse, T's first, reaches T plain after each
        hop added its own, x0 first; and a cell T sends back, each hop adding its layer, comes
        out plain at the owner removing them, x0's first.
        """
        hopKeys = [(os.urandom(32), os.urandom(BLOCK_SIZE)) for _ in range(hops)]
        owner = [StreamLayer(*pair) for pair in hopKeys]
        relays = [StreamLayer(*pair) for pair in hopKeys]
        for chunk in chunks:
            travelling = buildCell(chunk)
            for layer in reversed(owner):
                travelling = layer.alongCipher.inverse(travelling)
            for relay in relays:
                travelling = relay.along(travelling)
            self.assertEqual(parseCell(travelling), chunk)
        for chunk in chunks:
            travelling = buildCell(chunk)
            for relay in reversed(relays):
                travelling = relay.against(travelling)
            for layer in owner:
                travelling = layer.againstCipher.inverse(travelling)
            self.assertEqual(parseCell(travelling), chunk)

    def test_directionsDiffer(self):
        """The two directions' ciphers differ, and neither repeats from cell to cell."""
        layer = StreamLayer(os.urandom(32), os.urandom(BLOCK_SIZE))
        zeros = bytes(CELL_SIZE)
        first, second = layer.along(zeros), layer.along(zeros)
        self.assertNotEqual(first, second)
        self.assertNotEqual(first, layer.against(zeros))
        self.assertNotEqual(first, zeros)
        self.assertRaises(ProtocolError, layer.along, bytes(CELL_SIZE - 1))
        self.assertRaises(ProtocolError, layer.against, bytes(CELL_SIZE + 1))


class CellCipherTests(SynchronousTestCase):
    def hops(self, count):
        keys = [os.urandom(32) for _ in range(count)]
        return [CellCipher(key) for key in keys], [CellCipher(key) for key in keys]

    def test_wrongKeyGarbles(self):
        """A cell through another key's cipher comes out as no plain cell."""
        cell = buildCell(b"data")
        self.assertRaises(ProtocolError, parseCell, CellCipher(os.urandom(32)).inverse(CellCipher(os.urandom(32)).forward(cell)))

    @given(st.integers(0, 8 * CELL_SIZE - 1), st.integers(1, 3), st.integers(0, 2))
    @settings(deadline=None, max_examples=200)
    def test_anyFlipGarbles(self, bit, hops, at):
        """
        One bit flipped in a cell before hop C{at} of C{hops}: the plain cell fails its check,
        and every bit of what the hops after it send differs from what they would have sent as
        often as chance has it (no bit of the flip shows through); the next cell fails too.
        """
        at = min(at, hops - 1)
        owner, relays = self.hops(hops)
        twins = [relay.copy() for relay in relays]
        cells = [buildCell(os.urandom(100)) for _ in range(2)]
        for index, cell in enumerate(cells):
            for layer in reversed(owner):
                cell = layer.inverse(cell)
            honest = tampered = cell
            for hop, (relay, twin) in enumerate(zip(relays, twins)):
                if hop == at and index == 0:
                    tampered = bytes(flipBit(tampered, bit))
                honest, tampered = relay.forward(honest), twin.forward(tampered)
            self.assertEqual(len(tampered), CELL_SIZE)
            self.assertRaises(ProtocolError, parseCell, tampered)
            differing = bin(int.from_bytes(honest, "big") ^ int.from_bytes(tampered, "big")).count("1")
            self.assertGreater(differing, 8 * CELL_SIZE * 0.45)

    def test_forwardSecrecy(self):
        """
        The state a hop holds after a cell (what taking the hop later yields, L{CellCipher.copy})
        decrypts neither that cell nor the ones before it; the state changes with every cell.
        """
        sender, hop = self.hops(1)
        sender, hop = sender[0], hop[0]
        plain = [buildCell(os.urandom(50)) for _ in range(3)]
        seen = [sender.inverse(cell) for cell in plain]
        states = []
        for cell in seen:
            states.append(hop.copy())
            self.assertEqual(parseCell(hop.forward(cell)), parseCell(states[-1].copy().forward(cell)))
        states.append(hop.copy())
        probe = bytes(CELL_SIZE)
        self.assertEqual(len({state.forward(probe) for state in states}), len(states))
        for cell in seen:
            self.assertRaises(ProtocolError, parseCell, hop.copy().forward(cell))

    def test_oneKeySchedulePerCell(self):
        """
        A layer costs one AES-GCM key schedule per cell, each key used for one cell only:
        the hash, the keystream and the next key all come from it.
        """
        made = []

        def counted(key):
            made.append(key)
            return AESGCM(key)

        self.patch(keys, "AESGCM", counted)
        cipher = CellCipher(os.urandom(32))
        for _ in range(3):
            cipher.forward(bytes(CELL_SIZE))
        cipher.inverse(bytes(CELL_SIZE))
        self.assertEqual(len(made), 4)
        self.assertEqual(len(set(made)), 4)

    def test_twoCallsPerCell(self):
        """
        A layer makes two AES-GCM calls per cell, either way: a GMAC over the body, and one
        pass that encrypts it and makes the next key (the head is the keystream's nonce).
        """
        calls = []

        class Counted:
            def __init__(self, key):
                self._aead = AESGCM(key)

            def encrypt(self, nonce, data, associatedData):
                calls.append(len(nonce))
                return self._aead.encrypt(nonce, data, associatedData)

        self.patch(keys, "AESGCM", Counted)
        cipher = CellCipher(os.urandom(32))
        cipher.forward(bytes(CELL_SIZE))
        cipher.inverse(bytes(CELL_SIZE))
        self.assertEqual(calls, [12, 16, 16, 12])

    @given(st.binary(max_size=64), st.sampled_from([bytes, bytearray, memoryview]))
    @settings(deadline=None, max_examples=20)
    def test_anyBuffer(self, start, kind):
        """A layer takes any bytes-like cell, and gives C{bytes}: its inverse undoes it."""
        key = os.urandom(32)
        cell = start + os.urandom(CELL_SIZE - len(start))
        added = CellCipher(key).forward(kind(cell))
        self.assertIs(type(added), bytes)
        self.assertEqual(CellCipher(key).inverse(kind(added)), cell)
        self.assertEqual(CellCipher(key).forward(cell), added)

    def test_cellCount(self):
        cipher = CellCipher(os.urandom(32))
        cipher.forward(bytes(CELL_SIZE))
        cipher.inverse(bytes(CELL_SIZE))
        self.assertEqual(cipher.cells, 2)


class CellFormatTests(SynchronousTestCase):
    @given(st.binary(max_size=CELL_CAPACITY))
    def test_roundTrip(self, data):
        """Any data up to a cell's capacity: a cell of L{CELL_SIZE} bytes that parses back to it."""
        cell = buildCell(data)
        self.assertEqual(len(cell), CELL_SIZE)
        self.assertEqual(parseCell(cell), data)
        self.assertIs(requireCell(cell), cell)

    @given(st.binary(max_size=CELL_CAPACITY), st.data())
    def test_mutations(self, data, draw):
        """
        A cell cut, extended, with a byte of its check or its padding changed, or a length
        beyond its capacity: a L{ProtocolError}. (A length changed within the capacity may
        still parse, as may a changed data byte: what keeps cells whole is the layers'
        cipher, which garbles the check of any cell altered under it.)
        """
        cell = bytearray(buildCell(data))
        how = draw.draw(st.sampled_from(["cut", "extend", "check", "length", "padding"]))
        if how == "cut":
            cell = cell[: draw.draw(st.integers(0, CELL_SIZE - 1))]
        elif how == "extend":
            cell += draw.draw(st.binary(min_size=1, max_size=64))
        elif how == "check":
            cell[draw.draw(st.integers(0, 15))] ^= draw.draw(st.integers(1, 255))
        elif how == "length":
            cell[16:18] = draw.draw(st.integers(CELL_CAPACITY + 1, 0xFFFF)).to_bytes(2, "big")
        else:
            if len(data) == CELL_CAPACITY:
                return
            cell[draw.draw(st.integers(CELL_SIZE - (CELL_CAPACITY - len(data)), CELL_SIZE - 1))] ^= draw.draw(st.integers(1, 255))
        with self.assertRaises(ProtocolError):
            parseCell(bytes(cell))

    @given(st.binary(max_size=CELL_CAPACITY), st.sampled_from([bytes, bytearray]))
    def test_length(self, data, kind):
        """
        L{cellLength} of any plain cell, as C{bytes} or a C{bytearray}, is the length of its
        data, and L{parseCell} gives the data as C{bytes}; L{buildCell} takes any bytes-like data.
        """
        cell = kind(buildCell(kind(data)))
        self.assertEqual(cellLength(cell), len(data))
        parsed = parseCell(cell)
        self.assertIs(type(parsed), bytes)
        self.assertEqual(parsed, data)
        self.assertIs(requireCell(cell), cell)

    def test_badInput(self):
        """The errors say what is wrong."""
        for cell, why in (
            (bytes(10), "10 bytes where"),
            (b"\x01" + bytes(CELL_SIZE - 1), "does not check out"),
            (bytes(16) + b"\xff\xff" + bytes(CELL_SIZE - 18), "more than"),
            (bytes(CELL_SIZE - 1) + b"\x01", "padding"),
        ):
            with self.assertRaises(ProtocolError) as caught:
                parseCell(cell)
            self.assertIn(why, str(caught.exception))
        self.assertRaises(ValueError, buildCell, bytes(CELL_CAPACITY + 1))
