"""
A relay that tampers with tunnels, through the tunnel service's C{relaySetup} seam: its relay
machines rewrite the actions a faithful L{RelaySetup} returns.
"""

import os

from phantom.path.interfaces import PathKind
from phantom.tunnel.common import SendFrame, SpliceLinks
from phantom.tunnel.relay import RelaySetup
from phantom.wire.tunnel import BLOCK_SIZE
from tests.tunnel.helpers import flipBit


HOW = ("flip", "drop", "reorder", "inject", "replay", "rechunk")
"""The ways a relay tampers with a tunnel's data frames (L{Tampering.armFrames})."""


class Tampering:
    """
    One node's tampering, given to its tunnel service as C{relaySetup}: it plays by the rules
    until L{arm}ed, then over one path it relays flips one bit of what it sends at one step of
    a tunnel (a data frame: once, and in any way of L{HOW}, L{armFrames}).

    @ivar tampered: how many times it tampered since armed.
    """

    def __init__(self):
        self.target = self.kind = self.step = None
        self.bit = 0
        self.how = "flip"
        self.tampered = 0
        self.randomBytes = os.urandom
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
        self.how = "flip"
        self.tampered = 0

    def armNext(self, relayed, kind, direction, bit):
        """Tamper with the next frame the latest splice over C{relayed} sends in C{direction}."""
        self.arm(relayed, kind, (direction, 0), bit)
        self.step = (direction, self.spliceFrames[relayed][self.source(direction)])

    def armFrames(self, relayed, kind, direction, how, bit=0):
        """
        Tamper with the next data frame the latest splice over C{relayed} sends in C{direction},
        in one of L{HOW}: flip bit C{bit} of it, drop it, send it after the frame that follows
        it, send a random frame of its size before it, send it twice, or send it as two frames.
        """
        self.armNext(relayed, kind, direction, bit)
        self.how = how

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

    def converting(self, path, frames, source, convert, target):
        held = []

        def tampered(payload):
            converted = convert(payload)
            index = frames[source]
            frames[source] += 1
            if held and converted is not None:
                # Reordered: the held frame goes after the one that followed it.
                target.sendFrame(converted)
                return held.pop()
            if converted is not None and path is self.target and isinstance(self.step, tuple):
                direction, wanted = self.step
                if self.source(direction) == source and wanted == index:
                    self.step = None  # once: other splices over the path may be at the same frame
                    return self.tamperWith(converted, target, held)
            return converted

        return tampered

    def tamperWith(self, frame, target, held):
        """@return: what goes on instead of C{frame}, after sending any more frames to C{target}."""
        if self.how == "flip":
            return self.flip(frame)
        self.tampered += 1
        if self.how == "drop":
            return None
        if self.how == "reorder":
            held.append(frame)
            return None
        if self.how == "inject":
            target.sendFrame(self.randomBytes(len(frame)))
            return frame
        if self.how == "replay":
            target.sendFrame(frame)
            return frame
        if self.how == "rechunk":
            target.sendFrame(frame[: len(frame) // 2])
            return frame[len(frame) // 2 :]
        raise ValueError(f"no way of tampering called {self.how!r}")


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
                tampering.converting(self.path, frames, "a", action.aToB, action.b),
                tampering.converting(self.path, frames, "b", action.bToA, action.a),
            )
        return action
