"""
Network-database records and the DHT's RPC messages.

Records are signed over their exact body bytes (C{RawCopy}), so what is verified is what is
stored and forwarded. RPC messages travel as the DATA payloads of DHT links; each carries a
kind and an 8-byte request id that the reply echoes.

Addresses are 16 bytes: IPv6, or IPv4 mapped into C{::ffff:0:0/96}.
"""

import enum

from construct import (
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
    PrefixedArray,
    RawCopy,
    Struct,
    Switch,
    Terminated,
    this,
)

from phantom.wire import enumOf
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
