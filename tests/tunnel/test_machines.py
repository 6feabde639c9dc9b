"""
Each tunnel role's machine alone: events in, actions out, no links, no clock but a counter.
"""

import os
import random
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact, tcpAddress
from phantom.link.ending import Ending
from phantom.path.interfaces import PathKind, Side
from phantom.tunnel.common import (
    MAX_PENDING,
    MAX_PENDING_PER_PATH,
    MAX_PENDING_PER_PEER,
    CloseLink,
    Ended,
    Fail,
    KeySets,
    LookUpRoute,
    Note,
    OpenLink,
    OwnTunnel,
    RefuseLink,
    ReachState,
    RememberedBlocks,
    SeenBlocks,
    SendFrame,
    SendOnPath,
    SpliceLinks,
    apAnswer,
    apRequest,
    requireBlock,
)
from phantom.tunnel.entry import EntrySetup, EntryState
from phantom.tunnel.exit import ExitSetup
from phantom.tunnel.keys import BACKWARD, FORWARD, KeySet, applyLayers, backward, exitConfirmation, forward
from phantom.tunnel.owner import DirectSetup, InboundSetup, InboundState, OutboundSetup, OutboundState
from phantom.tunnel.relay import RelaySetup, RelayState
from phantom.wire import ProtocolError
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import (
    CELL_SIZE,
    BLOCK_SIZE,
    InboundStatus,
    TunnelOpening,
    buildEntryInit,
    buildExitInit,
    buildInboundReply,
    buildOutboundReply,
    isExitInit,
    parseEntryInit,
    parseInboundReply,
    parseOutboundReply,
)

AP = bytes.fromhex("fd") + bytes(range(15))


def contact(index):
    return Contact(f"10.0.0.{index}", 7402, bytes([index]) * 32)


def linkFrom(who, linkId):
    """A link handle from C{who} (a L{Contact}) named C{linkId}."""
    return SimpleNamespace(linkId=linkId, nodeId=who.nodeId, peer=tcpAddress(who.host, who.port))


class FakePath:
    """A path as the machines see it: its contacts, link ids and links on each side."""

    def __init__(self, previous=contact(1), next=contact(3), kind=None):
        self.contacts = {Side.PREVIOUS: previous, Side.NEXT: next}
        self.linkIds = {side: os.urandom(LINK_ID_SIZE) for side in Side}
        self.links = {side: object() for side in Side}
        self.kind = kind

    def sides(self):
        return [side for side, who in self.contacts.items() if who is not None]


def opening(actions):
    [send] = [action for action in actions if isinstance(action, SendFrame)]
    parsed = TunnelOpening.parse(send.payload)
    return bytes(parsed.first), bytes(parsed.second)


def only(actions, kind):
    return [action for action in actions if isinstance(action, kind)]


class RelayTests(SynchronousTestCase):
    def setUp(self):
        self.path = FakePath()
        self.key = os.urandom(32)
        self.block = os.urandom(BLOCK_SIZE)
        self.relay = RelaySetup(self.path, Side.PREVIOUS, Side.NEXT, self.key, self.block)

    def test_passesTheBlockOn(self):
        """The block goes on towards T transformed with the hop's key; no timer runs while the block waits."""
        self.assertEqual(self.relay.start(), [SendOnPath(self.path, Side.NEXT, forward(self.key, self.block))])
        self.assertEqual(self.relay.passed, forward(self.key, self.block))
        self.assertFalse(self.relay.timed)

    def test_tunnelLinkSpliced(self):
        """
        The tunnel link from the neighbour the block went to: the relay opens one back towards
        the side it came from, sends both blocks peeled, and splices the two; the first frame
        back is peeled like a setup block, later ones through the stream layer.
        """
        incoming = linkFrom(self.path.contacts[Side.NEXT], self.path.linkIds[Side.NEXT])
        second = os.urandom(BLOCK_SIZE)
        self.assertEqual(
            self.relay.tunnelLinkArrived(incoming, second),
            [OpenLink(Purpose.TUNNEL, self.path.contacts[Side.PREVIOUS], self.path.linkIds[Side.PREVIOUS])],
        )
        self.assertIs(self.relay.state, RelayState.CONNECTING_BACK)
        self.assertTrue(self.relay.timed)
        onward = object()
        actions = self.relay.linkOpened(onward)
        self.assertEqual(opening(actions), (self.block, backward(self.key, second)))
        [splice] = only(actions, SpliceLinks)
        self.assertEqual((splice.path, splice.a, splice.b), (self.path, incoming, onward))
        reply = os.urandom(BLOCK_SIZE)
        self.assertEqual(splice.bToA(reply), backward(self.key, reply))
        self.assertRaises(ProtocolError, splice.aToB, b"short")
        self.assertRaises(ProtocolError, splice.bToA, b"data")
        self.assertNotEqual(splice.bToA(bytes(CELL_SIZE)), bytes(CELL_SIZE))
        self.assertIs(self.relay.state, Ended.DONE)

    def test_wrongNeighbour(self):
        """A tunnel link naming the block, from another node or with another link id, is refused; the setup ends."""
        for link in (
            linkFrom(contact(9), self.path.linkIds[Side.NEXT]),
            linkFrom(Contact(self.path.contacts[Side.NEXT].host, self.path.contacts[Side.NEXT].port, os.urandom(32)), self.path.linkIds[Side.NEXT]),
            linkFrom(self.path.contacts[Side.NEXT], os.urandom(LINK_ID_SIZE)),
            linkFrom(self.path.contacts[Side.PREVIOUS], self.path.linkIds[Side.NEXT]),
        ):
            relay = RelaySetup(self.path, Side.PREVIOUS, Side.NEXT, self.key, self.block)
            [refusal] = relay.tunnelLinkArrived(link, os.urandom(BLOCK_SIZE))
            self.assertEqual(refusal, RefuseLink(link, "it is not from the neighbour the block went to"))
            self.assertIs(relay.state, Ended.FAILED)

    def test_incomingClosesWhileConnecting(self):
        """The tunnel link closing while the relay connects back fails it; the link back, once open, is closed."""
        incoming = linkFrom(self.path.contacts[Side.NEXT], self.path.linkIds[Side.NEXT])
        self.relay.tunnelLinkArrived(incoming, os.urandom(BLOCK_SIZE))
        actions = self.relay.linkClosed(incoming)
        self.assertEqual(actions[0], CloseLink(incoming))
        self.assertEqual(only(actions, Fail)[0].level, LogLevel.info)
        onward = object()
        self.assertEqual(self.relay.linkOpened(onward), [CloseLink(onward)])

    def test_connectingBackFails(self):
        incoming = linkFrom(self.path.contacts[Side.NEXT], self.path.linkIds[Side.NEXT])
        self.relay.tunnelLinkArrived(incoming, os.urandom(BLOCK_SIZE))
        self.assertEqual(self.relay.linkFailed("refused"), [CloseLink(incoming), Fail("refused", LogLevel.info)])
        self.assertEqual(self.relay.timedOut(), [])


class ExitTests(SynchronousTestCase):
    def setUp(self):
        self.path = FakePath(next=None)
        self.key = os.urandom(32)
        self.block = os.urandom(BLOCK_SIZE)
        self.exit = ExitSetup(self.path, Side.PREVIOUS, self.block, self.key, os.urandom)
        self.back = object()
        self.entryNode = contact(7)

    def routeEntry(self, *nodes):
        return SimpleNamespace(entryNodes=list(nodes))

    def test_wholeSetup(self):
        """
        The exit node opens the tunnel link back with an init block; the owner's reply names
        an AP-address, which it looks up; it asks an entry node; on acceptance it confirms to
        the owner and splices.
        """
        self.assertEqual(self.exit.start(), [OpenLink(Purpose.TUNNEL, self.path.contacts[Side.PREVIOUS], self.path.linkIds[Side.PREVIOUS])])
        first, second = opening(self.exit.linkOpened(self.back))
        self.assertEqual(first, self.block)
        self.assertTrue(isExitInit(forward(self.key, second)))
        self.assertEqual(self.exit.frameReceived(self.back, forward(self.key, buildOutboundReply(AP))), [LookUpRoute(AP)])
        [connect] = self.exit.routeFound(self.routeEntry(self.entryNode))
        self.assertEqual((connect.purpose, connect.contact), (Purpose.ENTRY, self.entryNode))
        entryLink = object()
        self.assertEqual(self.exit.linkOpened(entryLink), [SendFrame(entryLink, apRequest(AP))])
        actions = self.exit.frameReceived(entryLink, apAnswer(InboundStatus.ACCEPTED))
        self.assertEqual(actions[0], SendFrame(self.back, exitConfirmation(self.key, self.block)))
        [splice] = only(actions, SpliceLinks)
        self.assertEqual((splice.a, splice.b), (self.back, entryLink))
        self.assertIs(self.exit.state, Ended.DONE)

    def reachingEntry(self, *nodes):
        self.exit.start()
        self.exit.linkOpened(self.back)
        self.exit.frameReceived(self.back, forward(self.key, buildOutboundReply(AP)))
        return self.exit.routeFound(self.routeEntry(*nodes))

    def test_nextEntryNodeTried(self):
        """An entry node that cannot be reached: the next is tried; none left fails, naming every reason."""
        [first] = self.reachingEntry(contact(7), contact(8))
        self.assertEqual(first.contact, contact(7))
        [second] = self.exit.linkFailed("refused at 7")
        self.assertEqual(second.contact, contact(8))
        actions = self.exit.linkFailed("refused at 8")
        self.assertEqual(actions[0], CloseLink(self.back))
        self.assertIn("refused at 7; refused at 8", only(actions, Fail)[0].why)

    def test_noRoutingEntry(self):
        self.exit.start()
        self.exit.linkOpened(self.back)
        self.exit.frameReceived(self.back, forward(self.key, buildOutboundReply(AP)))
        actions = self.exit.routeFound(None)
        self.assertIn("no routing entry", only(actions, Fail)[0].why)
        self.assertEqual(actions[0], CloseLink(self.back))

    def test_refused(self):
        """The entry node refuses: both links close, and the refusal is the reason."""
        self.reachingEntry(self.entryNode)
        entryLink = object()
        self.exit.linkOpened(entryLink)
        actions = self.exit.frameReceived(entryLink, apAnswer(InboundStatus.REFUSED))
        self.assertEqual(actions[:2], [CloseLink(self.back), CloseLink(entryLink)])
        self.assertIn("refused the tunnel", actions[2].why)

    def test_ownerGivesUp(self):
        """The owner closing while the entry node is asked ends the asking too."""
        self.reachingEntry(self.entryNode)
        entryLink = object()
        self.exit.linkOpened(entryLink)
        actions = self.exit.linkClosed(self.back)
        self.assertEqual(actions[:2], [CloseLink(self.back), CloseLink(entryLink)])
        self.assertIn("the owner gave up", actions[2].why)

    def test_badReply(self):
        """A reply that is not a valid reply block, or a frame of another size, fails with a warning."""
        for frame in (os.urandom(BLOCK_SIZE), b"short"):
            setup = ExitSetup(self.path, Side.PREVIOUS, self.block, self.key, os.urandom)
            setup.start()
            setup.linkOpened(self.back)
            actions = setup.frameReceived(self.back, frame)
            self.assertEqual(actions[0], CloseLink(self.back))
            self.assertEqual(actions[1].level, LogLevel.warn)

    def test_badAnswer(self):
        self.reachingEntry(self.entryNode)
        entryLink = object()
        self.exit.linkOpened(entryLink)
        actions = self.exit.frameReceived(entryLink, b"\x00" * 7)
        self.assertEqual(actions[-1].level, LogLevel.warn)

    def test_frameOutOfTurn(self):
        """A frame before the reply was asked for (while the lookup runs) fails the setup."""
        self.exit.start()
        self.exit.linkOpened(self.back)
        self.exit.frameReceived(self.back, forward(self.key, buildOutboundReply(AP)))
        self.assertIs(self.exit.state, ReachState.LOOKING_UP)
        actions = self.exit.frameReceived(self.back, os.urandom(BLOCK_SIZE))
        self.assertEqual(actions[-1], Fail("a frame where none was due"))


class EntryTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.remembered = RememberedBlocks(self.clock)
        self.exitNode = contact(5)
        self.request = linkFrom(self.exitNode, os.urandom(LINK_ID_SIZE))
        self.path = FakePath(next=None)
        self.keySet = KeySet(os.urandom(32), 4)
        self.listening = True

    def entry(self, ownApAddress=None, path=True):
        return EntrySetup(
            self.request, ownApAddress, lambda: self.listening, lambda ap: self.path if path and ap == AP else None,
            lambda path: self.keySet, self.remembered, random.Random(1), os.urandom,
        )

    def asked(self):
        entry = self.entry()
        self.assertEqual(entry.start(), [])
        [send] = entry.frameReceived(self.request, apRequest(AP))
        return entry, send

    def test_initBlockSent(self):
        """
        Asked for an AP-address it is the entry node of, the node sends an init block naming it
        and the exit node's address over the entry path, and remembers it.
        """
        entry, send = self.asked()
        self.assertEqual((send.path, send.side), (self.path, Side.PREVIOUS))
        self.assertIn(send.payload, self.remembered)
        self.assertIs(self.remembered.take(send.payload), entry)
        inits = [backward(key, send.payload) for key in self.keySet.keys]
        self.assertEqual(sum(1 for init in inits if self.parses(init)), 1)
        self.assertIs(entry.state, EntryState.AWAITING_OWNER)

    def parses(self, init):
        try:
            return parseEntryInit(init)[0] == AP
        except ProtocolError:
            return False

    def ownersLink(self):
        return linkFrom(self.path.contacts[Side.PREVIOUS], self.path.linkIds[Side.PREVIOUS])

    def keyOf(self, block):
        [key] = [key for key in self.keySet.keys if self.parses(backward(key, block))]
        return key

    def test_accepted(self):
        """The owner accepts: the exit node hears so, the owner gets a dummy block, and the links are spliced."""
        entry, send = self.asked()
        key = self.keyOf(send.payload)
        link = self.ownersLink()
        actions = entry.tunnelLinkArrived(link, forward(key, buildInboundReply(InboundStatus.ACCEPTED)))
        self.assertEqual(actions[0], SendFrame(self.request, apAnswer(InboundStatus.ACCEPTED)))
        self.assertEqual(actions[1].link, link)
        self.assertEqual(len(actions[1].payload), BLOCK_SIZE)
        [splice] = only(actions, SpliceLinks)
        self.assertEqual((splice.a, splice.b), (link, self.request))
        self.assertIsNone(splice.aToB(os.urandom(BLOCK_SIZE)), "the owner's dummy block is passed on")
        self.assertNotIn(send.payload, self.remembered)

    def test_ownerRefuses(self):
        entry, send = self.asked()
        key = self.keyOf(send.payload)
        link = self.ownersLink()
        actions = entry.tunnelLinkArrived(link, forward(key, buildInboundReply(InboundStatus.REFUSED)))
        self.assertEqual(actions[0], SendFrame(self.request, apAnswer(InboundStatus.REFUSED)))
        self.assertEqual(actions[1:3], [CloseLink(self.request), CloseLink(link)])

    def test_badReply(self):
        """A reply that does not check out closes both links with a warning."""
        entry, send = self.asked()
        link = self.ownersLink()
        actions = entry.tunnelLinkArrived(link, os.urandom(BLOCK_SIZE))
        self.assertEqual(actions[:2], [CloseLink(self.request), CloseLink(link)])
        self.assertIn("malformed inbound reply block", actions[2].why)

    def test_wrongNeighbour(self):
        entry, send = self.asked()
        link = linkFrom(contact(9), self.path.linkIds[Side.PREVIOUS])
        actions = entry.tunnelLinkArrived(link, os.urandom(BLOCK_SIZE))
        self.assertEqual(actions[0], RefuseLink(link, "it is not from the neighbour the block went to"))
        self.assertEqual(actions[1], CloseLink(self.request))

    def test_exitNodeGivesUp(self):
        """The exit node closing, the path going, or the wait timing out ends the wait and forgets the block."""
        events = {
            "the exit node closed": lambda entry: entry.linkClosed(self.request),
            "the path went": lambda entry: entry.pathGone(),
            "the wait timed out": lambda entry: entry.timedOut(),
        }
        for what, event in events.items():
            entry, send = self.asked()
            actions = event(entry)
            self.assertEqual(actions[0], CloseLink(self.request), what)
            self.assertIsInstance(actions[-1], Fail, what)
            self.assertNotIn(send.payload, self.remembered, what)

    def test_notTheEntryNode(self):
        entry = self.entry(path=False)
        actions = entry.frameReceived(self.request, apRequest(AP))
        self.assertEqual(actions[:2], [SendFrame(self.request, apAnswer(InboundStatus.REFUSED)), CloseLink(self.request)])
        self.assertIn("no entry node of", actions[2].why)

    def test_badRequest(self):
        actions = self.entry().frameReceived(self.request, b"\x00" * 5)
        self.assertEqual(actions[0], CloseLink(self.request))
        self.assertIn("malformed AP request", actions[1].why)

    def test_tooManyPending(self):
        """With L{MAX_PENDING} blocks remembered, another request is given up."""
        self.remembered = RememberedBlocks(self.clock, limit=1)
        self.asked()
        entry = self.entry()
        actions = entry.frameReceived(self.request, apRequest(AP))
        self.assertIn("too many tunnel setups pending", actions[-1].why)

    def test_ownEntry(self):
        """A node that is its own entry node answers for its own AP-address, accepting while it listens."""
        entry = self.entry(ownApAddress=AP)
        self.assertEqual(
            entry.frameReceived(self.request, apRequest(AP)),
            [SendFrame(self.request, apAnswer(InboundStatus.ACCEPTED)), OwnTunnel(None, self.request, [], False)],
        )
        self.listening = False
        actions = self.entry(ownApAddress=AP).frameReceived(self.request, apRequest(AP))
        self.assertEqual(actions[:2], [SendFrame(self.request, apAnswer(InboundStatus.REFUSED)), CloseLink(self.request)])


class OwnerTests(SynchronousTestCase):
    """The owner's machines, against hops played by the test: each hop's key set, x0 first."""

    def setUp(self):
        self.keySets = [KeySet(os.urandom(32), 5) for _ in range(3)]
        self.chosen = [keySet.keys[index] for keySet, index in zip(self.keySets, (1, 4, 2))]
        x0 = contact(1)
        self.path = SimpleNamespace(
            link=SimpleNamespace(linkId=os.urandom(LINK_ID_SIZE)), plan=SimpleNamespace(adjacent=x0),
            kind=PathKind.EXIT, apAddress=AP,
        )
        self.x0Link = linkFrom(x0, self.path.link.linkId)

    def test_outbound(self):
        """
        The owner sends its block; on the tunnel link it finds each hop's key, replies with the
        AP-address in layers, checks the exit node's success block, and owns the tunnel.
        """
        block = os.urandom(BLOCK_SIZE)
        setup = OutboundSetup(self.path, AP, block, self.keySets, os.urandom)
        self.assertEqual(setup.start(), [SendFrame(self.path.link, block)])
        [reply] = setup.tunnelLinkArrived(self.x0Link, applyLayers(list(reversed(self.chosen)), buildExitInit(), BACKWARD))
        self.assertEqual(parseOutboundReply(applyLayers(self.chosen, reply.payload, BACKWARD)), AP)
        self.assertIs(setup.state, OutboundState.AWAITING_CONFIRMATION)
        atT = applyLayers(self.chosen[:-1], block, FORWARD)
        success = applyLayers(list(reversed(self.chosen[:-1])), exitConfirmation(self.chosen[-1], atT), BACKWARD)
        [owned] = setup.frameReceived(self.x0Link, success)
        self.assertEqual((owned.path, owned.link, owned.outbound, owned.peer, len(owned.layers)), (self.path, self.x0Link, True, AP, 3))

    def test_outboundBadBlocks(self):
        """An init block or a success block that does not check out fails the setup, closing the link."""
        setup = OutboundSetup(self.path, AP, os.urandom(BLOCK_SIZE), self.keySets, os.urandom)
        actions = setup.tunnelLinkArrived(self.x0Link, os.urandom(BLOCK_SIZE))
        self.assertEqual(actions, [CloseLink(self.x0Link), Fail("the exit node's init block does not check out")])
        setup = OutboundSetup(self.path, AP, os.urandom(BLOCK_SIZE), self.keySets, os.urandom)
        setup.tunnelLinkArrived(self.x0Link, applyLayers(list(reversed(self.chosen)), buildExitInit(), BACKWARD))
        actions = setup.frameReceived(self.x0Link, os.urandom(BLOCK_SIZE))
        self.assertIn("a relay altered the setup block", actions[-1].why)

    def test_outboundLinkNotFromX0(self):
        """A tunnel link naming the setup but not from x0 over the path is refused; the setup waits on."""
        setup = OutboundSetup(self.path, AP, os.urandom(BLOCK_SIZE), self.keySets, os.urandom)
        stranger = linkFrom(contact(9), self.path.link.linkId)
        self.assertIsInstance(setup.tunnelLinkArrived(stranger, os.urandom(BLOCK_SIZE))[0], RefuseLink)
        self.assertIs(setup.state, OutboundState.AWAITING_LINK)
        self.assertEqual(setup.linkClosed(stranger), [])

    def test_outboundExitCloses(self):
        setup = OutboundSetup(self.path, AP, os.urandom(BLOCK_SIZE), self.keySets, os.urandom)
        setup.tunnelLinkArrived(self.x0Link, applyLayers(list(reversed(self.chosen)), buildExitInit(), BACKWARD))
        actions = setup.linkClosed(self.x0Link)
        self.assertIn("the exit node closed it", actions[-1].why)

    def inbound(self, listening=True):
        self.path.kind = PathKind.ENTRY
        init = buildEntryInit(AP, bytes(16))
        block = applyLayers(list(reversed(self.chosen)), init, FORWARD)
        return InboundSetup(self.path, block, self.keySets, listening, os.urandom), block

    def test_inbound(self):
        """
        An entry node's init block naming this owner's AP-address: it finds the keys, opens the
        tunnel link to x0 with its reply in layers, and on the dummy block answers with its own
        and hands the tunnel to the acceptor.
        """
        setup, block = self.inbound()
        self.assertEqual(setup.start(), [OpenLink(Purpose.TUNNEL, self.path.plan.adjacent, self.path.link.linkId)])
        first, second = opening(setup.linkOpened(self.x0Link))
        self.assertEqual(first, block)
        reply = applyLayers(self.chosen, second, BACKWARD)
        self.assertEqual(parseInboundReply(reply), InboundStatus.ACCEPTED)
        actions = setup.frameReceived(self.x0Link, os.urandom(BLOCK_SIZE))
        self.assertEqual(len(actions[0].payload), BLOCK_SIZE)
        self.assertEqual((actions[1].link, actions[1].outbound, len(actions[1].layers)), (self.x0Link, False, 3))

    def test_inboundRefused(self):
        """Nothing listens: the reply refuses, and the link closes when the entry node closes, or after a step's time."""
        setup, _ = self.inbound(listening=False)
        setup.start()
        actions = setup.linkOpened(self.x0Link)
        self.assertEqual(actions[1], Note("refused an inbound tunnel: nothing listens"))
        self.assertIs(setup.state, InboundState.REFUSED)
        self.assertEqual(setup.timedOut(), [CloseLink(self.x0Link)])
        setup, _ = self.inbound(listening=False)
        setup.start()
        setup.linkOpened(self.x0Link)
        self.assertEqual(setup.linkClosed(self.x0Link), [])
        self.assertIs(setup.state, Ended.DONE)

    def test_inboundBadBlocks(self):
        """A block that names another AP-address, one over an exit path, or a dummy of the wrong size fail with a warning."""
        other = InboundSetup(self.path, os.urandom(BLOCK_SIZE), self.keySets, True, os.urandom)
        self.path.kind = PathKind.ENTRY
        self.assertEqual(other.start(), [Fail("an inbound tunnel request that does not check out")])
        self.path.kind = PathKind.EXIT
        self.assertEqual(InboundSetup(self.path, os.urandom(BLOCK_SIZE), self.keySets, True, os.urandom).start(), [Fail("a setup block came back over an exit path")])
        setup, _ = self.inbound()
        setup.start()
        setup.linkOpened(self.x0Link)
        actions = setup.frameReceived(self.x0Link, b"short")
        self.assertEqual(actions[0], CloseLink(self.x0Link))
        self.assertEqual(actions[1].level, LogLevel.warn)

    def test_direct(self):
        """An own-exit owner looks up the routing entry, asks the entry node, and owns the tunnel it accepts."""
        setup = DirectSetup(AP, os.urandom)
        self.assertEqual(setup.start(), [LookUpRoute(AP)])
        [connect] = setup.routeFound(SimpleNamespace(entryNodes=[contact(4)]))
        self.assertEqual((connect.purpose, connect.contact), (Purpose.ENTRY, contact(4)))
        link = object()
        self.assertEqual(setup.linkOpened(link), [SendFrame(link, apRequest(AP))])
        self.assertEqual(setup.frameReceived(link, apAnswer(InboundStatus.ACCEPTED)), [OwnTunnel(None, link, [], True, AP)])
        setup = DirectSetup(AP, os.urandom)
        setup.start()
        setup.routeFound(SimpleNamespace(entryNodes=[contact(4)]))
        setup.linkOpened(link)
        self.assertIn("refused the tunnel", setup.frameReceived(link, apAnswer(InboundStatus.REFUSED))[-1].why)


class TableTests(SynchronousTestCase):
    def test_rememberedBlocks(self):
        """
        At most L{MAX_PENDING} blocks are remembered, each for the setup timeout, forgotten in
        the order remembered; taking one forgets it.
        """
        clock = Clock()
        table = RememberedBlocks(clock)
        for index in range(MAX_PENDING):
            self.assertTrue(table.remember(index.to_bytes(4, "big"), index, index % 8, index % 32))
            if index == 10:
                clock.advance(1)
        self.assertFalse(table.remember(b"more", None, 0, 0))
        self.assertEqual(table.take((5).to_bytes(4, "big")), 5)
        self.assertIsNone(table.take((5).to_bytes(4, "big")))
        self.assertTrue(table.remember(b"more", "more", 5, 5))
        clock.advance(29.5)
        table.forgetExpired()
        self.assertEqual(len(table), MAX_PENDING - 11 + 1, "the eleven remembered first, one of them taken, are forgotten")
        self.assertIn(b"more", table)
        clock.advance(1)
        table.forgetExpired()
        self.assertEqual(len(table), 0)

    def test_rememberedBlocksShares(self):
        """
        One neighbour fills at most its share, one path at most its own; once all are taken, the
        neighbour holding the most gives way to one holding fewer, oldest block first.
        """
        clock = Clock()
        table = RememberedBlocks(clock)
        for index in range(MAX_PENDING_PER_PATH + 10):
            table.remember(b"a%d" % index, index, "flooder", "its path")
        self.assertEqual(len(table), MAX_PENDING_PER_PATH)
        self.assertFalse(table.admits("flooder", "its path"))
        self.assertTrue(table.remember(b"honest", "machine", "honest", "another path"))
        for path in range(MAX_PENDING_PER_PEER):
            table.remember(b"b%d" % path, path, "flooder", path)
        self.assertEqual(table.shares.held("flooder"), MAX_PENDING_PER_PEER)
        small = RememberedBlocks(clock, limit=4, perPeer=4, perPath=4)
        for index in range(4):
            self.assertTrue(small.remember(b"f%d" % index, index, "flooder", index))
        self.assertTrue(small.remember(b"honest", "machine", "honest", "path"))
        self.assertEqual([block in small for block in (b"f0", b"f1", b"f2", b"f3", b"honest")], [False, True, True, True, True])
        self.assertIsNone(small.take(b"f0"))
        self.assertEqual(small.take(b"honest"), "machine")

    def test_seenBlocks(self):
        """
        A block seen before over a path is a replay; one path brings at most its bound of
        blocks in its life, and they are forgotten when it goes, never before.
        """
        ending = Ending()
        path = SimpleNamespace(onGone=ending.onEnd)
        other = SimpleNamespace(onGone=Ending().onEnd)
        seen = SeenBlocks(limit=10, perPeer=10, perPath=3)
        block = os.urandom(BLOCK_SIZE)
        self.assertIsNone(seen.firstSight(path, "peer", block))
        self.assertEqual(seen.firstSight(path, "peer", block), "a replayed setup block")
        self.assertIsNone(seen.firstSight(other, "peer", block), "another path's blocks are its own")
        for _ in range(2):
            self.assertIsNone(seen.firstSight(path, "peer", os.urandom(BLOCK_SIZE)))
        self.assertIn("too many", seen.firstSight(path, "peer", os.urandom(BLOCK_SIZE)))
        self.assertEqual(len(seen), 4)
        ending.end()
        self.assertEqual(len(seen), 1)

    def test_seenBlocksFullOfSybils(self):
        """
        Neighbours (node ids are free) that fill the seen blocks between them over paths of
        their own: a block of another neighbour is still taken, the path of the neighbour
        holding the most that brought the most blocks is closed, and its blocks forgotten with
        it (so none of them can come again over it).
        """
        paths = []

        def makePath():
            ending = Ending()
            path = SimpleNamespace(onGone=ending.onEnd, gone=ending.end, closed=False)
            path.close = lambda: setattr(path, "closed", True)
            paths.append(path)
            return path

        seen = SeenBlocks(limit=12, perPeer=4, perPath=2)
        for sybil in range(3):
            for _ in range(2):
                path = makePath()
                for _ in range(2):
                    self.assertIsNone(seen.firstSight(path, sybil, os.urandom(BLOCK_SIZE)))
        self.assertEqual(len(seen), 12)
        honest = makePath()
        self.assertIsNone(seen.firstSight(honest, "honest", os.urandom(BLOCK_SIZE)))
        [closed] = [path for path in paths if path.closed]
        self.assertEqual(len(seen), 11)
        self.assertIn("closed", seen.firstSight(closed, 0, os.urandom(BLOCK_SIZE)))
        self.assertIsNone(seen.firstSight(honest, "honest", os.urandom(BLOCK_SIZE)))
        self.assertFalse(honest.closed)
        closed.gone()
        self.assertEqual(len(seen), 12)
        self.assertIsNone(seen.firstSight(makePath(), "honest", os.urandom(BLOCK_SIZE)))

    def test_keySetsForgottenWithTheirPath(self):
        """A path's key set is made once, and forgotten when the path goes."""
        ending = Ending()
        path = SimpleNamespace(keySeed=os.urandom(32), keyCount=3, onGone=ending.onEnd)
        keySets = KeySets()
        first = keySets.ofRelayed(path)
        self.assertIs(keySets.ofRelayed(path), first)
        ending.end()
        self.assertEqual(keySets.bySeed, {})

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2 * BLOCK_SIZE))
    def test_requireBlock(self, payload):
        """Exactly one setup block passes; anything else is a protocol error."""
        if len(payload) == BLOCK_SIZE:
            self.assertEqual(requireBlock(payload), payload)
        else:
            self.assertRaises(ProtocolError, requireBlock, payload)
