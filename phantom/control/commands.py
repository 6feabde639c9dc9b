"""
The AMP commands a node answers on its control socket.

Each command's response is what C{phantomctl} prints; a new C{phantomctl} subcommand adds a
command here, a responder in L{phantom.control.server} and a subcommand in L{phantom.control.cli}.
"""

from twisted.protocols.amp import AmpList, Command, Float, Integer, Unicode

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
        (b"uptime", Float()),
        (b"links", Integer()),
        (b"connections", Integer()),
        (b"peers", AmpList(PEER)),
    ]
