"""
A relay that tampers with a tunnel's data: flips a bit of a frame, drops one, reorders two,
injects one, replays one or cuts one in two, on either path, in either direction. Every time
the tunnel closes, and neither end's protocol gets a byte that was not sent, in order; the end
downstream of the relay gets nothing sent after the frame tampered with (nor that frame, but
for the genuine copy of a replayed one). On an in-memory
network, in milliseconds.
"""

import os
import random

from phantom.path.interfaces import PathKind
from phantom.wire.tunnel import CELL_SIZE
from tests.link.helpers import LogCollector
from tests.tunnel.helpers import Collector
from tests.tunnel.tampering import HOW
from tests.tunnel.test_network import NetworkTestCase, tamperingNetwork

EXIT, ENTRY = PathKind.EXIT, PathKind.ENTRY
PLACES = ((EXIT, "fromOwner"), (EXIT, "toOwner"), (ENTRY, "fromOwner"), (ENTRY, "toOwner"))
"""Where the middle X-node of a path tampers: its path, and the direction of the frames."""


def downstreamIsServer(kind, direction):
    """Whether the frames tampered with travel towards the server (else towards the client)."""
    return (kind == EXIT) == (direction == "fromOwner")


class TamperedDataTests(NetworkTestCase):
    def tampered(self, how):
        """
        Open a tunnel for each place in L{PLACES}, echo a first message, then have the middle
        X-node tamper C{how} with the next data frame, while two more messages go out.
        """
        LogCollector(self, "phantom")
        network, client, server, accepted, relays = tamperingNetwork(self)
        rng = random.Random(how)
        for kind, direction in PLACES:
            where = (how, kind, direction)
            tunnel = self.opened(network, client, server.apAddress)
            collector = Collector()
            tunnel.start(collector)
            sent = [os.urandom(1000) for _ in range(3)]
            tunnel.write(sent[0])
            network.settle()
            self.assertEqual(bytes(collector.received), sent[0], where)
            serverTunnel, recorder = accepted[-1]
            node, relayed = relays[kind]
            node.tampering.armFrames(relayed, kind, direction, how, rng.randrange(8 * 1000))
            for message in sent[1:]:
                tunnel.write(message)
                network.settle()
            everything = b"".join(sent)
            self.assertEqual(node.tampering.tampered, 1, where)
            self.assertTrue(everything.startswith(bytes(recorder.received)), where)
            self.assertTrue(everything.startswith(bytes(collector.received)), where)
            downstream = recorder if downstreamIsServer(kind, direction) else collector
            # A replayed frame is the genuine one first, then its copy.
            self.assertEqual(bytes(downstream.received), b"".join(sent[: 2 if how == "replay" else 1]), where)
            self.assertTrue(collector.ended.called, where)
            self.assertTrue(recorder.ended.called, where)
            node.tampering.disarm()
            network.settle()
            self.assertClean(network, remembered=False)
        self.echoIntact(network, client, server, accepted)

    def test_flip(self):
        """A bit flipped."""
        self.tampered("flip")

    def test_drop(self):
        """A frame dropped."""
        self.tampered("drop")

    def test_reorder(self):
        """A frame sent after the one that followed it."""
        self.tampered("reorder")

    def test_inject(self):
        """A random frame of the same size sent before one."""
        self.tampered("inject")

    def test_replay(self):
        """A frame sent twice."""
        self.tampered("replay")

    def test_rechunk(self):
        """A frame sent as two."""
        self.tampered("rechunk")

    def test_everyWay(self):
        """Every way L{Tampering} knows has its test here."""
        for how in HOW:
            self.assertTrue(hasattr(self, f"test_{how}"), how)

    def test_otherTunnelsUndisturbed(self):
        """
        Two tunnels over the same paths; the middle X-node of the exit path cuts a cell of the
        second in two. The exit node, the next hop, closes that tunnel, logging why; the first
        still echoes.
        """
        logs = LogCollector(self, "phantom")
        network, client, server, accepted, relays = tamperingNetwork(self)
        first, firstCollector, _, _ = self.openEcho(network, client, server, accepted, 1000)
        second, secondCollector, _, _ = self.openEcho(network, client, server, accepted, 1000)
        node, relayed = relays[EXIT]
        node.tampering.armFrames(relayed, EXIT, "fromOwner", "rechunk")
        second.write(os.urandom(1000))
        network.settle()
        self.assertEqual(node.tampering.tampered, 1)
        self.assertTrue(secondCollector.ended.called)
        self.assertTrue(logs.having("tunnel closed", f"where a {CELL_SIZE}-byte cell was due"), logs.lines)
        message = os.urandom(3000)
        first.write(message)
        network.settle()
        self.assertEqual(bytes(firstCollector.received)[1000:], message)
        self.assertFalse(firstCollector.ended.called)
