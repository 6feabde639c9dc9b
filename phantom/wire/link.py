"""
Frames inside one TLS link.

A link carries length-prefixed frames: a 4-byte big-endian body length, then the body,
whose first byte is the frame kind::

    OPEN       kind=1, purpose (1 byte), link id (16 bytes)   first frame of every link
    DATA       kind=2, payload (1 .. MAX_PAYLOAD bytes)        for the purpose's handler
    KEEPALIVE  kind=3                                          nothing else

The receiving side decodes bodies with L{FrameBody}; the hot path for DATA frames in
L{phantom.link.framing} is checked against this schema by property tests.
"""

import enum
import struct

from construct import (
    Bytes,
    ExprValidator,
    GreedyBytes,
    Int32ub,
    Pass,
    Prefixed,
    Struct,
    Switch,
    Terminated,
    this,
)

from phantom.wire import enumOf

MAX_FRAME = 131072
"""
The largest frame on the wire, length prefix included: exactly eight full TLS records, so a
full frame costs no extra record; large enough for a DHT STORE of the largest module-API value.
"""

MAX_BODY = MAX_FRAME - 4
"""The largest frame body."""

MAX_PAYLOAD = MAX_BODY - 1
"""The largest DATA payload one frame may carry (131067 bytes)."""

LINK_ID_SIZE = 16
"""Link ids are 16 bytes; all zeros where a purpose does not use one."""

NO_LINK_ID = bytes(LINK_ID_SIZE)


class FrameKind(enum.IntEnum):
    """The first byte of every frame body."""

    OPEN = 1
    DATA = 2
    KEEPALIVE = 3


class Purpose(enum.IntEnum):
    """What a link is for, named by its OPEN frame; handlers are registered per purpose."""

    ECHO = 2
    """Each DATA frame is sent back unchanged: liveness and round-trip probes."""
    DHT = 3
    """Network-database RPCs, in both directions, many in flight at once."""
    SETUP = 4
    """A link of a setup circle: carries the setup arrays of both rounds."""
    PATH = 5
    """A link of a finished routing path, between neighbours in it."""
    TUNNEL = 6
    """A link of one routing tunnel between neighbours of a path, opened back along it."""
    ENTRY = 7
    """From an exit node to an entry node: the request for an AP-address, then the tunnel's data."""


OpenContent = Struct(
    "purpose" / enumOf(Purpose),
    "link_id" / Bytes(LINK_ID_SIZE),
)

DataContent = Struct(
    "payload" / ExprValidator(GreedyBytes, lambda obj, ctx: 1 <= len(obj) <= MAX_PAYLOAD),
)

FrameBody = Struct(
    "kind" / enumOf(FrameKind),
    "content"
    / Switch(
        this.kind,
        {
            FrameKind.OPEN.name: OpenContent,
            FrameKind.DATA.name: DataContent,
            FrameKind.KEEPALIVE.name: Pass,
        },
    ),
    Terminated,
)
FrameBody.name = "link frame body"

Frame = Struct(
    "body" / Prefixed(ExprValidator(Int32ub, lambda obj, ctx: 1 <= obj <= MAX_BODY), FrameBody),
    Terminated,
)
Frame.name = "link frame"

HEADER = struct.Struct(">IB")
"""Length prefix and kind byte: the part of a frame the hot path reads with C{struct}."""

LENGTH = struct.Struct(">I")


def encodeOpen(purpose, linkId=NO_LINK_ID):
    """
    @return: the OPEN frame naming C{purpose} and C{linkId}.
    """
    return Frame.build(
        {"body": {"kind": FrameKind.OPEN.name, "content": {"purpose": Purpose(purpose).name, "link_id": linkId}}}
    )


def dataHeader(payloadLength):
    """
    @return: the 5 bytes that precede a DATA payload of C{payloadLength} bytes.
    """
    if not 1 <= payloadLength <= MAX_PAYLOAD:
        raise ValueError(f"DATA payload of {payloadLength} bytes; 1 to {MAX_PAYLOAD} allowed")
    return HEADER.pack(payloadLength + 1, FrameKind.DATA)


KEEPALIVE_FRAME = HEADER.pack(1, FrameKind.KEEPALIVE)
