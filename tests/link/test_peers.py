"""PEER links: kept open to the bootstrap contacts, reopened when lost."""

import random
import socket

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from phantom.config import Contact
from phantom.link.peers import PeerLinks
from phantom.wire.link import Purpose, dataHeader, encodeOpen
from tests.link.helpers import LogCollector, RawClient, connectRaw, portOf, startLinkService


def freePort(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def until(predicate, timeout=10.0, step=0.05):
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, step, lambda: None)
        waited += step


def startPeerLinks(testCase, links, contacts):
    peers = PeerLinks(links, contacts, reactor, random.Random(7))
    peers.initialDelay = 0.1
    peers.startService()
    testCase.addCleanup(peers.stopService)
    return peers


class PeerLinksTests(TestCase):
    """A node keeps one PEER link to each contact."""

    async def test_linkKept(self):
        """A PEER link to the contact opens; the contact sees the node as its peer."""
        bootstrap = startLinkService(self)
        startPeerLinks(self, bootstrap, [])
        node = startLinkService(self)
        startPeerLinks(self, node, [Contact("127.0.0.1", portOf(bootstrap))])
        await until(lambda: bootstrap.peers())
        [peer] = bootstrap.peers()
        self.assertEqual((peer["nodeId"], peer["inbound"], peer["outbound"]), (node.nodeId, 1, 0))
        [seen] = node.peers()
        self.assertEqual((seen["nodeId"], seen["address"]), (bootstrap.nodeId, f"127.0.0.1:{portOf(bootstrap)}"))

    async def test_reconnects(self):
        """A contact that is down at first is reached once it comes up, and again after it restarts."""
        port = freePort()
        node = startLinkService(self)
        startPeerLinks(self, node, [Contact("127.0.0.1", port)])
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(node.links, frozenset())

        from twisted.internet.endpoints import TCP4ServerEndpoint
        from phantom.link.service import LinkService
        from phantom.identity import Identity
        from tests.link.helpers import FAST_LIMITS

        identity = Identity.generate()

        def contactUp():
            contact = LinkService(identity, TCP4ServerEndpoint(reactor, port, interface="127.0.0.1"), FAST_LIMITS, reactor)
            contact.startService()
            PeerLinks(contact, [], reactor).startService()
            return contact

        contact = contactUp()
        await until(lambda: node.links)
        await contact.stopService()
        await until(lambda: not node.links)
        contact = contactUp()
        self.addCleanup(contact.stopService)
        await until(lambda: node.links)
        self.assertEqual([p["nodeId"] for p in node.peers()], [identity.nodeId])

    async def test_selfContactDropped(self):
        """A contact that is this node itself is dropped, not retried."""
        node = startLinkService(self)
        peers = startPeerLinks(self, node, [Contact("127.0.0.1", portOf(node))])
        await until(lambda: not peers._state)
        self.assertEqual(node.links, frozenset())

    async def test_pinnedContactMismatch(self):
        """A contact whose node id does not match the pin is refused and logged."""
        bootstrap = startLinkService(self)
        node = startLinkService(self)
        logs = LogCollector(self)
        startPeerLinks(self, node, [Contact("127.0.0.1", portOf(bootstrap), bytes(32))])
        await until(lambda: any("expected " + "00" * 32 in line for line in logs.lines))
        self.assertEqual(node.links, frozenset())

    async def test_dataRefused(self):
        """DATA on a PEER link is a protocol error that closes the link."""
        bootstrap = startLinkService(self)
        startPeerLinks(self, bootstrap, [])
        logs = LogCollector(self)
        client = RawClient(encodeOpen(Purpose.PEER) + dataHeader(1) + b"x")
        await connectRaw(portOf(bootstrap), client)
        [line] = logs.about(client.localPort)
        self.assertIn("DATA frame on a PEER link", line)
