"""
Relays that tamper with tunnels, and nodes that send tunnel links and entry links garbage.

A relay that flips one bit of an init block, a reply, or the blocks a setup exchanges makes the
setup fail cleanly, or (for blocks that carry nothing but randomness) changes nothing: no owner
ever gets a tunnel that delivers other bytes than were sent. A bit flipped in stream data does
reach the far end of a raw tunnel (CTR has no integrity); end-to-end TLS turns it, and a setup
block flipped on an exit path, into a closed connection. Bad TUNNEL and ENTRY links are closed
with a logged reason, and tunnels already open carry on.
"""

import os
import random

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from phantom.errors import TunnelFailed
from phantom.path.interfaces import Side
from phantom.tunnel.common import chooseKey
from phantom.tunnel.endpoint import EndToEnd, TunnelClientEndpoint, TunnelServerEndpoint
from phantom.tunnel.relay import RelaySetup
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import BLOCK_SIZE, ApAnswer, ApRequest, InboundStatus, TunnelOpening
from tests.link.helpers import CollectingHandler, until
from tests.tunnel.helpers import Collector, LogLines, Recorder, flipBit, hopNode, openEcho, relayedOn, startClientAndServer, untilClean

BITS = (0, 200, 8 * BLOCK_SIZE - 1)
"""Bits flipped in a setup block: in its first, second and last AES block."""
DATA_BIT = 8 * 20 + 3
"""The bit flipped in a data frame: inside the first TLS record's ciphertext."""


async def tunnelNetwork(testCase, base):
    """
    A network of tampering (but unarmed) nodes, a server with an entry path that echoes, and a
    client with an exit path; the middle X-node of each path is ready to tamper.

    @return: C{(nodes, client, server, accepted, relays)}: C{accepted} as for C{acceptInto};
        C{relays["exit"]} and C{relays["entry"]} the C{(node, relayed)} of the middle X-node of
        that path (its L{tests.tunnel.tampering.Tampering} is C{node.tampering}).
    """
    nodes, client, server, entryPath, exitPath, accepted = await startClientAndServer(testCase, 16, base, 3, 12, tampering=True)
    relays = {}
    for kind, owner, path in (("exit", client, exitPath), ("entry", server, entryPath)):
        node = hopNode(nodes, path, 1)
        await until(lambda: relayedOn(node, owner, path, 1) is not None)
        relays[kind] = (node, relayedOn(node, owner, path, 1))
    return nodes, client, server, accepted, relays


async def echoIntact(testCase, client, server, accepted):
    """Open a tunnel, see a message come back intact from the server's echo, and close it."""
    tunnel, _, _, recorder = await openEcho(testCase, client, server, accepted, 1000)
    tunnel.loseConnection()
    await until(lambda: recorder.ended.called)


class TamperingTests(TestCase):
    timeout = 120

    async def test_tamperedSetupBlocks(self):
        """
        One relay flips one bit (in each of a setup block's three AES blocks in turn) of: the
        exit node's init block on its way to the owner, the owner's reply to the exit node, the
        owner's reply to its entry node, an entry node's init block on its way to the owner.
        Each time the open fails with L{TunnelFailed}, the node that notices logs why, the
        server accepts nothing, and nothing of the setup stays behind. Flipping a bit of the
        blocks that only carry randomness (the exit node's success block, the dummy blocks of
        an inbound setup) delivers no wrong byte either: the tunnel echoes intact, or fails.
        """
        logs = LogLines(self)
        nodes, client, server, accepted, relays = await tunnelNetwork(self, 880)
        for node in nodes:
            node.tunnels.setupTimeout = 4.0

        async def refused(kind, step, bits, why, noticed):
            node, relayed = relays[kind]
            for bit in bits:
                node.tampering.arm(relayed, kind, step, bit)
                failure = await self.assertFailure(client.tunnels.open(server.apAddress), TunnelFailed)
                self.assertEqual(node.tampering.tampered, 1, (kind, step, bit))
                self.assertIn(why, str(failure))
                await untilClean(nodes, remembered=False)
                self.assertEqual(accepted, [])
                if noticed:
                    self.assertTrue(logs.having(*noticed), (kind, step, bit, noticed))
                del logs.lines[:]
            node.tampering.disarm()

        # The exit node's init block, on its way back to the client.
        await refused("exit", "opening", BITS, "init block does not check out", ())
        # The client's reply, on its way to the exit node, which closes.
        await refused("exit", ("fromOwner", 0), BITS, "no tunnel to", ["exit node failed", "malformed outbound reply block"])
        # The server's reply, on its way to its entry node, which closes.
        await refused("entry", "opening", BITS, "no tunnel to", ["an entry request", "malformed inbound reply block"])
        # The entry node's init block, on its way to the server, which stays silent; the
        # client's exit node hears nothing, and the client gives up.
        await refused("entry", "setup block", BITS[:1], "no tunnel to", ["an inbound tunnel failed", "does not check out"])

        # The blocks that carry nothing but randomness: the exit node's success block, the
        # dummy blocks of an inbound setup. The tunnel opens and echoes intact, or (should the
        # protocol come to check them) the open fails and the server's side got nothing.
        for kind, step in (("exit", ("toOwner", 0)), ("entry", ("toOwner", 0)), ("entry", ("fromOwner", 0))):
            node, relayed = relays[kind]
            node.tampering.arm(relayed, kind, step, BITS[1])
            before = len(accepted)
            try:
                await echoIntact(self, client, server, accepted)
            except TunnelFailed:
                self.assertEqual([bytes(recorder.received) for _, recorder in accepted[before:]], [b""] * (len(accepted) - before))
            self.assertEqual(node.tampering.tampered, 1, (kind, step))
            node.tampering.disarm()
            await untilClean(nodes, remembered=False)
        await echoIntact(self, client, server, accepted)
        await untilClean(nodes, remembered=False)

    async def test_tamperedDataOverEndToEndTLS(self):
        """
        A relay that flips a bit of stream data: over a raw tunnel, the far end gets the bit
        flipped (the tampering works, and CTR cannot notice it). Over end-to-end TLS, whether
        the bit is flipped on the way to the server or back, or in the setup block the exit
        path passes on (so that the layers of the hops after the relay do not match the
        client's), the connection fails or closes, and neither application gets a byte other
        than was sent. Then an untampered connection echoes.
        """
        nodes, client, server, accepted, relays = await tunnelNetwork(self, 900)
        exitNode, exitRelayed = relays["exit"]
        entryNode, entryRelayed = relays["entry"]

        tunnel = await client.tunnels.open(server.apAddress)
        collector = Collector()
        tunnel.start(collector)
        tunnel.write(b"first")
        await until(lambda: accepted and bytes(accepted[0][1].received) == b"first")
        exitNode.tampering.armNext(exitRelayed, "exit", "fromOwner", DATA_BIT)
        message = os.urandom(1000)
        tunnel.write(message)
        await until(lambda: len(accepted[0][1].received) == 5 + len(message))
        self.assertEqual(exitNode.tampering.tampered, 1)
        self.assertEqual(bytes(accepted[0][1].received[5:]), flipBit(message, DATA_BIT))
        exitNode.tampering.disarm()
        tunnel.loseConnection()
        await untilClean(nodes)

        for node in (client, server):
            node.endToEnd = EndToEnd(node.identity.routingKey)
        served = []

        class Served(Recorder):
            def connectionMade(self):
                served.append(self)

        await TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(Factory.forProtocol(Served))
        endpoint = TunnelClientEndpoint(client.tunnels, client.endToEnd, server.apAddress)

        # A bit of the client's message, on the client's exit path; of the echo, on the server's
        # entry path.
        for node, relayed, kind, direction in ((exitNode, exitRelayed, "exit", "fromOwner"), (entryNode, entryRelayed, "entry", "fromOwner")):
            message = os.urandom(3000)
            collector = await endpoint.connect(Factory.forProtocol(lambda: Collector(len(message))))
            node.tampering.armNext(relayed, kind, direction, DATA_BIT)
            collector.transport.write(message)
            await until(lambda: collector.ended.called and served[-1].ended.called)
            self.assertEqual(node.tampering.tampered, 1, kind)
            self.assertTrue(message.startswith(bytes(served[-1].received)), kind)
            self.assertTrue(message.startswith(bytes(collector.received)), kind)
            self.assertNotEqual(bytes(collector.received), message, kind)
            node.tampering.disarm()
            await untilClean(nodes)

        exitNode.tampering.arm(exitRelayed, "exit", "setup block", BITS[1])
        before = len(served)
        connecting = endpoint.connect(Factory.forProtocol(Collector))
        await self.assertFailure(connecting, ConnectionRefusedError, TunnelFailed)
        self.assertEqual(exitNode.tampering.tampered, 1)
        exitNode.tampering.disarm()
        await untilClean(nodes)
        await until(lambda: all(application.ended.called for application in served))
        self.assertEqual([bytes(application.received) for application in served[before:]], [b""] * (len(served) - before))

        message = os.urandom(3000)
        collector = await endpoint.connect(Factory.forProtocol(lambda: Collector(len(message))))
        collector.transport.write(message)
        self.assertEqual(await collector.arrived, message)
        collector.transport.loseConnection()
        await until(lambda: served[-1].ended.called)
        await untilClean(nodes)

    async def test_setupBlockFlippedOnAnExitPath(self):
        """
        A relay of an exit path flips a bit of the setup block it passes on, and remembers the
        block so: the tunnel links come back as they should, but the hops after it derive their
        stream layers from another block than the client does. The open must fail, or the
        tunnel deliver nothing but the bytes sent.
        """
        nodes, client, server, accepted, relays = await tunnelNetwork(self, 980)
        node, relayed = relays["exit"]
        node.tampering.arm(relayed, "exit", "setup block", BITS[1])
        try:
            tunnel = await client.tunnels.open(server.apAddress)
        except TunnelFailed:
            tunnel = None
        self.assertEqual(node.tampering.tampered, 1)
        if tunnel is not None:
            message = os.urandom(1000)
            tunnel.start(Collector())
            tunnel.write(message)
            try:
                await until(lambda: accepted and len(accepted[0][1].received) >= len(message), timeout=3.0)
            except AssertionError:
                pass
            for _, recorder in accepted:
                self.assertTrue(message.startswith(bytes(recorder.received)), "the server got other bytes than were sent")
            tunnel.loseConnection()
        await untilClean(nodes, remembered=False)


async def rawLink(sender, target, purpose, linkId=None):
    """
    A link from node C{sender} to node C{target} for C{purpose}, as any node may open one.

    @return: C{(link, handler, port)}: the link, a L{CollectingHandler} of what comes back, and
        the sender's port, by which the target's log names the sender.
    """
    linkId = linkId or os.urandom(LINK_ID_SIZE)
    link = await sender.links.connect(target.address[0], target.address[1], purpose, linkId, target.nodeId)
    handler = CollectingHandler(link)
    link.attach(handler)
    return link, handler, link.transport.getHost().port


class BadInputTests(TestCase):
    timeout = 120

    async def test_badTunnelAndEntryLinks(self):
        """
        TUNNEL links whose first frame names no setup, is the wrong size, or names a setup but
        comes from another node than the one the block went to; ENTRY links asking an entry node
        for an AP-address it does not serve, sending it garbage, or asking a node that is no
        entry node: each is closed, with a warning naming the sender and the reason (a node that
        is no entry node just refuses: an entry link may follow a stale routing entry). A tunnel
        open all the while carries on, the paths stay up, and new tunnels open.
        """
        logs = LogLines(self)
        nodes, client, server, entryPath, exitPath, accepted = await startClientAndServer(self, 14, 920, 2, 10)
        tunnel = await client.tunnels.open(server.apAddress)
        collector = Collector()
        tunnel.start(collector)
        tunnel.write(b"before")
        await until(lambda: bytes(collector.received) == b"before")

        relay = hopNode(nodes, exitPath, 1)
        relayed = relayedOn(relay, client, exitPath, 1)
        entryNode = hopNode(nodes, entryPath, -1)
        notEntry = next(node for node in nodes if not any(path.routingEntry for path in node.paths.relaying.values()) and node is not relay)
        sender = next(node for node in nodes if node not in (client, server, relay, entryNode, notEntry))

        async def refused(target, purpose, frame, *why, level="warn", answer=None):
            link, handler, port = await rawLink(sender, target, purpose)
            if frame is not None:
                link.sendFrame(frame)
            await until(lambda: handler.closed.called)
            self.assertEqual(handler.frames, [answer] if answer else [])
            await until(lambda: logs.having(f":{port}", *why, level=level))

        block = os.urandom(BLOCK_SIZE)
        await refused(relay, Purpose.TUNNEL, TunnelOpening.build({"first": block, "second": block}), "a tunnel link from", "names no tunnel setup")
        await refused(relay, Purpose.TUNNEL, block, "a tunnel link from", "malformed tunnel opening")
        await refused(relay, Purpose.TUNNEL, os.urandom(2 * BLOCK_SIZE + 1), "a tunnel link from", "malformed tunnel opening")
        # A block the relay did pass on (towards T), named on a link from another node.
        passedOn = RelaySetup(relayed, Side.PREVIOUS, Side.NEXT, chooseKey(relay.tunnels.keySets.ofRelayed(relayed), random.Random(1)), block)
        self.assertTrue(relay.tunnels.remembered.remember(passedOn.passed, passedOn))
        await refused(relay, Purpose.TUNNEL, TunnelOpening.build({"first": passedOn.passed, "second": block}), "a tunnel link from", "not from the neighbour")
        self.assertNotIn(passedOn.passed, relay.tunnels.remembered)

        stranger = bytes.fromhex("fd") + os.urandom(15)
        refusal = ApAnswer.build({"status": InboundStatus.REFUSED})
        await refused(entryNode, Purpose.ENTRY, ApRequest.build({"ap_address": stranger}), "an entry request from", "no entry node of fd", answer=refusal)
        await refused(entryNode, Purpose.ENTRY, b"\x00" * 5, "an entry request from", "malformed AP request")
        await refused(notEntry, Purpose.ENTRY, ApRequest.build({"ap_address": server.apAddress}), "refused an entry link from", "no entry node", level="info")

        tunnel.write(b" and after")
        await until(lambda: bytes(collector.received) == b"before and after")
        self.assertEqual(bytes(accepted[0][1].received), b"before and after")
        self.assertIn(exitPath, client.paths.paths)
        self.assertIn(entryPath, server.paths.paths)
        await echoIntact(self, client, server, accepted)
        tunnel.loseConnection()
        await untilClean(nodes)

    async def test_wrongSizeOnPathLink(self):
        """
        A frame on a PATH link that is not one setup block closes that path at the X-node that
        got it, with a warning; the owner replaces the path, and other paths and new tunnels
        are not disturbed.
        """
        logs = LogLines(self)
        nodes, client, server, entryPath, exitPath, accepted = await startClientAndServer(self, 12, 1040, 2, 8)
        x0 = hopNode(nodes, exitPath, 0)
        await until(lambda: relayedOn(x0, client, exitPath, 0) is not None)
        seed = exitPath.keySeeds[x0.nodeId]
        exitPath.link.sendFrame(b"x" * (BLOCK_SIZE - 1))
        await until(lambda: not any(relayed.keySeed == seed for relayed in x0.paths.relaying.values()))
        self.assertTrue(logs.having("closing a path", f"a frame of {BLOCK_SIZE - 1} bytes"))
        self.assertIn(entryPath, server.paths.paths)
        await until(lambda: any(path.kind == "exit" for path in client.paths.paths))
        await echoIntact(self, client, server, accepted)
