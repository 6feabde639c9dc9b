"""
The AMP commands a node answers on its control socket.

Each command's response is what C{phantomctl} prints; a new C{phantomctl} subcommand adds a
command here, a responder in L{phantom.control.server} and a subcommand in L{phantom.control.cli}.
"""

from twisted.protocols.amp import AmpList, Boolean, Command, Float, Integer, String, Unicode

PEER = [
    (b"node_id", Unicode()),
    (b"address", Unicode()),
    (b"inbound", Integer()),
    (b"outbound", Integer()),
]


class Status(Command):
    """What the node is: its id, where it listens, how long it has run, its links and peers."""

    arguments = []
    response = [
        (b"node_id", Unicode()),
        (b"listening", Unicode()),
        (b"api", Unicode()),
        (b"uptime", Float()),
        (b"links", Integer()),
        (b"connections", Integer()),
        (b"peers", AmpList(PEER)),
    ]


class DhtPut(Command):
    """
    Store an opaque value in the network database, as a module-API PUT does, and answer once it
    was sent to the closest nodes: C{replicas} is how many accepted it.
    """

    arguments = [(b"key", String()), (b"value", String()), (b"ttl", Integer()), (b"replication", Integer())]
    response = [(b"replicas", Integer())]


class DhtGet(Command):
    """Find an opaque value in the network database, as a module-API GET does."""

    arguments = [(b"key", String())]
    response = [(b"found", Boolean()), (b"value", String())]


BUCKET = [
    (b"index", Integer()),
    (b"size", Integer()),
    (b"replacements", Integer()),
    (b"idle", Float()),
]


class Peers(Command):
    """The routing table: its buckets and contacts, and how many lookups cost how many requests."""

    arguments = []
    response = [
        (b"contacts", AmpList(PEER)),
        (b"buckets", AmpList(BUCKET)),
        (b"lookups", Integer()),
        (b"lookup_requests", Integer()),
        (b"stored", Integer()),
    ]
