"""
A relay that tampers with tunnels, through the tunnel service's C{relaySetup} seam: its relay
machines rewrite the actions a faithful L{RelaySetup} returns.
"""

from phantom.path.interfaces import PathKind
from phantom.tunnel.common import SendFrame, SpliceLinks
from phantom.tunnel.relay import RelaySetup
from phantom.wire.tunnel import BLOCK_SIZE
from tests.tunnel.helpers import flipBit


class Tampering:
    """
    One node's tampering, given to its tunnel service as C{relaySetup}: it plays by the rules
    until L{arm}ed, then over one path it relays flips one bit of what it sends at one step of
    each tunnel.

    @ivar tampered: how many times it flipped a bit since armed.
    """

    def __init__(self):
        self.target = self.kind = self.step = None
        self.bit = 0
        self.tampered = 0
        self.spliceFrames = {}
        """The frame counts of the latest splice over each relayed path, by source end."""

    def __call__(self, path, cameFrom, towards, key, block):
        return TamperingRelaySetup(self, path, cameFrom, towards, key, block)

    def arm(self, relayed, kind, step, bit):
        """
        Tamper with the tunnels over C{relayed}, an X-node's place in a C{kind} (a
        L{PathKind}) path, at C{step}:

            - C{"opening"}: the second block of the tunnel opening it sends on (an exit path's
              init block on its way to the owner; the owner's reply on its way to an entry node);
            - C{"setup block"}: the setup block it passes on along the path (and remembers so);
            - C{(direction, n)}: frame C{n} its splice sends C{"toOwner"} or C{"fromOwner"}
              (the path's owner); frame 0 is a setup block, later frames stream data.
        """
        self.target, self.kind, self.step, self.bit = relayed, kind, step, bit
        self.tampered = 0

    def armNext(self, relayed, kind, direction, bit):
        """Tamper with the next frame the latest splice over C{relayed} sends in C{direction}."""
        self.arm(relayed, kind, (direction, 0), bit)
        self.step = (direction, self.spliceFrames[relayed][self.source(direction)])

    def disarm(self):
        self.target = None

    def armed(self, path, step):
        return path is self.target and self.step == step

    def flip(self, data):
        self.tampered += 1
        return flipBit(data, self.bit)

    def source(self, direction):
        """
        The end of a relay's splice that frames going C{direction} come from: C{a} is the link
        from the side the setup block went to, away from an exit path's owner, towards an entry
        path's.
        """
        return "a" if (direction == "toOwner") == (self.kind == PathKind.EXIT) else "b"

    def converting(self, path, frames, source, convert):
        def tampered(payload):
            converted = convert(payload)
            index = frames[source]
            frames[source] += 1
            if converted is not None and path is self.target and isinstance(self.step, tuple):
                direction, wanted = self.step
                if self.source(direction) == source and wanted == index:
                    converted = self.flip(converted)
            return converted

        return tampered


class TamperingRelaySetup(RelaySetup):
    """A relay machine whose actions its L{Tampering} rewrites."""

    def __init__(self, tampering, path, cameFrom, towards, key, block):
        super().__init__(path, cameFrom, towards, key, block)
        self._tampering = tampering
        if tampering.armed(path, "setup block"):
            # Passed on flipped, and remembered so: the tunnel link comes back naming it.
            self.passed = tampering.flip(self.passed)

    def linkOpened(self, link):
        return [self._tamper(action) for action in super().linkOpened(link)]

    def _tamper(self, action):
        tampering = self._tampering
        if isinstance(action, SendFrame) and tampering.armed(self.path, "opening"):
            return SendFrame(action.link, action.payload[:BLOCK_SIZE] + tampering.flip(action.payload[BLOCK_SIZE:]))
        if isinstance(action, SpliceLinks):
            frames = tampering.spliceFrames[self.path] = {"a": 0, "b": 0}
            return SpliceLinks(
                action.path, action.a, action.b,
                tampering.converting(self.path, frames, "a", action.aToB), tampering.converting(self.path, frames, "b", action.bToA),
            )
        return action
