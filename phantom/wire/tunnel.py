"""
The blocks of tunnel setup (paper §7.2): each exactly L{BLOCK_SIZE} = 48 bytes, three AES blocks;
and the cells of an open tunnel, each L{CELL_SIZE} bytes (at the end).

Layouts (offsets in bytes; every checksum is SHA-256 of a label naming the block type and of
all the bytes before it, truncated)::

    ExitInit       T of an exit path -> owner
                   0 check (4 zero bytes) | 4 nonce (36) | 40 checksum (8)
    EntryInit      T of an entry path -> owner
                   0 check (4 zero bytes) | 4 nonce (8) | 12 peer address (16)
                   | 28 AP-address (16) | 44 checksum (4)
    OutboundReply  owner -> T of an exit path
                   0 nonce (16) | 16 AP-address (16) | 32 checksum (16)
    InboundReply   owner -> T of an entry path
                   0 nonce (16) | 16 status (1) | 17 reserved, zero (15) | 32 checksum (16)

Nonces are fresh random bytes, so the first AES block of every block carries at least 64 random
bits (96 or more but in EntryInit): first blocks do not repeat, and neither does the output of
the hops' CBC with a zero IV.

The owner finds which key each hop chose by trying every combination on the first AES block of
an init block, keeping those that pass a fast test, then checking the whole block. The fast test
is L{CHECK}: four zero bytes at the start, so a random block passes with probability 2^-32. Over
a buffer of candidate first blocks it takes one extended slice (every 16th byte), a C{find} for
zero bytes in it, and a comparison of four bytes for the 256th of candidates found. The paper's
two equal random 32-bit words pass as rarely but cost more: two slices (bytes 0 and 4 of each
candidate) that must be XORed as big integers first. Measured on this two-core machine over the
810,000 first blocks of 4 hops x 30 keys (30 buffers of 432,000 bytes, median of 50 runs; AES
itself takes 1.7 ms): zero word, 1.2 ms; equal words, 3.6 ms; zero word found with
C{bytes.find} of the four zero bytes over the whole buffer, 6.8 ms.

An init block passing the fast test is then checked in full: the test and the checksum together
let a random block through with probability at most 2^-64 (EntryInit) or 2^-96 (ExitInit), and
the owner also compares EntryInit's AP-address with its own. EntryInit holds two addresses, so
its nonce and checksum share the 12 bytes left; the AP-address comes last, mostly in the last
AES block, because an AES block garbled on the way garbles the ones after it under every
further layer, and the owner compares the AP-address in full.
"""

import enum
import hashlib
import os
import struct

from construct import Bytes, Checksum, Const, RawCopy, Struct, Terminated, this

from phantom.wire import ProtocolError, enumOf, parseStrict

BLOCK_SIZE = 48
"""Every tunnel setup block is this long."""

AES_BLOCK_SIZE = 16

CHECK_SIZE = 4
CHECK = bytes(CHECK_SIZE)
"""The fast test: an init block starts with these bytes."""

ADDRESS_SIZE = 16
"""AP-addresses and IPv6 addresses (IPv4 mapped into C{::ffff:0:0/96})."""

REPLY_NONCE_SIZE = 16
REPLY_CHECKSUM_SIZE = 16


class InboundStatus(enum.IntEnum):
    """The owner's answer to a connection request that reached its entry node."""

    ACCEPTED = 0
    REFUSED = 1


def _checked(name, label, fields, checksumSize):
    """
    A block: C{fields} followed by a checksum of them, SHA-256 of C{label} and their bytes
    truncated to C{checksumSize}; nothing after.
    """
    schema = Struct(
        "body" / RawCopy(Struct(*fields)),
        "checksum" / Checksum(Bytes(checksumSize), lambda data: hashlib.sha256(label + data).digest()[:checksumSize], this.body.data),
        Terminated,
    )
    schema.name = name
    return schema


ExitInit = _checked(
    "exit init block",
    b"phantom tunnel exit init\x00",
    ["check" / Const(CHECK), "nonce" / Bytes(36)],
    8,
)

EntryInit = _checked(
    "entry init block",
    b"phantom tunnel entry init\x00",
    ["check" / Const(CHECK), "nonce" / Bytes(8), "peer_address" / Bytes(ADDRESS_SIZE), "ap_address" / Bytes(ADDRESS_SIZE)],
    4,
)

OutboundReply = _checked(
    "outbound reply block",
    b"phantom tunnel outbound reply\x00",
    ["nonce" / Bytes(REPLY_NONCE_SIZE), "ap_address" / Bytes(ADDRESS_SIZE)],
    REPLY_CHECKSUM_SIZE,
)

InboundReply = _checked(
    "inbound reply block",
    b"phantom tunnel inbound reply\x00",
    ["nonce" / Bytes(REPLY_NONCE_SIZE), "status" / enumOf(InboundStatus), "reserved" / Const(bytes(15))],
    REPLY_CHECKSUM_SIZE,
)


def _build(schema, randomBytes, nonceSize, **fields):
    return schema.build({"body": {"value": dict(fields, nonce=randomBytes(nonceSize))}})


def _fields(schema, block):
    return parseStrict(schema, block).body.value


def buildExitInit(randomBytes=os.urandom):
    """
    @param randomBytes: C{randomBytes(n)} returns n fresh random bytes.
    @return: a fresh L{ExitInit} block.
    """
    return _build(ExitInit, randomBytes, 36)


def isExitInit(block):
    """
    @return: whether C{block} is an L{ExitInit} block, checksum included.
    """
    try:
        parseStrict(ExitInit, block)
    except ProtocolError:
        return False
    return True


def buildEntryInit(apAddress, peerAddress, randomBytes=os.urandom):
    """
    @param apAddress: the 16-byte AP-address the connecting node asked for.
    @param peerAddress: the 16-byte IPv6 address (IPv4 mapped) of the node that connected
        directly to the entry node.
    @param randomBytes: C{randomBytes(n)} returns n fresh random bytes.
    @return: a fresh L{EntryInit} block.
    """
    return _build(EntryInit, randomBytes, 8, ap_address=apAddress, peer_address=peerAddress)


def parseEntryInit(block):
    """
    @return: C{(apAddress, peerAddress)} from an L{EntryInit} block.
    @raise ProtocolError: C{block} is not one (fast test, checksum or length).
    """
    fields = _fields(EntryInit, block)
    return fields.ap_address, fields.peer_address


def buildOutboundReply(apAddress, randomBytes=os.urandom):
    """
    @param apAddress: the 16-byte AP-address the exit node is to connect to.
    @param randomBytes: C{randomBytes(n)} returns n fresh random bytes.
    @return: a fresh L{OutboundReply} block.
    """
    return _build(OutboundReply, randomBytes, REPLY_NONCE_SIZE, ap_address=apAddress)


def parseOutboundReply(block):
    """
    @return: the AP-address in an L{OutboundReply} block.
    @raise ProtocolError: C{block} is not one.
    """
    return _fields(OutboundReply, block).ap_address


def buildInboundReply(status, randomBytes=os.urandom):
    """
    @param status: an L{InboundStatus}.
    @param randomBytes: C{randomBytes(n)} returns n fresh random bytes.
    @return: a fresh L{InboundReply} block.
    """
    return _build(InboundReply, randomBytes, REPLY_NONCE_SIZE, status=InboundStatus(status))


def parseInboundReply(block):
    """
    @return: the L{InboundStatus} in an L{InboundReply} block.
    @raise ProtocolError: C{block} is not one.
    """
    return InboundStatus(int(_fields(InboundReply, block).status))


TunnelOpening = Struct(
    "first" / Bytes(BLOCK_SIZE),
    "second" / Bytes(BLOCK_SIZE),
    Terminated,
)
"""
The first frame on a tunnel link, from the node that opened it: the copy of the block the
receiver passed on along the path (it names the pending setup), and the block the setup carries
(an init block on its way to the owner, or a reply on its way to T).
"""
TunnelOpening.name = "tunnel opening"

ApRequest = Struct(
    "ap_address" / Bytes(ADDRESS_SIZE),
    Terminated,
)
"""The first frame on an entry link, from an exit node to an entry node: the AP-address it wants."""
ApRequest.name = "AP request"

ApAnswer = Struct(
    "status" / enumOf(InboundStatus),
    Terminated,
)
"""The entry node's answer on the entry link, once the owner has answered; stream data follows."""
ApAnswer.name = "AP answer"


# Cells: a tunnel's data, once it is open. A plain cell (what the owners make and read, and
# what crosses the ENTRY link)::
#
#     0 check (16 zero bytes) | 16 length (2) | 18 data (length) | zero bytes to CELL_SIZE
#
# On the links of a path every cell is under the layers of the hops it has passed or has yet to
# pass (phantom.tunnel.keys.CellCipher), and looks uniformly random.

CELL_SIZE = 16384 - 5
"""
Every DATA frame of an open tunnel, on every link of it, is one cell of this many bytes: 16 KiB
less a DATA frame's 5-byte header, so that a cell in its frame fills one TLS record (16 KiB of
plaintext at most) exactly.
"""

CELL_CHECK = bytes(16)
"""A plain cell starts with these bytes: what every layer's cipher garbles if it was altered."""

_LENGTH = struct.Struct(">H")
CELL_HEADER_SIZE = len(CELL_CHECK) + _LENGTH.size
CELL_CAPACITY = CELL_SIZE - CELL_HEADER_SIZE
"""The most stream bytes one cell carries."""


_ZEROS = memoryview(bytes(0xFFFF))
"""Zero bytes to pad cells with and compare their padding to (a cell of any size the length field allows)."""


def buildCell(data):
    """
    A plain cell: L{CELL_CHECK}, the length of C{data} (2 bytes, big-endian), C{data}, and zero
    bytes to L{CELL_SIZE}.

    @param data: at most L{CELL_CAPACITY} bytes (any bytes-like object).
    """
    if len(data) > CELL_CAPACITY:
        raise ValueError(f"a cell carries at most {CELL_CAPACITY} bytes, not {len(data)}")
    return b"".join((CELL_CHECK, _LENGTH.pack(len(data)), data, _ZEROS[: CELL_CAPACITY - len(data)]))


def cellLength(cell):
    """
    @param cell: C{bytes} or a C{bytearray}.
    @return: how many stream bytes the plain C{cell} carries, after its header.
    @raise ProtocolError: it is not a plain cell: the wrong size, no L{CELL_CHECK}, a length
        beyond L{CELL_CAPACITY}, or padding that is not zero. A cell altered under any layer's
        cipher is so with probability 1 - 2^-128.
    """
    if len(cell) != CELL_SIZE:
        raise ProtocolError(f"a frame of {len(cell)} bytes where a {CELL_SIZE}-byte cell was due")
    if not cell.startswith(CELL_CHECK):
        raise ProtocolError("a cell that does not check out: altered on its way")
    (length,) = _LENGTH.unpack_from(cell, len(CELL_CHECK))
    if length > CELL_CAPACITY:
        raise ProtocolError(f"a cell that says it carries {length} bytes, more than {CELL_CAPACITY}")
    if not cell.endswith(_ZEROS[: CELL_CAPACITY - length]):
        raise ProtocolError("a cell whose padding is not zero")
    return length


def parseCell(cell):
    """
    @param cell: C{bytes} or a C{bytearray}.
    @return: the stream bytes the plain C{cell} carries, as C{bytes}.
    @raise ProtocolError: it is not a plain cell (L{cellLength}).
    """
    data = cell[CELL_HEADER_SIZE : CELL_HEADER_SIZE + cellLength(cell)]
    return data if type(data) is bytes else bytes(data)


def requireCell(cell):
    """@return: C{cell}, if it is a plain cell (L{cellLength}). @raise ProtocolError: it is not."""
    cellLength(cell)
    return cell
