"""
The AMP commands a node answers on its control socket.

A new C{phantomctl} subcommand adds a command here, its response in
L{phantom.control.responses} and a responder in L{phantom.control.server} (with, if it needs
more of the node, a member of L{IControlledNode<phantom.control.interfaces.IControlledNode>}),
a method of L{ControlClient<phantom.control.client.ControlClient>}, and a subcommand in
L{phantom.control.cli}.

This module is imported by the client: it must not import the daemon's services.
"""

from twisted.protocols.amp import AmpList, Boolean, Command, Float, Integer, ListOf, String, Unicode

from twisted.internet.error import ConnectionRefusedError

from phantom.errors import PathFailed, TunnelFailed

REMOTE_ERRORS = (PathFailed, TunnelFailed, ConnectionRefusedError, ValueError)
"""What a command may fail with on the node, brought back to the caller with its message."""

PEER = [
    (b"node_id", Unicode()),
    (b"address", Unicode()),
    (b"inbound", Integer()),
    (b"outbound", Integer()),
]


KEPT_PATHS = [
    (b"kind", Unicode()),
    (b"wanted", Integer()),
    (b"built", Integer()),
    (b"building", Integer()),
    (b"failures", Integer()),
    (b"last_error", Unicode()),
]


class Status(Command):
    """
    What the node is: its id and AP-address, where it listens, how long it has run, the paths
    it keeps built, its links and peers.
    """

    arguments = []
    response = [
        (b"node_id", Unicode()),
        (b"ap_address", Unicode()),
        (b"kept_paths", AmpList(KEPT_PATHS)),
        (b"listening", Unicode()),
        (b"api", Unicode()),
        (b"uptime", Float()),
        (b"links", Integer()),
        (b"connections", Integer()),
        (b"peers", AmpList(PEER)),
        (b"exit_addresses", ListOf(Unicode())),
    ]


class DhtPut(Command):
    """
    Store an opaque value in the network database, as a module-API PUT does, and answer once it
    was sent to the closest nodes: C{replicas} is how many accepted it, C{here} whether this
    node keeps it too (not when its store is full).
    """

    arguments = [(b"key", String()), (b"value", String()), (b"ttl", Integer()), (b"replication", Integer())]
    response = [(b"replicas", Integer()), (b"here", Boolean(optional=True))]


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


class PathBuild(Command):
    """Build a routing path; answers how long each phase took and, for an entry path, the AP-address."""

    arguments = [(b"kind", Unicode()), (b"x", Integer()), (b"y", Integer())]
    response = [
        (b"kind", Unicode()),
        (b"ap_address", Unicode()),
        (b"nodes", ListOf(Unicode())),
        (b"phases", AmpList([(b"name", Unicode()), (b"seconds", Float())])),
        (b"seconds", Float()),
    ]
    errors = {PathFailed: b"PATH_FAILED", ValueError: b"BAD_SHAPE"}


class PathList(Command):
    """The routing paths this node owns."""

    arguments = []
    response = [
        (b"paths", AmpList([(b"kind", Unicode()), (b"ap_address", Unicode()), (b"x0", Unicode()), (b"age", Float()), (b"length", Integer()), (b"nodes", ListOf(Unicode()))])),
    ]


class RouteLookup(Command):
    """The verified routing entry of an AP-address, from the network database."""

    arguments = [(b"ap_address", Unicode())]
    response = [
        (b"found", Boolean()),
        (b"sequence", Integer()),
        (b"expires", Integer()),
        (b"entry_nodes", AmpList([(b"node_id", Unicode()), (b"address", Unicode())])),
    ]
    errors = {ValueError: b"BAD_ADDRESS"}


class TunnelOpen(Command):
    """Open a tunnel to an AP-address with end-to-end TLS, time a 1 KiB echo through it, close it."""

    arguments = [(b"ap_address", Unicode())]
    response = [
        (b"ap_address", Unicode()),
        (b"peer", Unicode()),
        (b"open_seconds", Float()),
        (b"rtt_seconds", Float()),
    ]
    errors = {TunnelFailed: b"TUNNEL_FAILED", ConnectionRefusedError: b"REFUSED", PathFailed: b"PATH_FAILED", ValueError: b"BAD_ADDRESS"}


class TunnelList(Command):
    """The tunnels the node owns an end of, and how many it carries for others."""

    arguments = []
    response = [
        (b"ap_address", Unicode()),
        (b"tunnels", AmpList([(b"direction", Unicode()), (b"peer", Unicode()), (b"age", Float()), (b"sent", Integer()), (b"received", Integer())])),
        (b"carried", Integer()),
        (b"exit_addresses", ListOf(Unicode())),
    ]


class TunStatus(Command):
    """
    The tun device: its name, the node's published AP-address and the exit APs it carries (the
    first the one programs connect out from), and packets and drops per direction.
    """

    arguments = []
    response = [
        (b"device", Unicode()),
        (b"ap_address", Unicode()),
        (b"exit_addresses", ListOf(Unicode())),
        (b"tunnels", Integer()),
        (b"counts", AmpList([(b"event", Unicode()), (b"packets", Integer())])),
    ]
