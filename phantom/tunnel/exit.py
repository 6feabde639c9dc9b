"""
The exit node's part in an outbound tunnel, sans-io: answer the owner's block with an init
block on a tunnel link back, read the AP-address it replies with, reach that address's entry
node, and on its acceptance confirm to the owner and splice the two links.
"""

from enum import Enum

from twisted.logger import LogLevel

from phantom.address import formatAddress
from phantom.tunnel.common import EntryReach, Machine, OpenLink, SendFrame, SpliceLinks, openingOf, requireBlock
from phantom.tunnel.keys import StreamLayer, backward, exitConfirmation
from phantom.wire import ProtocolError
from phantom.wire.link import Purpose
from phantom.wire.tunnel import buildExitInit, parseOutboundReply


class ExitState(Enum):
    CONNECTING_BACK = "opening the tunnel link back"
    AWAITING_REPLY = "waiting for the owner's reply"
    LOOKING_UP = "looking up the routing entry"
    REACHING_ENTRY = "opening an ENTRY link"
    AWAITING_ANSWER = "waiting for the entry node's answer"


class ExitSetup(Machine):
    """
    The exit node of C{path} got the owner's setup C{block} from C{side}, and answers it with
    C{key} (chosen from its key set).

    Events: C{start()}; C{linkOpened(link)}/C{linkFailed(why)} for the tunnel link back, then
    for the ENTRY link; C{frameReceived(link, payload)}: the owner's reply, the entry node's
    answer; C{routeFound(entry)}; C{linkClosed(link)}; C{timedOut()}; C{pathGone()}.
    """

    what = "an outbound tunnel at its exit node"

    def __init__(self, path, side, block, key, randomBytes):
        super().__init__()
        self.path = path
        self.side = side
        self.block = block
        self.key = key
        self._randomBytes = randomBytes
        self.state = ExitState.CONNECTING_BACK
        self._back = None
        self._reach = None

    def start(self):
        return [OpenLink(Purpose.TUNNEL, self.path.contacts[self.side], self.path.linkIds[self.side])]

    def linkOpened(self, link):
        if self.state is ExitState.CONNECTING_BACK:
            self._back = self.hold(link)
            self.state = ExitState.AWAITING_REPLY
            return [SendFrame(link, openingOf(self.block, backward(self.key, buildExitInit(self._randomBytes))))]
        if self.state is ExitState.REACHING_ENTRY:
            self.hold(link)
            self.state = ExitState.AWAITING_ANSWER
            return [self._reach.linkOpened(link)]
        return super().linkOpened(link)

    def linkFailed(self, why):
        if self.state is ExitState.REACHING_ENTRY:
            try:
                return [self._reach.tryNext(why)]
            except ValueError as e:
                return self.fail(str(e))
        return super().linkFailed(why)

    def frameReceived(self, link, payload):
        try:
            if self.state is ExitState.AWAITING_REPLY and link is self._back:
                apAddress = parseOutboundReply(backward(self.key, requireBlock(payload)))
                self._reach = EntryReach(apAddress, self._randomBytes)
                self.state = ExitState.LOOKING_UP
                return [self._reach.lookUp()]
            if self.state is ExitState.AWAITING_ANSWER and link is self._reach.link:
                refusal = self._reach.refusal(payload)
                if refusal is not None:
                    return self.fail(refusal)
                layer = StreamLayer(self.key, self.block)
                return self.done(
                    SendFrame(self._back, exitConfirmation(self.key, self.block)),
                    SpliceLinks(self.path, self._back, link, layer.along, layer.against),
                )
        except ProtocolError as e:
            return self.fail(str(e))
        return super().frameReceived(link, payload)

    def routeFound(self, entry):
        if self.state is not ExitState.LOOKING_UP:
            return []
        self.state = ExitState.REACHING_ENTRY
        try:
            return [self._reach.routeFound(entry)]
        except ValueError as e:
            return self.fail(str(e))

    def linkClosed(self, link):
        if link is self._back and not self.ended:
            # The owner giving up (closing) while the entry node is asked ends the asking too.
            why = "the owner gave up" if self._reach is None else f"the owner gave up while {formatAddress(self._reach.apAddress)} was reached"
            return self.fail(why, LogLevel.info)
        return super().linkClosed(link)
