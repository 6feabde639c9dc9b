"""
In-memory links for tests of the rooms above the link layer: many nodes' link services on one
driven clock, no sockets and no TLS, with the same dispatch (awaited, parked, by purpose) as the
real L{phantom.link.service.LinkService}.

    clock = task.Clock()
    network = MemoryNetwork(clock)
    alice, bob = network.linkService(), network.linkService()
    d = alice.connect(*bob.address, Purpose.ECHO, nodeId=bob.nodeId)
    clock.advance(0)   # links open, frames and closings arrive, a turn at a time

A link opens one turn after C{connect}; a frame arrives one turn after it is sent. A host taken
off the network (L{MemoryNetwork.disconnect}) refuses connections and loses its links.
"""

import os

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from phantom.address import formatHostPort
from phantom.errors import LinkFailed, PinMismatch
from phantom.link.dispatch import LinkDispatcher
from phantom.link.interfaces import ILinkService
from phantom.link.local import LocalLink
from phantom.wire.link import NO_LINK_ID, Purpose


class MemoryNetwork:
    """
    The nodes of an in-memory network, by address.

    @param clock: the C{IReactorTime} (a C{task.Clock}) every link runs on.
    """

    def __init__(self, clock):
        self.clock = clock
        self._services = {}
        self._count = 0

    def linkService(self, nodeId=None, host=None, port=7402):
        """
        A new node's link service on this network.

        @param nodeId: its node id (random if not given).
        @param host: its IPv4 address (C{10.0.x.y}, one per node, if not given).
        """
        self._count += 1
        host = host or f"10.0.{self._count // 250}.{self._count % 250 + 1}"
        service = MemoryLinkService(self, nodeId or os.urandom(32), (host, port))
        self._services[(host, port)] = service
        return service

    def at(self, host, port):
        """The link service listening at C{host:port}, or C{None}."""
        return self._services.get((host, port))

    def disconnect(self, service):
        """Take C{service}'s node off the network: its links close, nobody reaches it."""
        self._services.pop(service.address, None)
        for link in list(service.links):
            link.close()


@implementer(ILinkService)
class MemoryLinkService:
    """One node's links on a L{MemoryNetwork}; see L{ILinkService}."""

    def __init__(self, network, nodeId, address):
        self._network = network
        self.nodeId = nodeId
        self.address = address
        self.clock = network.clock
        self._dispatcher = LinkDispatcher(self.clock)
        self.links = set()
        """The open ends of this node's links."""
        self.registerPurpose = self._dispatcher.registerPurpose
        self.parkEarlyLinks = self._dispatcher.parkEarlyLinks
        self.expectLink = self._dispatcher.expectLink

    def connect(self, host, port, purpose, linkId=NO_LINK_ID, nodeId=None):
        target = self._network.at(host, port)
        if target is None:
            return fail(LinkFailed(f"cannot connect to {formatHostPort(host, port)}: nobody listens there"))
        if nodeId is not None and nodeId != target.nodeId:
            return fail(PinMismatch(nodeId, target.nodeId))
        mine, theirs = LocalLink.between(
            (self.nodeId, *self.address), (target.nodeId, *target.address), self.clock, Purpose(purpose), linkId
        )
        self._track(mine)
        target._track(theirs)
        opened = Deferred()

        def open():
            if mine.closed:
                opened.errback(LinkFailed(f"the link to {formatHostPort(host, port)} closed as it opened"))
                return
            target._dispatcher.dispatch(theirs)
            opened.callback(mine)

        self.clock.callLater(0, open)
        return opened

    def _track(self, end):
        self.links.add(end)
        end.ending.onEnd(lambda: self.links.discard(end))
