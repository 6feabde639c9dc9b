"""
The entry node's part in a tunnel, sans-io: take an exit node's ENTRY link asking for an
AP-address, send an init block over the entry path towards its owner, and on the owner's tunnel
link pass its answer to the exit node, then splice the two links. A node that is its own entry
node answers for its own AP-address itself.
"""

from enum import Enum

from twisted.logger import LogLevel

from phantom.address import addressBytes, describePeer, formatAddress
from phantom.tunnel.common import (
    Machine,
    OwnTunnel,
    RefuseLink,
    SendFrame,
    SendOnPath,
    SpliceLinks,
    apAnswer,
    checkNeighbour,
    chooseKey,
    requireBlock,
)
from phantom.tunnel.keys import StreamLayer, backward, forward
from phantom.tunnel.transport import firstThen, plainAfter, plainBefore
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.tunnel import BLOCK_SIZE, ApRequest, InboundStatus, buildEntryInit, parseInboundReply


class EntryState(Enum):
    AWAITING_REQUEST = "waiting for the exit node's request"
    AWAITING_OWNER = "the init block went to the owner; waiting for its tunnel link"


class EntrySetup(Machine):
    """
    An ENTRY link, C{request}, at a node that may be the entry node asked for.

    @param ownApAddress: this node's AP-address if it is its own entry node, else C{None}.
    @param listening: C{listening()}: whether this node accepts tunnels to its own AP-address.
    @param entryPathFor: C{entryPathFor(apAddress)}: the path this node is the entry node of for
        it, or C{None} (L{phantom.path.service.PathService.entryPathFor}).
    @param keySetOf: C{keySetOf(path)}: the key set this node chooses from on C{path}.
    @param remembered: the node's L{phantom.tunnel.common.RememberedBlocks}.

    Events: C{start()}; C{frameReceived(link, payload)}: the request; C{tunnelLinkArrived(link,
    second)}: the owner's tunnel link; C{linkClosed(link)}; C{timedOut()}; C{pathGone()}.
    """

    def __init__(self, request, ownApAddress, listening, entryPathFor, keySetOf, remembered, random, randomBytes):
        super().__init__()
        self.request = self.hold(request)
        self.what = f"an entry request from {describePeer(request.peer)}"
        self._ownApAddress = ownApAddress
        self._listening = listening
        self._entryPathFor = entryPathFor
        self._keySetOf = keySetOf
        self._remembered = remembered
        self._random = random
        self._randomBytes = randomBytes
        self.state = EntryState.AWAITING_REQUEST
        self._apAddress = self._side = self._key = self._init = self._block = None

    def start(self):
        return []

    def frameReceived(self, link, payload):
        if self.state is not EntryState.AWAITING_REQUEST:
            return super().frameReceived(link, payload)
        try:
            apAddress = bytes(parseStrict(ApRequest, payload).ap_address)
        except ProtocolError as e:
            return self.fail(str(e))
        if self._ownApAddress is not None and apAddress == self._ownApAddress:
            return self._answerDirectly()
        path = self._entryPathFor(apAddress)
        if path is None:
            return [SendFrame(self.request, apAnswer(InboundStatus.REFUSED))] + self.fail(f"this node is no entry node of {formatAddress(apAddress)}")
        [side] = path.sides()
        self.path = path
        self._key = chooseKey(self._keySetOf(path), self._random)
        self._init = buildEntryInit(apAddress, addressBytes(self.request.peer.host), self._randomBytes)
        self._block = forward(self._key, self._init)
        self._side = side
        self._apAddress = apAddress
        if not self._remembered.remember(self._block, self, self.request.nodeId, path):
            return self.fail("too many tunnel setups pending")
        self.state = EntryState.AWAITING_OWNER
        return [SendOnPath(path, side, self._block)]

    def _answerDirectly(self):
        """A tunnel to this node's own AP-address, asked for by an exit node (or a direct client)."""
        if not self._listening():
            return [SendFrame(self.request, apAnswer(InboundStatus.REFUSED))] + self.fail("refused a direct tunnel: nothing listens", LogLevel.info)
        return self.done(SendFrame(self.request, apAnswer(InboundStatus.ACCEPTED)), OwnTunnel(None, self.request, [], False))

    def tunnelLinkArrived(self, link, second):
        self._remembered.forget(self._block)
        try:
            checkNeighbour(link, self.path.contacts[self._side], self.path.linkIds[self._side])
        except ProtocolError as e:
            return [RefuseLink(link, str(e))] + self.fail(str(e))
        self.hold(link)
        try:
            status = parseInboundReply(backward(self._key, second))
        except ProtocolError as e:
            return self.fail(str(e))
        answer = SendFrame(self.request, apAnswer(status))
        if status != InboundStatus.ACCEPTED:
            return [answer] + self.fail(f"the owner of {formatAddress(self._apAddress)} refused the tunnel")
        layer = StreamLayer(self._key, self._init)
        return self.done(
            answer,
            SendFrame(link, self._randomBytes(BLOCK_SIZE)),
            SpliceLinks(self.path, link, self.request, firstThen(lambda frame: requireBlock(frame) and None, plainAfter(layer.against)), plainBefore(layer.along)),
        )

    def fail(self, why, level=LogLevel.warn):
        if self._block is not None:
            self._remembered.forget(self._block)
        return super().fail(why, level)
