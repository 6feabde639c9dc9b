"""
An X-node's part in one tunnel, sans-io: pass the setup block on along the path, then splice
the tunnel link that comes back from the side the block went to with one it opens back towards
the side the block came from.
"""

from enum import Enum

from phantom.tunnel.common import Machine, OpenLink, RefuseLink, SendFrame, SendOnPath, SpliceLinks, checkNeighbour, openingOf, requireBlock
from phantom.tunnel.keys import StreamLayer, backward, forward
from phantom.tunnel.transport import firstThen
from phantom.wire import ProtocolError
from phantom.wire.link import Purpose


class RelayState(Enum):
    PASSED_ON = "the block went on; waiting for its tunnel link"
    CONNECTING_BACK = "opening the tunnel link back"


class RelaySetup(Machine):
    """
    One setup block an X-node passes on over C{path}, from side C{cameFrom} to side C{towards}
    (L{phantom.path.interfaces.Side}s), transformed with C{key}.

    Events: C{start()}; C{tunnelLinkArrived(link, second)}, the tunnel link naming L{passed}
    and the second block of its opening; C{linkOpened(link)}/C{linkFailed(why)} for the link
    back; C{linkClosed(link)}; C{pathGone()}.
    """

    what = "a relayed tunnel"
    waits = False

    def __init__(self, path, cameFrom, towards, key, block):
        super().__init__()
        self.path = path
        self.cameFrom = cameFrom
        self.towards = towards
        self.key = key
        self.block = block
        self.passed = forward(key, block)
        """The block as passed on: the tunnel link must name it."""
        self.state = RelayState.PASSED_ON
        self._second = None
        self._incoming = None

    def start(self):
        return [SendOnPath(self.path, self.towards, self.passed)]

    def tunnelLinkArrived(self, link, second):
        try:
            checkNeighbour(link, self.path.contacts[self.towards], self.path.linkIds[self.towards])
        except ProtocolError as e:
            self.fail(str(e))
            return [RefuseLink(link, str(e))]
        self._incoming = self.hold(link)
        self._second = backward(self.key, second)
        self.state = RelayState.CONNECTING_BACK
        self.waits = True
        return [OpenLink(Purpose.TUNNEL, self.path.contacts[self.cameFrom], self.path.linkIds[self.cameFrom])]

    def linkOpened(self, link):
        if self.state is not RelayState.CONNECTING_BACK:
            return super().linkOpened(link)
        layer = StreamLayer(self.key, self.block)

        def firstBlockBack(frame):
            return backward(self.key, requireBlock(frame))

        return self.done(
            SendFrame(link, openingOf(self.block, self._second)),
            SpliceLinks(self.path, self._incoming, link, firstThen(firstBlockBack, layer.against), firstThen(firstBlockBack, layer.along)),
        )
