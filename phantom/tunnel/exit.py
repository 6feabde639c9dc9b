"""
The exit node's part in an outbound tunnel, sans-io: answer the owner's block with an init
block on a tunnel link back, read the AP-address it replies with, reach that address's entry
node, and on its acceptance confirm to the owner and splice the two links.
"""

from enum import Enum

from twisted.logger import LogLevel

from phantom.address import formatAddress
from phantom.tunnel.common import EntryAsker, OpenLink, SendFrame, SpliceLinks, openingOf, requireBlock
from phantom.tunnel.keys import StreamLayer, backward, exitConfirmation
from phantom.tunnel.transport import plainAfter, plainBefore
from phantom.wire import ProtocolError
from phantom.wire.link import Purpose
from phantom.wire.tunnel import buildExitInit, parseOutboundReply


class ExitState(Enum):
    CONNECTING_BACK = "opening the tunnel link back"
    AWAITING_REPLY = "waiting for the owner's reply"


class ExitSetup(EntryAsker):
    """
    The exit node of C{path} got the owner's setup C{block} from C{side}, and answers it with
    C{key} (chosen from its key set). After the owner's reply it is an L{EntryAsker}, in its
    L{phantom.tunnel.common.ReachState}s.

    Events: C{start()}; C{linkOpened(link)}/C{linkFailed(why)} for the tunnel link back, then
    for the ENTRY link; C{frameReceived(link, payload)}: the owner's reply, the entry node's
    answer; C{routeFound(entry)}; C{linkClosed(link)}; C{timedOut()}; C{pathGone()}.
    """

    what = "an outbound tunnel at its exit node"

    def __init__(self, path, side, block, key, randomBytes):
        super().__init__(randomBytes)
        self.path = path
        self.side = side
        self.block = block
        self.key = key
        self.state = ExitState.CONNECTING_BACK
        self._back = None

    def start(self):
        return [OpenLink(Purpose.TUNNEL, self.path.contacts[self.side], self.path.linkIds[self.side])]

    def linkOpened(self, link):
        if self.state is not ExitState.CONNECTING_BACK:
            return super().linkOpened(link)
        self._back = self.hold(link)
        self.state = ExitState.AWAITING_REPLY
        return [SendFrame(link, openingOf(self.block, backward(self.key, buildExitInit(self._randomBytes))))]

    def frameReceived(self, link, payload):
        if self.state is not ExitState.AWAITING_REPLY or link is not self._back:
            return super().frameReceived(link, payload)
        try:
            apAddress = parseOutboundReply(backward(self.key, requireBlock(payload)))
        except ProtocolError as e:
            return self.fail(str(e))
        return self.askEntryNode(apAddress)

    def entryAccepted(self, link):
        layer = StreamLayer(self.key, self.block)
        return self.done(
            SendFrame(self._back, exitConfirmation(self.key, self.block)),
            SpliceLinks(self.path, self._back, link, plainAfter(layer.along), plainBefore(layer.against)),
        )

    def linkClosed(self, link):
        if link is self._back and not self.ended:
            # The owner giving up (closing) while the entry node is asked ends the asking too.
            why = "the owner gave up" if self.apAddress is None else f"the owner gave up while {formatAddress(self.apAddress)} was reached"
            return self.fail(why, LogLevel.info)
        return super().linkClosed(link)
