"""
PEER links: a node keeps links open to the contacts it was given (its bootstrap nodes), so
that every node knows some peers before the network database exists. A PEER link carries only
keepalives; it is reopened with exponential backoff whenever it is lost.
"""

import random

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import implementer

from phantom.link.interfaces import ILinkHandler
from phantom.link.protocol import ConnectedToSelf
from phantom.link.tls import PinMismatch
from phantom.wire.link import Purpose


@implementer(ILinkHandler)
class PeerLinkHandler:
    """The handler of a PEER link: it carries no data, so a DATA frame is a protocol error."""

    def __init__(self, link, onClosed=None):
        self._link = link
        self._onClosed = onClosed

    def frameReceived(self, payload):
        self._link.abort("DATA frame on a PEER link")

    def linkClosed(self, reason):
        if self._onClosed is not None:
            self._onClosed()


class PeerLinks(Service):
    """
    Keeps one PEER link open to each contact, reconnecting with backoff.

    @param links: the node's L{phantom.link.service.LinkService}.
    @param contacts: L{phantom.config.Contact}s to keep links to.
    @param clock: C{IReactorTime} for the backoff.
    @param random: a C{random.Random} for backoff jitter.
    """

    log = Logger()
    initialDelay = 1.0
    maximumDelay = 60.0

    def __init__(self, links, contacts, clock, random=random.SystemRandom()):
        self._links = links
        self._contacts = tuple(contacts)
        self._clock = clock
        self._random = random
        self._state = {}

    def startService(self):
        super().startService()
        self._links.registerPurpose(Purpose.PEER, PeerLinkHandler)
        for contact in self._contacts:
            self._state[contact] = {"delay": self.initialDelay, "link": None, "call": None}
            self._connect(contact)

    def stopService(self):
        super().stopService()
        for state in self._state.values():
            if state["call"] is not None and state["call"].active():
                state["call"].cancel()
            if state["link"] is not None:
                state["link"].close()
        self._state.clear()

    def _connect(self, contact):
        state = self._state.get(contact)
        if state is None:
            return
        state["call"] = None
        d = self._links.connect(contact.host, contact.port, Purpose.PEER, nodeId=contact.nodeId)
        d.addCallbacks(self._connected, self._failed, callbackArgs=(contact,), errbackArgs=(contact,))

    def _connected(self, link, contact):
        state = self._state.get(contact)
        if state is None:
            link.close()
            return
        state["link"] = link
        state["delay"] = self.initialDelay
        self.log.info("peer link to {contact} open: node {nodeId}", contact=str(contact), nodeId=link.nodeId.hex())
        link.attach(PeerLinkHandler(link, lambda: self._lost(contact)))

    def _failed(self, failure, contact):
        if failure.check(ConnectedToSelf):
            self.log.info("bootstrap contact {contact} is this node itself; not using it", contact=str(contact))
            self._state.pop(contact, None)
            return
        if failure.check(PinMismatch):
            self.log.warn("bootstrap contact {contact}: {why}", contact=str(contact), why=failure.getErrorMessage())
        self._retryLater(contact)

    def _lost(self, contact):
        state = self._state.get(contact)
        if state is not None:
            state["link"] = None
            self._retryLater(contact)

    def _retryLater(self, contact):
        state = self._state.get(contact)
        if state is None:
            return
        delay = state["delay"] * (0.5 + self._random.random())
        state["delay"] = min(state["delay"] * 2, self.maximumDelay)
        state["call"] = self._clock.callLater(delay, self._connect, contact)
