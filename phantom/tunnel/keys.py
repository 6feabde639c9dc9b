"""
Tunnel keys, sans-io: each hop's key set, the per-hop transforms of setup blocks, the owner's
search for the key each hop chose, and the per-hop stream layers of the data phase (paper §7.2).

During tunnel setup every hop picks one key of its key set at random and transforms each
48-byte block it passes on with it: L{forward} is AES-256-CBC encryption with a zero IV and no
padding, L{backward} the decryption. Each key set has only a few dozen keys, so a zero IV would
repeat ciphertexts if plaintexts repeated; but the first AES block of every tunnel block carries
at least 64 fresh random bits (L{phantom.wire.tunnel}), and in CBC that makes every following
block differ too.

In CBC with a zero IV the first AES block of the output depends only on the first AES block of
the input, and equals its ECB transform: the owner can try a key on the first 16 bytes alone.
L{recoverKeys} tries all combinations that way, one AES call per key and hop over all the
candidates of the previous hop at once.
"""

import math

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from phantom.crypto import deriveKey
from phantom.path.circle import MAX_KEY_COUNT, MIN_KEY_COUNT
from phantom.wire import ProtocolError
from phantom.wire.tunnel import AES_BLOCK_SIZE, BLOCK_SIZE, CELL_SIZE, CHECK

KEY_SIZE = 32
SEED_SIZE = 32

FORWARD = "forward"
"""AES-256-CBC encryption with a zero IV."""
BACKWARD = "backward"
"""AES-256-CBC decryption with a zero IV."""

MAX_COMBINATIONS = 2**24
"""
The most key combinations L{recoverKeys} will search: about 20 times the 810,000 of 4 hops with
30 keys each, which take 3 to 5 ms on one core of a small server; so well under 0.1 s.
"""

MAX_HELD_BLOCKS = 2**20
"""
The most candidate first blocks L{recoverKeys} holds (16 MiB, twice that at the peak): the
combinations of all hops but the last; the last hop's candidates are made and tested one key at
a time, in one buffer of that size.
"""

_ZERO_IV = bytes(AES_BLOCK_SIZE)
_KEY_LABEL = b"phantom tunnel key\x00"
_STREAM_LABELS = (b"phantom tunnel stream along\x00", b"phantom tunnel stream against\x00")
_CONFIRMATION_LABEL = b"phantom tunnel exit confirmation\x00"
_HEAD = 16
_NONCE_BODY = bytes(11) + b"\x01"
_TAG = 16
_NEXT_KEY_ROOM = bytes(KEY_SIZE)
_TAIL = KEY_SIZE + _TAG


class KeySet:
    """
    The keys one hop chooses from for its tunnels, derived from the seed its owner sent it in
    round 2 (HKDF-SHA256, the key's index in the info, so that keys are independent).

    @ivar keys: the 32-byte AES-256 keys, in index order.
    """

    def __init__(self, seed, count):
        """
        @param seed: the 32-byte key seed of round 2.
        @param count: how many keys, L{MIN_KEY_COUNT} to L{MAX_KEY_COUNT} (what round 2 may ask
            for, L{phantom.path.circle}).
        """
        if len(seed) != SEED_SIZE:
            raise ValueError(f"a key seed is {SEED_SIZE} bytes, not {len(seed)}")
        if not MIN_KEY_COUNT <= count <= MAX_KEY_COUNT:
            raise ValueError(f"a key set has {MIN_KEY_COUNT} to {MAX_KEY_COUNT} keys, not {count}")
        self.keys = tuple(deriveKey(seed, _KEY_LABEL + index.to_bytes(2, "big")) for index in range(count))
        self._firstBlockCiphers = {}

    def __len__(self):
        return len(self.keys)

    def choose(self, random):
        """
        @param random: a C{random.SystemRandom}-like object.
        @return: the index of a key chosen uniformly.
        """
        return random.randrange(len(self.keys))

    def firstBlockCiphers(self, direction):
        """
        What L{transform} in C{direction} with each key does to the first AES block of a tunnel
        block.

        @param direction: L{FORWARD} or L{BACKWARD}.
        @return: one ECB context per key, in index order, made on first use and kept: its
            C{update} transforms any whole number of AES blocks, each independently.
        """
        ciphers = self._firstBlockCiphers.get(direction)
        if ciphers is None:
            ciphers = self._firstBlockCiphers[direction] = tuple(
                _context(Cipher(algorithms.AES(key), modes.ECB()), direction) for key in self.keys
            )
        return ciphers


def _context(cipher, direction):
    if direction == FORWARD:
        return cipher.encryptor()
    if direction == BACKWARD:
        return cipher.decryptor()
    raise ValueError(f"a direction is {FORWARD!r} or {BACKWARD!r}, not {direction!r}")


def _requireBlock(block):
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"a tunnel block is {BLOCK_SIZE} bytes, not {len(block)}")


def transform(key, block, direction):
    """
    @param key: a 32-byte key.
    @param block: a 48-byte tunnel block.
    @param direction: L{FORWARD} or L{BACKWARD}.
    @return: C{block} transformed with C{key} in C{direction}.
    """
    _requireBlock(block)
    context = _context(Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)), direction)
    return context.update(block) + context.finalize()


def forward(key, block):
    """@return: the 48-byte C{block} AES-256-CBC encrypted with C{key}, zero IV, no padding."""
    return transform(key, block, FORWARD)


def backward(key, block):
    """@return: the 48-byte C{block} AES-256-CBC decrypted with C{key}, zero IV, no padding."""
    return transform(key, block, BACKWARD)


def applyLayers(keys, block, direction):
    """
    @param keys: 32-byte keys, in the order they are applied.
    @param direction: L{FORWARD} or L{BACKWARD}.
    @return: C{block} transformed in C{direction} with each key in turn. With the hops' keys
        adjacent hop first and the transform that peels in this direction, what the hops'
        layers hid.
    """
    for key in keys:
        block = transform(key, block, direction)
    return block


def wrapForHops(keys, block):
    """
    What the owner sends so that each hop, applying L{backward} with its key in turn, passes the
    next one its share and the last hop (T) ends with C{block}.

    @param keys: the hops' chosen keys, adjacent hop first, T last.
    @return: C{block} transformed L{forward} with T's key first and the adjacent hop's last.
    """
    return applyLayers(reversed(keys), block, FORWARD)


def recoverKeys(keySets, package, peel, accept):
    """
    The owner's search for the key each hop chose, batched.

    Level by level (hop by hop), each key transforms the first AES blocks of all candidates of
    the previous level in one AES call. The last hop's candidates, made one key at a time into
    one buffer, are searched for the fast test (they start with L{CHECK}): their first bytes,
    taken with one extended slice, are searched for zeros with C{find}, and only where there
    is one are the other three bytes compared. Only the candidates that pass have all layers
    removed from the whole package and go to C{accept}.

    @param keySets: the L{KeySet} of each hop, in the order the owner removes their layers:
        adjacent hop first, T last.
    @param package: the 48-byte block as received.
    @param peel: L{FORWARD} or L{BACKWARD}: the transform that removes a hop's layer in the
        direction the package came.
    @param accept: C{accept(block) -> bool}: the full check of a block with every layer
        removed, such as L{phantom.wire.tunnel.isExitInit}.
    @return: the tuple of chosen key indices, one per hop in C{keySets}' order, under which the
        package is accepted; C{None} if there is none.
    @raise ValueError: more than L{MAX_COMBINATIONS} combinations, or more than
        L{MAX_HELD_BLOCKS} for all hops but the last; no key set; a package not 48 bytes long.
    """
    _requireBlock(package)
    if not keySets:
        raise ValueError("no key set to search")
    sizes = [len(keySet) for keySet in keySets]
    if math.prod(sizes) > MAX_COMBINATIONS or math.prod(sizes[:-1]) > MAX_HELD_BLOCKS:
        raise ValueError(f"{' x '.join(map(str, sizes))} key combinations are too many to search")
    candidates = package[:AES_BLOCK_SIZE]
    for keySet in keySets[:-1]:
        # Candidate i of the next level is key i // n of this hop over candidate i % n of this
        # level, which has n.
        candidates = b"".join(cipher.update(candidates) for cipher in keySet.firstBlockCiphers(peel))
    held = len(candidates)
    firstBlocks = bytearray(held + AES_BLOCK_SIZE)
    for last, cipher in enumerate(keySets[-1].firstBlockCiphers(peel)):
        cipher.update_into(candidates, firstBlocks)
        # About one candidate in 256 starts with a zero byte; only those are compared with CHECK.
        find = firstBlocks[0:held:AES_BLOCK_SIZE].find
        candidate = find(0)
        while candidate != -1:
            if firstBlocks.startswith(CHECK, candidate * AES_BLOCK_SIZE):
                chosen = _indices(candidate, sizes[:-1]) + (last,)
                keys = [keySet.keys[index] for keySet, index in zip(keySets, chosen)]
                if accept(applyLayers(keys, package, peel)):
                    return chosen
            candidate = find(0, candidate + 1)
    return None


def _indices(candidate, sizes):
    """The key index of each hop that made candidate number C{candidate} of the last level."""
    indices = []
    for size in sizes:
        candidate, index = divmod(candidate, size)
        indices.append(index)
    return tuple(indices)


def streamKeys(chosenKey, tunnelMaterial):
    """
    The two AES-256-CTR keys of one hop in one tunnel: HKDF-SHA256 of the key the hop chose and
    of the first tunnel block it saw, with a label per direction. No two directions, hops or
    tunnels share a key, so each key encrypts one stream only, from counter zero.

    @param chosenKey: the 32-byte key the hop chose for the tunnel.
    @param tunnelMaterial: the 48-byte block the hop first saw for the tunnel.
    @return: C{(along, against)}, 32 bytes each: the key of data travelling the way the first
        setup block travelled along the path (from the owner on an exit path, to the owner on an
        entry path), and of data travelling the other way.
    """
    if len(chosenKey) != KEY_SIZE:
        raise ValueError(f"a chosen key is {KEY_SIZE} bytes, not {len(chosenKey)}")
    _requireBlock(tunnelMaterial)
    secret = chosenKey + tunnelMaterial
    return tuple(deriveKey(secret, label) for label in _STREAM_LABELS)


def exitConfirmation(chosenKey, tunnelMaterial):
    """
    The success block of an outbound setup: HKDF-SHA256 of the key the exit node chose and of
    the block it first saw, as its stream keys are, under a label of its own. The owner, who
    made that block, checks it: a relay that altered the setup block on its way (and so the
    stream layers of every hop after it) makes the setup fail, instead of the tunnel carrying
    garbage. It looks as random as the dummy blocks of an inbound setup.

    @return: 48 bytes.
    """
    if len(chosenKey) != KEY_SIZE:
        raise ValueError(f"a chosen key is {KEY_SIZE} bytes, not {len(chosenKey)}")
    _requireBlock(tunnelMaterial)
    return deriveKey(chosenKey + tunnelMaterial, _CONFIRMATION_LABEL, BLOCK_SIZE)


class CellCipher:
    """
    One hop's layer on one direction of a tunnel's cells: a wide-block cipher on each
    L{CELL_SIZE}-byte cell, under a key that moves forward with every cell.

    A cell is a 16-byte head H and a body B. Each cell has its own key K, an AES-256-GCM key
    used for that cell alone: GMAC under K with a fixed nonce is a one-time keyed hash G, and
    AES-256-GCM under K with H' itself as its 16-byte nonce encrypts (its keystream starts at
    the counter block J0 = GHASH(H'), GCM's rule for nonces not 12 bytes long). L{forward}
    (what a hop does) makes::

        H' = H XOR G(B)
        B' || K' = (B || 32 zero bytes) XOR AES-256-GCM keystream(K, nonce H')

        K' is the next cell's key: the keystream right after the body's

    and L{inverse} (what an owner does) undoes it: B and K' from B' under H', then H.
    G is almost-XOR-universal and masked with a one-time pad, and J0 a universal hash of H', so
    a change to any bit of a cell makes the keystream's counter blocks unrelated to those it
    would have had: the whole body that comes out bears no relation to the one that would have,
    and since they make the next key, neither does any later cell. Nobody who holds K' can
    recompute K (that would take AES key recovery), so cells already passed stay unreadable:
    forward secrecy per cell. GCM's own tags are thrown away: the checks are those of plain
    cells, at the ends.

    One key serves hash and keystream, as in GCM itself: the hash key is AES of the zero block,
    G's mask AES of the fixed nonce's first counter block; the keystream's blocks meet either
    only if J0 falls within 2^11 blocks of them (2^-94). Per cell that is one AES-GCM key
    schedule and two calls, the fewest a two-pass wide-block cipher needs.
    """

    def __init__(self, key):
        """@param key: the 32-byte key of the first cell."""
        if len(key) != KEY_SIZE:
            raise ValueError(f"a cell key is {KEY_SIZE} bytes, not {len(key)}")
        self._key = key
        self.cells = 0
        """How many cells this layer has transformed."""

    def copy(self):
        """@return: a L{CellCipher} where this one stands now: what taking the hop now would yield."""
        copied = CellCipher(self._key)
        copied.cells = self.cells
        return copied

    def forward(self, cell):
        """
        @param cell: L{CELL_SIZE} bytes (any bytes-like object).
        @return: C{cell} with this layer added (a hop's transform), as C{bytes}.
        @raise ProtocolError: C{cell} is not L{CELL_SIZE} bytes.
        """
        _requireCellSize(cell)
        present = AESGCM(self._key)
        # Views, not slices: the body is copied once on its way in and once on its way out.
        # (They are gone when this returns, so a bytearray cell can be resized afterwards.)
        body = memoryview(cell)[_HEAD:]
        head = _xor(cell[:_HEAD], present.encrypt(_NONCE_BODY, b"", body))
        out = present.encrypt(head, b"".join((body, _NEXT_KEY_ROOM)), None)
        self._advance(out)
        return b"".join((head, memoryview(out)[:-_TAIL]))

    def inverse(self, cell):
        """
        @param cell: L{CELL_SIZE} bytes (any bytes-like object).
        @return: C{cell} with this layer removed (what an owner does, for a hop's L{forward}),
            as C{bytes}.
        @raise ProtocolError: C{cell} is not L{CELL_SIZE} bytes.
        """
        _requireCellSize(cell)
        present = AESGCM(self._key)
        head = cell[:_HEAD]
        out = present.encrypt(head, b"".join((memoryview(cell)[_HEAD:], _NEXT_KEY_ROOM)), None)
        self._advance(out)
        body = memoryview(out)[:-_TAIL]
        return b"".join((_xor(head, present.encrypt(_NONCE_BODY, b"", body)), body))

    def _advance(self, out):
        self._key = out[-_TAIL:-_TAG]
        self.cells += 1


def _xor(a, b):
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(_HEAD, "little")


def _requireCellSize(cell):
    if len(cell) != CELL_SIZE:
        raise ProtocolError(f"a frame of {len(cell)} bytes where a {CELL_SIZE}-byte cell was due")


class StreamLayer:
    """
    One hop's layer on a tunnel's cells: a L{CellCipher} per direction, keyed by
    L{streamKeys}. The hop and the owner each hold one: the hop adds the layer (L{along},
    L{against}) to the cells it passes on either way, whichever side its path's owner is on;
    the owner removes it (L{alongCipher}'s and L{againstCipher}'s C{inverse}), the hops'
    layers in the order opposite to the one they were added in.

    @ivar along: C{along(cell)}: the cell, travelling the way the setup block came, with this
        layer added (L{alongCipher}'s C{forward}).
    @ivar against: C{against(cell)}: the cell, travelling against the way the setup block
        came, with this layer added (L{againstCipher}'s C{forward}).
    """

    def __init__(self, chosenKey, tunnelMaterial):
        """
        @param chosenKey: the 32-byte key the hop chose for the tunnel.
        @param tunnelMaterial: the 48-byte block the hop first saw for the tunnel.
        """
        self.alongCipher, self.againstCipher = (CellCipher(key) for key in streamKeys(chosenKey, tunnelMaterial))
        # Bound once: a splice calls one of them for every cell it passes on.
        self.along = self.alongCipher.forward
        self.against = self.againstCipher.forward

    def ciphers(self, along):
        """@return: this layer's L{CellCipher} for cells travelling along (C{True}) or against the way the setup block came."""
        return self.alongCipher if along else self.againstCipher
