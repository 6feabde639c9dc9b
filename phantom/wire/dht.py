"""
Network-database records and the DHT's RPC messages.

Records are signed over their exact body bytes (C{RawCopy}), so what is verified is what is
stored and forwarded. RPC messages travel as the DATA payloads of DHT links; each carries a
kind and an 8-byte request id that the reply echoes.

Addresses are 16 bytes: IPv6, or IPv4 mapped into C{::ffff:0:0/96}.
"""

import enum
import struct

from construct import (
    Container,
    ListContainer,
    Bytes,
    Const,
    ExprValidator,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    OneOf,
    Pass,
    Prefixed,
    PrefixedArray,
    RawCopy,
    Struct,
    Switch,
    Terminated,
    this,
)

from phantom.wire import ProtocolError, enumOf
from phantom.wire.api import MAX_PUT_VALUE

KEY_SIZE = 32
REQUEST_ID_SIZE = 8
SIGNATURE_SIZE = 64
MAX_CONTACTS = 20
"""At most K contacts in one NODES reply."""
MAX_ENTRY_NODES = 8
"""At most this many entry nodes in one routing entry."""
MAX_VALUE = MAX_PUT_VALUE
"""The largest opaque value: what one module-API PUT can carry."""
RECORD_FORMAT = b"\x01"


class Table(enum.IntEnum):
    """The virtual tables of the network database; each has its own record format."""

    NODE = 1
    """Node records, under the node id."""
    ROUTE = 2
    """Routing entries, under SHA-256 of the 16-byte AP-address."""
    VALUE = 3
    """Opaque values of the VoidPhone module API, under the key the module chose."""


class RpcKind(enum.IntEnum):
    """The first byte of every DHT RPC message."""

    PING = 1
    PONG = 2
    FIND_NODE = 3
    NODES = 4
    FIND_VALUE = 5
    VALUE = 6
    STORE = 7
    STORED = 8
    SAMPLE = 9


Port = ExprValidator(Int16ub, lambda obj, ctx: obj != 0)
ListeningPort = Int16ub
"""A requester's listening port; 0 means it accepts no links and is not to be added."""

NodeRecordBody = Struct(
    "format" / Const(RECORD_FORMAT),
    "address" / Bytes(16),
    "port" / Port,
    "communication_key" / Bytes(32),
    "path_building_key" / Bytes(32),
    "timestamp" / Int64ub,
)

def signed(body, name):
    """A record: C{body}, kept as its exact bytes for the signature that follows it."""
    record = Struct("body" / RawCopy(body), "signature" / Bytes(SIGNATURE_SIZE), Terminated)
    record.name = name
    return record


NodeRecord = signed(NodeRecordBody, "node record")

EntryNode = Struct(
    "node_id" / Bytes(KEY_SIZE),
    "address" / Bytes(16),
    "port" / Port,
)

RoutingEntryBody = Struct(
    "format" / Const(RECORD_FORMAT),
    "ap_address" / Bytes(16),
    "sequence" / Int64ub,
    "expires" / Int64ub,
    "routing_key" / Bytes(32),
    "entry_nodes" / PrefixedArray(ExprValidator(Int8ub, lambda obj, ctx: 1 <= obj <= MAX_ENTRY_NODES), EntryNode),
)

RoutingEntry = signed(RoutingEntryBody, "routing entry")

MAX_ROUTES = 8
"""At most this many routing entries for one AP-address: a node keeps one per entry node."""

RouteSet = Struct(
    "entries"
    / PrefixedArray(
        ExprValidator(Int8ub, lambda obj, ctx: 1 <= obj <= MAX_ROUTES),
        Prefixed(ExprValidator(Int16ub, lambda obj, ctx: obj >= 1), GreedyBytes),
    ),
    Terminated,
)
"""The routing entries of one AP-address, as a FIND_VALUE of the ROUTE table returns them; each is checked as a L{RoutingEntry}."""
RouteSet.name = "route set"

Contact = Struct(
    "node_id" / Bytes(KEY_SIZE),
    "address" / Bytes(16),
    "port" / Port,
)

Value = ExprValidator(GreedyBytes, lambda obj, ctx: 1 <= len(obj) <= MAX_VALUE)
"""A stored record or value (every record is far smaller than the largest opaque value)."""

Rpc = Struct(
    "kind" / enumOf(RpcKind),
    "request_id" / Bytes(REQUEST_ID_SIZE),
    "content"
    / Switch(
        this.kind,
        {
            RpcKind.PING.name: Struct("port" / ListeningPort),
            RpcKind.PONG.name: Pass,
            RpcKind.FIND_NODE.name: Struct("port" / ListeningPort, "target" / Bytes(KEY_SIZE)),
            RpcKind.NODES.name: Struct(
                "contacts" / PrefixedArray(ExprValidator(Int8ub, lambda obj, ctx: obj <= MAX_CONTACTS), Contact)
            ),
            RpcKind.FIND_VALUE.name: Struct(
                "port" / ListeningPort, "table" / enumOf(Table), "key" / Bytes(KEY_SIZE)
            ),
            RpcKind.VALUE.name: Struct("value" / Value),
            RpcKind.STORE.name: Struct(
                "port" / ListeningPort,
                "table" / enumOf(Table),
                "key" / Bytes(KEY_SIZE),
                "ttl" / Int32ub,
                "value" / Value,
            ),
            RpcKind.STORED.name: Struct("accepted" / OneOf(Int8ub, [0, 1])),
            RpcKind.SAMPLE.name: Struct("port" / ListeningPort),
        },
    ),
    Terminated,
)
Rpc.name = "DHT message"

REQUESTS = frozenset({RpcKind.PING, RpcKind.FIND_NODE, RpcKind.FIND_VALUE, RpcKind.STORE, RpcKind.SAMPLE})
"""Kinds a node asks with; every other kind is a reply."""


# The hot path: the same messages as L{Rpc}, with struct. Property tests hold the two to the same
# answers for every valid message and every mutation of one.

_PORT = struct.Struct(">H")
_STORE_HEAD = struct.Struct(">HB32sI")
_CONTACT = struct.Struct(">32s16sH")
_TABLES = {int(table): table for table in Table}
_KINDS = {int(kind): kind for kind in RpcKind}


def asTable(table):
    """
    @param table: a L{Table} or its number.
    @return: the L{Table}; quicker than C{Table(table)}, which it falls back on.
    @raise ValueError: no such table.
    """
    return _TABLES.get(table) or Table(table)


class Message(Container):
    """
    A C{Container} whose fields are also plain instance attributes, so that reading one is no
    call of C{Container.__getattr__} (a Python function): what L{decodeRpc} returns, read on
    every request and reply. Its fields are not meant to change.
    """


def _malformed(reason):
    return ProtocolError(f"malformed DHT message: {reason}")


def decodeRpc(data):
    """
    Parse one DHT message exactly as L{Rpc} does, faster.

    @return: a L{Message} with C{kind} (an L{RpcKind}), C{request_id} and C{content}.
    @raise ProtocolError: anything L{Rpc} would refuse.
    """
    size = len(data)
    if size < 9:
        raise _malformed("truncated")
    kind = data[0]
    body = size - 9
    if kind == RpcKind.PING or kind == RpcKind.SAMPLE:
        if body != 2:
            raise _malformed(f"{RpcKind(kind).name} of {size} bytes")
        content = Message(port=_PORT.unpack_from(data, 9)[0])
    elif kind == RpcKind.PONG:
        if body:
            raise _malformed("PONG with content")
        content = None
    elif kind == RpcKind.FIND_NODE:
        if body != 34:
            raise _malformed(f"FIND_NODE of {size} bytes")
        content = Message(port=_PORT.unpack_from(data, 9)[0], target=bytes(data[11:43]))
    elif kind == RpcKind.NODES:
        if body < 1 or data[9] > MAX_CONTACTS or body != 1 + data[9] * _CONTACT.size:
            raise _malformed("NODES of the wrong size")
        contacts = ListContainer()
        for offset in range(10, size, _CONTACT.size):
            nodeId, address, port = _CONTACT.unpack_from(data, offset)
            if not port:
                raise _malformed("a contact on port 0")
            contact = Message(node_id=nodeId, address=address, port=port)
            vars(contact).update(contact)
            contacts.append(contact)
        content = Message(contacts=contacts)
    elif kind == RpcKind.FIND_VALUE:
        if body != 35 or data[11] not in _TABLES:
            raise _malformed("FIND_VALUE of the wrong size or table")
        content = Message(port=_PORT.unpack_from(data, 9)[0], table=_TABLES[data[11]], key=bytes(data[12:44]))
    elif kind == RpcKind.VALUE:
        if not 1 <= body <= MAX_VALUE:
            raise _malformed("VALUE of the wrong size")
        content = Message(value=bytes(data[9:]))
    elif kind == RpcKind.STORE:
        if not 1 <= body - _STORE_HEAD.size <= MAX_VALUE:
            raise _malformed("STORE of the wrong size")
        port, table, key, ttl = _STORE_HEAD.unpack_from(data, 9)
        if table not in _TABLES:
            raise _malformed("STORE into no table")
        content = Message(port=port, table=_TABLES[table], key=key, ttl=ttl, value=bytes(data[9 + _STORE_HEAD.size :]))
    elif kind == RpcKind.STORED:
        if body != 1 or data[9] > 1:
            raise _malformed("STORED of the wrong size or value")
        content = Message(accepted=data[9])
    else:
        raise _malformed(f"unknown kind {kind}")
    if content is not None:
        vars(content).update(content)
    message = Message(kind=_KINDS[kind], request_id=bytes(data[1:9]), content=content)
    vars(message).update(message)
    return message


def encodeRpc(kind, requestId, content):
    """
    Build one DHT message exactly as L{Rpc} does, faster.

    @param kind: an L{RpcKind}.
    @param content: a dict of the kind's fields (tables by name or number), or C{None} for PONG.
    @raise ValueError: a field out of range.
    """
    if type(kind) is not RpcKind:
        kind = RpcKind(kind)
    if len(requestId) != REQUEST_ID_SIZE:
        raise ValueError("a request id is 8 bytes")
    head = bytes([kind]) + requestId
    if kind == RpcKind.PONG:
        return head
    if kind in (RpcKind.PING, RpcKind.SAMPLE):
        return head + _PORT.pack(content["port"])
    if kind == RpcKind.FIND_NODE:
        return head + _PORT.pack(content["port"]) + _exact(content["target"], KEY_SIZE)
    if kind == RpcKind.NODES:
        contacts = content["contacts"]
        if len(contacts) > MAX_CONTACTS:
            raise ValueError(f"at most {MAX_CONTACTS} contacts")
        parts = [head, bytes([len(contacts)])]
        for contact in contacts:
            if not contact["port"]:
                raise ValueError("a contact on port 0")
            parts.append(_CONTACT.pack(_exact(contact["node_id"], KEY_SIZE), _exact(contact["address"], 16), contact["port"]))
        return b"".join(parts)
    if kind == RpcKind.FIND_VALUE:
        return head + _PORT.pack(content["port"]) + bytes([_tableOf(content["table"])]) + _exact(content["key"], KEY_SIZE)
    if kind == RpcKind.VALUE:
        return head + _value(content["value"])
    if kind == RpcKind.STORE:
        key = _exact(content["key"], KEY_SIZE)
        return head + _STORE_HEAD.pack(content["port"], _tableOf(content["table"]), key, content["ttl"]) + _value(content["value"])
    if content["accepted"] not in (0, 1):
        raise ValueError("accepted is 0 or 1")
    return head + bytes([content["accepted"]])


def _exact(data, size):
    if len(data) != size:
        raise ValueError(f"{size} bytes needed, not {len(data)}")
    return bytes(data)


def _value(value):
    if not 1 <= len(value) <= MAX_VALUE:
        raise ValueError(f"a value is 1 to {MAX_VALUE} bytes")
    return bytes(value)


def _tableOf(table):
    return int(Table[table] if isinstance(table, str) else asTable(table))
