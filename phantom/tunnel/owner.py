"""
The owner's ends of a tunnel, sans-io: opening one over an exit path (L{OutboundSetup}) or,
as a non-anonymised client, straight to an entry node (L{DirectSetup}); and accepting one that
comes in over an entry path (L{InboundSetup}).
"""

from enum import Enum

from twisted.logger import LogLevel

from phantom.tunnel.common import (
    CloseLink,
    EntryAsker,
    Machine,
    Note,
    OpenLink,
    OwnTunnel,
    ReachState,
    RefuseLink,
    SendFrame,
    isEntryInitFor,
    openingOf,
    requireBlock,
)
from phantom.path.interfaces import PathKind
from phantom.tunnel.keys import BACKWARD, FORWARD, StreamLayer, applyLayers, exitConfirmation, recoverKeys, wrapForHops
from phantom.wire import ProtocolError
from phantom.wire.link import Purpose
from phantom.wire.tunnel import BLOCK_SIZE, InboundStatus, buildInboundReply, buildOutboundReply, isExitInit


def recoveredKeys(keySets, block, peel, accept):
    """@return: the key each hop chose, x0's first, or C{None} if no combination passes C{accept}."""
    chosen = recoverKeys(keySets, block, peel, accept)
    if chosen is None:
        return None
    return [keySet.keys[index] for keySet, index in zip(keySets, chosen)]


class OutboundState(Enum):
    AWAITING_LINK = "the block went to x0; waiting for the tunnel link"
    AWAITING_CONFIRMATION = "the reply went out; waiting for the exit node's success block"


class OutboundSetup(Machine):
    """
    The owner's side of a tunnel to C{apAddress} over its exit C{path}, named by its first
    C{block}; C{keySets}: the key sets of the path's X-nodes, x0's first.

    Events: C{start()}; C{tunnelLinkArrived(link, second)}; C{frameReceived(link, payload)}:
    the success block; C{linkClosed(link)}; C{timedOut()}; C{pathGone()}. It ends with an
    L{OwnTunnel} or a L{phantom.tunnel.common.Fail}.
    """

    what = "an outbound tunnel"

    def __init__(self, path, apAddress, block, keySets, randomBytes):
        super().__init__()
        self.path = path
        self.apAddress = apAddress
        self.block = block
        self._keySets = keySets
        self._randomBytes = randomBytes
        self.state = OutboundState.AWAITING_LINK
        self._link = None
        self._keys = None

    def start(self):
        return [SendFrame(self.path.link, self.block)]

    def tunnelLinkArrived(self, link, second):
        if self.state is not OutboundState.AWAITING_LINK or link.linkId != self.path.link.linkId or link.nodeId != self.path.plan.adjacent.nodeId:
            return [RefuseLink(link, "a tunnel link naming our setup, not from x0 over our path")]
        self._link = self.hold(link)
        self._keys = recoveredKeys(self._keySets, second, FORWARD, isExitInit)
        if self._keys is None:
            return self.fail("the exit node's init block does not check out")
        self.state = OutboundState.AWAITING_CONFIRMATION
        return [SendFrame(link, wrapForHops(self._keys, buildOutboundReply(self.apAddress, self._randomBytes)))]

    def frameReceived(self, link, payload):
        if self.state is not OutboundState.AWAITING_CONFIRMATION or link is not self._link:
            return super().frameReceived(link, payload)
        keys = self._keys
        try:
            # The exit node's success block, with the relays' transforms peeled off, proves
            # that its stream layer is made from the block this node sent.
            confirmation = applyLayers(keys[:-1], requireBlock(payload), FORWARD)
        except ProtocolError as e:
            return self.fail(str(e))
        if confirmation != exitConfirmation(keys[-1], applyLayers(keys[:-1], self.block, FORWARD)):
            return self.fail("the exit node's success block does not check out: a relay altered the setup block")
        layers = [StreamLayer(key, applyLayers(keys[:index], self.block, FORWARD)) for index, key in enumerate(keys)]
        return self.done(OwnTunnel(self.path, link, layers, True, self.apAddress))

    def linkClosed(self, link):
        if link is self._link and not self.ended:
            # Nothing is reported back along a tunnel: the exit node just closes it.
            return self.fail("the exit node closed it: no entry node answered, or the owner refused", LogLevel.info)
        return super().linkClosed(link)


class DirectSetup(EntryAsker):
    """
    A tunnel to C{apAddress} with no exit path: this node asks the entry node itself (paper
    §6.3), in the L{phantom.tunnel.common.ReachState}s of an L{EntryAsker}.

    Events: C{start()}; C{routeFound(entry)}; C{linkOpened(link)}/C{linkFailed(why)};
    C{frameReceived(link, payload)}: the answer; C{linkClosed(link)}; C{timedOut()}.
    """

    what = "a direct tunnel"

    def __init__(self, apAddress, randomBytes):
        super().__init__(randomBytes)
        self.apAddress = apAddress
        self.state = ReachState.LOOKING_UP

    def start(self):
        return self.askEntryNode(self.apAddress)

    def entryAccepted(self, link):
        return self.done(OwnTunnel(None, link, [], True, self.apAddress))


class InboundState(Enum):
    CONNECTING = "opening the tunnel link to x0"
    AWAITING_DUMMY = "the reply went out; waiting for the entry node's dummy block"
    REFUSED = "the refusal went out; waiting for the tunnel to close"


class InboundSetup(Machine):
    """
    An entry node's init C{block} that came back over this node's C{path}: find the hops' keys
    in C{keySets}, and answer over a tunnel link to x0 (C{listening}: whether anything accepts).

    Events: C{start()}; C{linkOpened(link)}/C{linkFailed(why)}; C{frameReceived(link,
    payload)}: the entry node's dummy block; C{linkClosed(link)}; C{timedOut()}; C{pathGone()}.
    It ends with an L{OwnTunnel} for the acceptor, or a refusal.
    """

    what = "an inbound tunnel"

    def __init__(self, path, block, keySets, listening, randomBytes):
        super().__init__()
        self.path = path
        self.block = block
        self._keySets = keySets
        self._status = InboundStatus.ACCEPTED if listening else InboundStatus.REFUSED
        self._randomBytes = randomBytes
        self.state = InboundState.CONNECTING
        self._keys = None
        self._link = None

    def start(self):
        if self.path.kind != PathKind.ENTRY:
            return self.fail("a setup block came back over an exit path")
        self._keys = recoveredKeys(self._keySets, self.block, BACKWARD, lambda plain: isEntryInitFor(plain, self.path.apAddress))
        if self._keys is None:
            return self.fail("an inbound tunnel request that does not check out")
        x0 = self.path.plan.adjacent
        return [OpenLink(Purpose.TUNNEL, x0, self.path.link.linkId)]

    def linkOpened(self, link):
        if self.state is not InboundState.CONNECTING:
            return super().linkOpened(link)
        self._link = self.hold(link)
        reply = SendFrame(link, openingOf(self.block, wrapForHops(self._keys, buildInboundReply(self._status, self._randomBytes))))
        if self._status != InboundStatus.ACCEPTED:
            # The entry node closes on reading the refusal, and the closing comes back.
            self.state = InboundState.REFUSED
            return [reply, Note("refused an inbound tunnel: nothing listens")]
        self.state = InboundState.AWAITING_DUMMY
        return [reply]

    def frameReceived(self, link, payload):
        if self.state is not InboundState.AWAITING_DUMMY or link is not self._link:
            return super().frameReceived(link, payload)
        try:
            requireBlock(payload)
        except ProtocolError as e:
            return self.fail(str(e))
        keys = self._keys
        layers = [StreamLayer(key, applyLayers(keys[: index + 1], self.block, BACKWARD)) for index, key in enumerate(keys)]
        return self.done(SendFrame(link, self._randomBytes(BLOCK_SIZE)), OwnTunnel(self.path, link, layers, False))

    def linkClosed(self, link):
        if self.state is InboundState.REFUSED:
            return self.done()
        return super().linkClosed(link)

    def timedOut(self):
        if self.state is InboundState.REFUSED:
            return self.done(CloseLink(self._link))
        return super().timedOut()

