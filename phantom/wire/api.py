"""
The VoidPhone DHT module API (message types 650 to 653): what local programs send to a
node's API port over plain TCP, and what it answers.

Every message starts with a 4-byte header: its whole size in bytes, header included, and
its type, both big-endian 16-bit numbers. The bodies::

    PUT      650  TTL u16, replication u8, reserved u8, key (32 bytes), value (1 .. 65495 bytes)
    GET      651  key                                                   (size exactly 36)
    SUCCESS  652  key, value (1 .. 65499 bytes)                         answer to a GET: found
    FAILURE  653  key                                                   (size exactly 36): not found

The reserved byte of a PUT is written as 0 and ignored by the receiver, as the module API
says; it is kept in the parsed message so that every accepted PUT rebuilds to its own bytes.
Everything else is strict: a message whose size does not fit its type, an unknown type or
bytes left over are malformed.

L{checkHeader} judges a message from its first 4 bytes, so that a stream decoder can refuse
it before the rest arrives; property tests hold it to the L{Message} schema.
"""

import enum
import struct
from dataclasses import dataclass, fields
from typing import ClassVar

from construct import (
    Bytes,
    ConstructError,
    ExprValidator,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Prefixed,
    Struct,
    Switch,
    Terminated,
    this,
)

from phantom.wire import ProtocolError, enumOf, parseStrict

HEADER_SIZE = 4
"""Size and type: the bytes every message starts with, counted in its size."""

HEADER = struct.Struct(">HH")
"""The header, for reading it without the schema."""

MAX_MESSAGE = 65535
"""The largest message, header included: its size is a 16-bit number."""

KEY_SIZE = 32
"""Keys are 256-bit opaque bytes."""

PUT_FIXED_SIZE = HEADER_SIZE + 4 + KEY_SIZE
"""Header, TTL, replication, reserved byte and key: a PUT without its value (40 bytes)."""

KEY_ONLY_SIZE = HEADER_SIZE + KEY_SIZE
"""The size of a GET and of a FAILURE, and of a SUCCESS without its value (36 bytes)."""

MAX_PUT_VALUE = MAX_MESSAGE - PUT_FIXED_SIZE
"""The largest value a PUT can carry (65495 bytes)."""

MAX_SUCCESS_VALUE = MAX_MESSAGE - KEY_ONLY_SIZE
"""The largest value a SUCCESS can carry (65499 bytes); every value a PUT stores fits."""


class MessageType(enum.IntEnum):
    """The type field of the DHT's module-API messages."""

    PUT = 650
    GET = 651
    SUCCESS = 652
    FAILURE = 653


REQUESTS = frozenset({MessageType.PUT, MessageType.GET})
"""What a program sends to the node."""

REPLIES = frozenset({MessageType.SUCCESS, MessageType.FAILURE})
"""What the node sends back."""

SIZE_RANGES = {
    MessageType.PUT: (PUT_FIXED_SIZE + 1, MAX_MESSAGE),
    MessageType.GET: (KEY_ONLY_SIZE, KEY_ONLY_SIZE),
    MessageType.SUCCESS: (KEY_ONLY_SIZE + 1, MAX_MESSAGE),
    MessageType.FAILURE: (KEY_ONLY_SIZE, KEY_ONLY_SIZE),
}
"""The smallest and largest size, header included, of each type of message."""


def _value(maximum):
    return ExprValidator(GreedyBytes, lambda obj, ctx: 1 <= len(obj) <= maximum)


PutContent = Struct(
    "ttl" / Int16ub,
    "replication" / Int8ub,
    "reserved" / Int8ub,
    "key" / Bytes(KEY_SIZE),
    "value" / _value(MAX_PUT_VALUE),
)

GetContent = Struct(
    "key" / Bytes(KEY_SIZE),
)

SuccessContent = Struct(
    "key" / Bytes(KEY_SIZE),
    "value" / _value(MAX_SUCCESS_VALUE),
)

FailureContent = Struct(
    "key" / Bytes(KEY_SIZE),
)

MessageBody = Struct(
    "type" / enumOf(MessageType, Int16ub),
    "content"
    / Switch(
        this.type,
        {
            MessageType.PUT.name: PutContent,
            MessageType.GET.name: GetContent,
            MessageType.SUCCESS.name: SuccessContent,
            MessageType.FAILURE.name: FailureContent,
        },
    ),
    Terminated,
)
MessageBody.name = "DHT API message body"

Message = Struct(
    "body"
    / Prefixed(ExprValidator(Int16ub, lambda obj, ctx: obj >= HEADER_SIZE), MessageBody, includelength=True),
    Terminated,
)
Message.name = "DHT API message"


@dataclass(frozen=True)
class DhtPut:
    """
    Store C{value} under C{key}: no answer is sent.

    @ivar ttl: seconds the value should live; a hint the node may shorten.
    @ivar replication: on how many nodes to store it; a hint.
    @ivar reserved: the reserved byte as received (senders write 0).
    """

    key: bytes
    value: bytes
    ttl: int
    replication: int
    reserved: int = 0
    type: ClassVar[MessageType] = MessageType.PUT


@dataclass(frozen=True)
class DhtGet:
    """Find the value under C{key}: answered by one L{DhtSuccess} or L{DhtFailure}."""

    key: bytes
    type: ClassVar[MessageType] = MessageType.GET


@dataclass(frozen=True)
class DhtSuccess:
    """The answer to a GET for C{key} that found C{value}."""

    key: bytes
    value: bytes
    type: ClassVar[MessageType] = MessageType.SUCCESS


@dataclass(frozen=True)
class DhtFailure:
    """The answer to a GET for C{key} that found nothing."""

    key: bytes
    type: ClassVar[MessageType] = MessageType.FAILURE


_CLASSES = {cls.type: cls for cls in (DhtPut, DhtGet, DhtSuccess, DhtFailure)}
_FIELDS = {cls: tuple(field.name for field in fields(cls)) for cls in _CLASSES.values()}


def checkHeader(size, messageType):
    """
    Judge a message by its header alone, before its body arrives.

    @param size: the size field, header included.
    @param messageType: the type field, as a number.
    @return: the L{MessageType}.
    @raise ProtocolError: no message of this size and type is valid; the reason says why.
    """
    if size < HEADER_SIZE:
        raise ProtocolError(f"message size {size} is below the {HEADER_SIZE}-byte header")
    try:
        kind = MessageType(messageType)
    except ValueError:
        raise ProtocolError(f"unknown message type {messageType}") from None
    smallest, largest = SIZE_RANGES[kind]
    if size < smallest or size > largest:
        if kind in (MessageType.PUT, MessageType.SUCCESS) and size == smallest - 1:
            raise ProtocolError(f"DHT {kind.name} of {size} bytes carries an empty value")
        allowed = f"exactly {smallest}" if smallest == largest else f"{smallest} to {largest}"
        raise ProtocolError(f"DHT {kind.name} of {size} bytes; {allowed} allowed")
    return kind


def decodeMessage(data):
    """
    Parse exactly one whole message.

    @param data: the message's bytes, header included, nothing after it.
    @return: a L{DhtPut}, L{DhtGet}, L{DhtSuccess} or L{DhtFailure}.
    @raise ProtocolError: the bytes are not exactly one valid message.
    """
    body = parseStrict(Message, data).body
    cls = _CLASSES[MessageType(int(body.type))]
    content = body.content
    return cls(**{name: content[name] for name in _FIELDS[cls]})


def encodeMessage(message):
    """
    Build the bytes of one message; the inverse of L{decodeMessage}.

    @param message: a L{DhtPut}, L{DhtGet}, L{DhtSuccess} or L{DhtFailure}.
    @return: the message's bytes, header included.
    @raise ValueError: a field is out of range (a key that is not 32 bytes, an empty or
        oversized value, a TTL or replication that does not fit its field).
    """
    content = {name: getattr(message, name) for name in _FIELDS[type(message)]}
    try:
        return Message.build({"body": {"type": message.type.name, "content": content}})
    except ConstructError as e:
        field = (e.path or "").rpartition(" -> ")[2] or "message"
        raise ValueError(f"invalid {field} for a DHT {message.type.name}") from e


def encodePut(key, value, ttl, replication):
    """
    @return: the bytes of a PUT storing C{value} under C{key} for about C{ttl} seconds on
        about C{replication} nodes.
    @raise ValueError: see L{encodeMessage}.
    """
    return encodeMessage(DhtPut(key, value, ttl, replication))


def encodeGet(key):
    """
    @return: the bytes of a GET for C{key}.
    @raise ValueError: C{key} is not 32 bytes.
    """
    return encodeMessage(DhtGet(key))
