"""
Tunnel services on an in-memory network driven by a clock: whole tunnels across an exit path
and an entry path, their ends and teardown, non-anonymised participation, setups that fail,
relays that tamper, and bad input; in milliseconds.
"""

import gc
import os
import random
import weakref
from collections import Counter

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from phantom.errors import TunnelFailed
from phantom.netdb.records import routeKey
from phantom.path.interfaces import PathKind, Side
from phantom.tunnel import common, entry, exit, keys, owner, relay, service
from phantom.tunnel.common import chooseKey
from phantom.tunnel.endpoint import TunnelClientEndpoint, TunnelServerEndpoint
from phantom.tunnel.keys import StreamLayer
from phantom.tunnel.relay import RelaySetup
from phantom.tunnel.transport import OwnerTunnel, TunnelAddress
from phantom.wire.dht import Table
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import BLOCK_SIZE, ApAnswer, ApRequest, InboundStatus, TunnelOpening
from tests.link.helpers import CollectingHandler, LogCollector
from tests.tunnel.helpers import Collector, Echo, acceptInto
from tests.tunnel.memory import MemoryTunnelNetwork

EXIT, ENTRY = PathKind.EXIT, PathKind.ENTRY
BITS = (0, 200, 8 * BLOCK_SIZE - 1)
"""Bits flipped in a setup block: in its first, second and last AES block."""


def clientAndServer(testCase, count=10, **every):
    """
    A network in which node 0, the server, has an entry path through nodes 2-4 and echoes each
    tunnel it accepts, and node 1, the client, has an exit path through nodes 5-7.

    @return: C{(network, client, server, entryPath, exitPath, accepted)}; C{accepted} as for
        L{acceptInto}.
    """
    network = MemoryTunnelNetwork(testCase, count, **every)
    server, client = network.nodes[:2]
    entryPath = network.buildPath(server, ENTRY, network.nodes[2:5])
    exitPath = network.buildPath(client, EXIT, network.nodes[5:8])
    accepted = []
    acceptInto(server, accepted)
    return network, client, server, entryPath, exitPath, accepted


def lookUpsNeverEnd(network):
    """Every node's look-ups in the network database from now on: never answered."""
    for node in network.nodes:
        node.dht.findRecord = lambda table, key: Deferred()


class NetworkTestCase(SynchronousTestCase):
    def opened(self, network, client, apAddress):
        """The tunnel C{client} opens to C{apAddress}."""
        d = client.tunnels.open(apAddress)
        network.settle()
        return self.successResultOf(d)

    def openEcho(self, network, client, server, accepted, size=5000):
        """
        Open a tunnel from C{client} to C{server} and see C{size} random bytes come back intact,
        having reached the server once.

        @return: C{(tunnel, collector, serverTunnel, recorder)}.
        """
        before = len(accepted)
        tunnel = self.opened(network, client, server.apAddress)
        message = os.urandom(size)
        collector = Collector(len(message))
        tunnel.start(collector)
        tunnel.write(message)
        network.settle()
        self.assertEqual(bytes(collector.received), message)
        self.assertEqual(len(accepted), before + 1)
        serverTunnel, recorder = accepted[-1]
        self.assertEqual(bytes(recorder.received), message)
        return tunnel, collector, serverTunnel, recorder

    def echoIntact(self, network, client, server, accepted):
        """Open a tunnel, see a message come back intact from the server's echo, and close it."""
        tunnel, _, _, recorder = self.openEcho(network, client, server, accepted, 1000)
        tunnel.loseConnection()
        network.settle()
        self.assertTrue(recorder.ended.called)

    def assertClean(self, network, remembered=True):
        self.assertEqual(network.leftovers(remembered), [])

    def endToEndEcho(self, network, client, server, size=20_000):
        """
        An end-to-end TLS tunnel from C{client} to C{server}'s AP-address, an echo through it,
        and its close.

        @return: whether the echo came back intact, and the peer the server's side saw.
        """
        factory = Factory.forProtocol(Echo)
        made = []
        factory.buildProtocol = lambda addr, build=factory.buildProtocol: made.append(build(addr)) or made[-1]
        port = self.successResultOf(TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(factory))
        payload = os.urandom(size)
        connecting = TunnelClientEndpoint(client.tunnels, server.apAddress).connect(Factory.forProtocol(lambda: Collector(len(payload))))
        network.settle()
        collector = self.successResultOf(connecting)
        collector.transport.write(payload)
        network.settle()
        [echo] = made
        peer = echo.transport.getPeer()
        collector.transport.loseConnection()
        network.settle()
        self.assertTrue(collector.ended.called)
        port.stopListening()
        return bytes(collector.received) == payload, peer


class TunnelTests(NetworkTestCase):
    def test_closeFromEitherEnd(self):
        """
        The client closes a tunnel: the server's protocol loses its connection, cleanly, and no
        node keeps anything of the tunnel. Then the server closes another: the same at the
        client. Both paths stay up and carry a third tunnel.
        """
        network, client, server, entryPath, exitPath, accepted = clientAndServer(self)
        tunnel, collector, serverTunnel, recorder = self.openEcho(network, client, server, accepted)
        tunnel.loseConnection()
        network.settle()
        self.assertTrue(collector.reason.check(ConnectionDone))
        self.assertTrue(recorder.lost.check(ConnectionDone))
        self.assertFalse(serverTunnel.connected)
        self.assertClean(network)

        tunnel, collector, serverTunnel, recorder = self.openEcho(network, client, server, accepted)
        serverTunnel.loseConnection()
        network.settle()
        self.assertTrue(collector.reason.check(ConnectionDone))
        self.assertTrue(recorder.lost.check(ConnectionDone))
        self.assertFalse(tunnel.connected)
        self.assertClean(network)

        self.assertEqual(client.paths.paths, [exitPath])
        self.assertEqual(server.paths.paths, [entryPath])
        for path, hops in ((entryPath, network.nodes[2:5]), (exitPath, network.nodes[5:8])):
            for hop in hops:
                self.assertFalse(network.relayedOn(hop, path).gone)
        self.openEcho(network, client, server, accepted)
        self.assertEqual(len(accepted), 3)

    def test_pathGoneClosesItsTunnels(self):
        """
        A hop of the client's exit path takes the path down with a tunnel open across it: both
        ends' protocols lose their connections, and no node keeps anything of the tunnel.
        """
        network, client, server, entryPath, exitPath, accepted = clientAndServer(self)
        tunnel, collector, serverTunnel, recorder = self.openEcho(network, client, server, accepted)
        self.assertTrue(network.nodes[6].tunnels.carried)
        network.relayedOn(network.nodes[6], exitPath).close()
        network.settle()
        self.assertTrue(collector.ended.called)
        self.assertTrue(recorder.ended.called)
        self.assertFalse(tunnel.connected)
        self.assertFalse(serverTunnel.connected)
        self.assertTrue(exitPath.gone)
        self.assertEqual(server.paths.paths, [entryPath])
        self.assertClean(network)

    def test_idleTunnelsExpire(self):
        """A tunnel nothing has passed through for the idle timeout is closed, at both ends."""
        network, client, server, _, _, accepted = clientAndServer(self)
        tunnel, collector, serverTunnel, recorder = self.openEcho(network, client, server, accepted)
        server.tunnels.startService()
        self.addCleanup(server.tunnels.stopService)
        network.runFor(server.tunnels.idleTimeout - 1)
        self.assertEqual(len(server.tunnels.tunnels), 1)
        network.runFor(30)
        self.assertTrue(collector.ended.called)
        self.assertEqual(client.tunnels.tunnels, set())
        self.assertEqual(server.tunnels.tunnels, set())
        self.assertClean(network)

    def test_hundredTunnelsAtOnce(self):
        """
        A hundred tunnels opened at once over one exit path and one entry path, each sent its
        own message: each gets its own message back, intact, and the server saw each message
        on one tunnel of its own. Closing them all leaves nothing behind.
        """
        network, client, server, _, _, accepted = clientAndServer(self)
        count = 100
        opening = [client.tunnels.open(server.apAddress) for _ in range(count)]
        network.settle()
        tunnels = [self.successResultOf(d) for d in opening]
        self.assertEqual(len(set(map(id, tunnels))), count)
        messages = [b"tunnel %03d:" % index + os.urandom(64) for index in range(count)]
        collectors = [Collector(len(message)) for message in messages]
        for tunnel, collector, message in zip(tunnels, collectors, messages):
            tunnel.start(collector)
            tunnel.write(message)
        network.settle()
        self.assertEqual([bytes(collector.received) for collector in collectors], messages)
        self.assertEqual(len(accepted), count)
        self.assertEqual(sorted(bytes(recorder.received) for _, recorder in accepted), sorted(messages))
        self.assertEqual(len(client.tunnels.tunnels), count)
        self.assertEqual(len(server.tunnels.tunnels), count)
        for tunnel in tunnels:
            tunnel.loseConnection()
        network.settle()
        self.assertTrue(all(recorder.ended.called for _, recorder in accepted))
        self.assertClean(network)

    def test_exitNodeIsEntryNode(self):
        """
        The exit node of the client's path is the entry node of the server's AP-address: it
        takes both roles in-process, and the tunnel opens and echoes.
        """
        network = MemoryTunnelNetwork(self, 9)
        server, client = network.nodes[:2]
        accepted = []
        acceptInto(server, accepted)
        network.buildPath(server, ENTRY, network.nodes[2:5])
        network.buildPath(client, EXIT, [network.nodes[5], network.nodes[6], network.nodes[4]])
        self.echoIntact(network, client, server, accepted)
        self.assertClean(network)

    def test_keySetsForgottenWithTheirPath(self):
        """
        The key sets of a path, at its owner and its hops, are gone once the path is: a node
        that relays paths for days keeps only those of the paths it relays now.
        """
        made = []

        class RecordingKeySet(common.KeySet):
            def __init__(self, seed, count):
                super().__init__(seed, count)
                made.append((seed, weakref.ref(self)))

        self.patch(common, "KeySet", RecordingKeySet)
        network, client, server, _, exitPath, accepted = clientAndServer(self)
        self.echoIntact(network, client, server, accepted)
        seeds = set(exitPath.keySeeds.values())
        self.assertEqual(len(seeds), 3)
        self.assertTrue(seeds <= {seed for seed, _ in made})
        exitPath.close()
        network.settle()
        self.assertTrue(all(relayed.keySeed not in seeds for node in network.nodes for relayed in node.paths.relaying.values()))
        held = [index for index, node in enumerate(network.nodes) if seeds & set(node.tunnels.keySets.bySeed)]
        self.assertEqual(held, [], "nodes that keep the key sets of a path that is gone")
        exitPath = None
        gc.collect()
        alive = [seed for seed, ref in made if seed in seeds and ref() is not None]
        self.assertEqual(alive, [], "key sets of a path that is gone, still referenced")


class StreamKeyTests(NetworkTestCase):
    def test_noKeystreamShared(self):
        """
        Twenty tunnels between two clients and two servers, over one exit path of one client
        and two of the other, five at a time or one after the other: every hop of every tunnel has two stream keys of its own, no key
        serves two contexts (hop, tunnel, direction), and each owner-side layer has exactly the
        keys of one hop's layer, each hop's layer matched once. Every layer is made once per
        tunnel, none per frame.
        """
        made, layers, owned = [], [], []
        realStreamKeys = keys.streamKeys

        def recordingStreamKeys(chosenKey, tunnelMaterial):
            derived = realStreamKeys(chosenKey, tunnelMaterial)
            made.append(derived)
            return derived

        class RecordingLayer(StreamLayer):
            def __init__(self, chosenKey, tunnelMaterial):
                before = len(made)
                super().__init__(chosenKey, tunnelMaterial)
                [self.keys] = made[before:]
                layers.append(self)

        class RecordingTunnel(OwnerTunnel):
            def __init__(self, link, ownerLayers, *rest):
                super().__init__(link, ownerLayers, *rest)
                owned.append(list(ownerLayers))

        self.patch(keys, "streamKeys", recordingStreamKeys)
        for module in (relay, exit, entry, owner):
            self.patch(module, "StreamLayer", RecordingLayer)
        self.patch(service, "OwnerTunnel", RecordingTunnel)

        network = MemoryTunnelNetwork(self, 14)
        nodes = network.nodes
        serverA, serverB, clientA, clientB = nodes[:4]
        network.buildPath(serverA, ENTRY, nodes[4:7])
        network.buildPath(serverB, ENTRY, nodes[7:10])
        network.buildPath(clientA, EXIT, nodes[10:13])
        network.buildPath(clientB, EXIT, [nodes[13], nodes[4], nodes[8]])
        network.buildPath(clientB, EXIT, [nodes[5], nodes[13], nodes[12]])
        for server in (serverA, serverB):
            acceptInto(server, [])
        self.assertEqual(layers, [], "a stream layer made before any tunnel")

        tunnels = 0
        for client, server, count, atOnce in ((clientA, serverA, 5, 5), (clientA, serverB, 5, 1), (clientB, serverA, 5, 5), (clientB, serverB, 5, 5)):
            for _ in range(count // atOnce):
                self.echoAtOnce(network, client, server, atOnce)
                tunnels += atOnce
                clientB.paths.paths.reverse()
        self.assertClean(network)
        self.assertEqual(len(made), len(layers), "stream keys derived outside a stream layer")

        ownerLayers = [layer for layerList in owned for layer in layerList]
        ownerIds = {id(layer) for layer in ownerLayers}
        hopLayers = [layer for layer in layers if id(layer) not in ownerIds]
        self.assertEqual(len(owned), 2 * tunnels)
        self.assertEqual({len(layerList) for layerList in owned}, {3})
        self.assertEqual(len(ownerLayers), 2 * 3 * tunnels)
        self.assertEqual(len(ownerIds), len(ownerLayers))
        self.assertEqual(len(hopLayers), 2 * 3 * tunnels)
        hopKeys = [key for layer in hopLayers for key in layer.keys]
        self.assertEqual({len(key) for key in hopKeys}, {32})
        self.assertEqual(len(set(hopKeys)), 2 * len(hopLayers), "two contexts share a stream key")
        hopPairs = Counter(layer.keys for layer in hopLayers)
        ownerPairs = Counter(layer.keys for layer in ownerLayers)
        self.assertEqual(ownerPairs, hopPairs, "an owner's layer that no hop holds, or a hop's layer no owner holds")
        self.assertEqual(set(ownerPairs.values()), {1})
        self.assertEqual(len({key for layer in layers for key in layer.keys}), 2 * len(hopLayers))

    def echoAtOnce(self, network, client, server, count):
        """Open C{count} tunnels from C{client} to C{server} at once, echo a message of its own through each, close them."""
        opening = [client.tunnels.open(server.apAddress) for _ in range(count)]
        network.settle()
        tunnels = [self.successResultOf(d) for d in opening]
        messages = [b"%d " % index + os.urandom(200 + index) for index in range(count)]
        collectors = [Collector() for _ in messages]
        for tunnel, collector, message in zip(tunnels, collectors, messages):
            tunnel.start(collector)
            tunnel.write(message)
        network.settle()
        self.assertEqual([bytes(collector.received) for collector in collectors], messages)
        for tunnel in tunnels:
            tunnel.loseConnection()
        network.settle()


class DirectTests(NetworkTestCase):
    def test_ownExitAndOwnEntry(self):
        """
        A node that is its own entry node publishes a routing entry naming itself, when its
        tunnel service starts and at half the entry's lifetime; a node that is its own exit
        node reaches it with no path at all, and a node with an exit path too, over end-to-end
        TLS that shows each opener's exit AP (never its published AP-address).
        """
        network = MemoryTunnelNetwork(self, 9, options={3: {"ownExit": True}, 0: {"ownEntry": True, "entryLifetime": 600.0}})
        server, direct, anonymous = network.nodes[0], network.nodes[3], network.nodes[1]
        server.tunnels.startService()
        self.addCleanup(server.tunnels.stopService)
        key = (Table.ROUTE, routeKey(server.apAddress))
        first = network.database.store.get(*key)
        entryRecord = self.successResultOf(ensureDeferred(direct.dht.findRecord(Table.ROUTE, routeKey(server.apAddress))))
        self.assertEqual([node.nodeId for node in entryRecord.entryNodes], [server.nodeId])
        network.runFor(300)
        self.assertNotEqual(network.database.store.get(*key), first, "the own routing entry was not renewed")

        intact, peer = self.endToEndEcho(network, direct, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(direct.tunnels.exits.current.apAddress))
        self.assertEqual(direct.paths.paths, [])

        path = network.buildPath(anonymous, EXIT, network.nodes[4:7])
        intact, peer = self.endToEndEcho(network, anonymous, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(anonymous.tunnels.exits.ofPath(path).apAddress))
        self.assertClean(network)

    def test_ownExitToEntryPath(self):
        """A node that is its own exit node reaches an AP-address served over an entry path."""
        network = MemoryTunnelNetwork(self, 9, options={1: {"ownExit": True}})
        server, direct = network.nodes[:2]
        network.buildPath(server, ENTRY, network.nodes[2:5])
        intact, peer = self.endToEndEcho(network, direct, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(direct.tunnels.exits.current.apAddress))
        self.assertClean(network)

    def test_entryNodeOpensToItsOwnPathsOwner(self):
        """
        A node that is itself the entry node it must ask (here, an own-exit node that is T of
        the target's entry path) takes both roles in-process, and the tunnel works.
        """
        network = MemoryTunnelNetwork(self, 9)
        server, entryNode = network.nodes[0], network.nodes[4]
        network.buildPath(server, ENTRY, network.nodes[2:5])
        entryNode.tunnels.ownExit = True
        intact, peer = self.endToEndEcho(network, entryNode, server)
        self.assertTrue(intact)
        self.assertEqual(peer, TunnelAddress(entryNode.tunnels.exits.current.apAddress))
        self.assertClean(network)

    def test_ownEntryNothingListens(self):
        """A node that is its own entry node and accepts nothing refuses direct tunnels."""
        network = MemoryTunnelNetwork(self, 2, options={1: {"ownExit": True}, 0: {"ownEntry": True}})
        server, direct = network.nodes
        self.successResultOf(server.tunnels.publishOwnEntry())
        d = direct.tunnels.open(server.apAddress)
        network.settle()
        self.assertIn("refused the tunnel", str(self.failureResultOf(d, TunnelFailed).value))
        self.assertClean(network)


class SetupFailureTests(NetworkTestCase):
    def test_noRoutingEntry(self):
        """An AP-address nobody serves: the exit node finds no routing entry, the open fails, nothing stays."""
        network, client, server, _, _, accepted = clientAndServer(self)
        logs = LogCollector(self, "phantom")
        d = client.tunnels.open(bytes.fromhex("fd") + os.urandom(15))
        network.settle()
        self.failureResultOf(d, TunnelFailed)
        self.assertTrue(logs.having("exit node failed", "no routing entry"))
        self.assertClean(network)

    def test_entryNodeUnreachable(self):
        """The entry node has left the network: the open fails, naming why, and nothing stays."""
        network, client, server, entryPath, _, accepted = clientAndServer(self)
        logs = LogCollector(self, "phantom")
        network.links.disconnect(network.nodes[4].links)
        d = client.tunnels.open(server.apAddress)
        network.settle()
        self.failureResultOf(d, TunnelFailed)
        self.assertTrue(logs.having("exit node failed", "reachable", "nobody listens"))
        self.assertClean(network)

    def test_nothingListens(self):
        """
        A server that accepts nothing refuses: the open fails, the refusal is logged, and
        nothing stays; once it listens, tunnels open.
        """
        network, client, server, _, _, accepted = clientAndServer(self)
        server.tunnels.listener.stopListening()
        logs = LogCollector(self, "phantom")
        d = client.tunnels.open(server.apAddress)
        network.settle()
        self.failureResultOf(d, TunnelFailed)
        self.assertTrue(logs.having("refused an inbound tunnel", level="info"))
        self.assertTrue(logs.having("refused the tunnel"))
        self.assertClean(network)
        acceptInto(server, accepted)
        self.echoIntact(network, client, server, accepted)

    def test_oneListenerAtATime(self):
        """
        A node's inbound tunnels have one listener at a time: a second is refused (by the
        service, and by a server endpoint) and the first keeps the tunnels; once it stops
        listening, tunnels are refused, and the next listener takes them. A port that stopped
        listening twice, or after another took over, leaves the new one be.
        """
        network, client, server, _, _, accepted = clientAndServer(self)
        port = server.tunnels.listener
        verifyObject(IListeningPort, port)
        self.assertEqual(port.getHost(), TunnelAddress(server.apAddress))
        self.assertRaises(CannotListenError, server.tunnels.listen, lambda tunnel: None)
        self.assertRaises(AttributeError, setattr, server.tunnels, "listener", None)
        self.failureResultOf(TunnelServerEndpoint(server.tunnels, server.endToEnd).listen(Factory.forProtocol(Echo)), CannotListenError)
        self.echoIntact(network, client, server, accepted)
        self.assertEqual(len(accepted), 1)

        self.successResultOf(port.stopListening())
        self.assertIsNone(server.tunnels.listener)
        d = client.tunnels.open(server.apAddress)
        network.settle()
        self.failureResultOf(d, TunnelFailed)

        again = []
        acceptInto(server, again)
        port.stopListening()
        self.echoIntact(network, client, server, again)
        self.assertEqual((len(accepted), len(again)), (1, 1))
        self.assertClean(network)

    def test_stepTimesOut(self):
        """
        The exit node's look-up never ends: after the setup timeout the owner gives up, and the
        exit node too; nothing stays.
        """
        network, client, server, _, _, accepted = clientAndServer(self)
        lookUpsNeverEnd(network)
        d = client.tunnels.open(server.apAddress)
        network.runFor(client.tunnels.setupTimeout - 1)
        self.assertNoResult(d)
        network.runFor(2)
        self.assertIn("took too long", str(self.failureResultOf(d, TunnelFailed).value))
        self.assertClean(network)

    def test_cancelOpen(self):
        """Cancelling an open under way gives it up: nothing stays."""
        network, client, server, _, _, accepted = clientAndServer(self)
        lookUpsNeverEnd(network)
        d = client.tunnels.open(server.apAddress)
        network.runFor(1)
        d.cancel()
        self.failureResultOf(d)
        network.settle()
        self.assertEqual(client.tunnels.opening, {})
        network.runFor(common.SETUP_TIMEOUT)
        self.assertClean(network)

    def test_noExitPath(self):
        """A node with no exit path (and none built): the open fails with the path's failure."""
        network = MemoryTunnelNetwork(self, 2)
        d = network.nodes[0].tunnels.open(network.nodes[1].apAddress)
        self.assertIn("PathFailed", str(self.failureResultOf(d, TunnelFailed).value))


def tamperingNetwork(testCase):
    """
    L{clientAndServer} of tampering (but unarmed) nodes: the middle X-node of each path ready.

    @return: C{(network, client, server, accepted, relays)}: C{relays[PathKind.EXIT]} and
        C{relays[PathKind.ENTRY]} the C{(node, relayed)} of the middle X-node of that path.
    """
    network, client, server, entryPath, exitPath, accepted = clientAndServer(testCase, tampering=True)
    relays = {}
    for kind, path, node in ((PathKind.EXIT, exitPath, network.nodes[6]), (PathKind.ENTRY, entryPath, network.nodes[3])):
        relays[kind] = (node, network.relayedOn(node, path))
    return network, client, server, accepted, relays


class TamperingTests(NetworkTestCase):
    def test_tamperedSetupBlocks(self):
        """
        One relay flips one bit (in each of a setup block's three AES blocks in turn) of: the
        exit node's init block on its way to the owner, the owner's reply to the exit node, the
        owner's reply to its entry node, an entry node's init block on its way to the owner.
        Each time the open fails with L{TunnelFailed}, the node that notices logs why, the
        server accepts nothing, and nothing of the setup stays behind. Flipping a bit of the
        blocks that only carry randomness (the exit node's success block, the dummy blocks of
        an inbound setup) delivers no wrong byte either: the tunnel echoes intact, or fails.
        """
        logs = LogCollector(self, "phantom")
        network, client, server, accepted, relays = tamperingNetwork(self)

        def refused(kind, step, bits, why, noticed):
            node, relayed = relays[kind]
            for bit in bits:
                node.tampering.arm(relayed, kind, step, bit)
                d = client.tunnels.open(server.apAddress)
                network.runFor(2 * common.SETUP_TIMEOUT)
                failure = self.failureResultOf(d, TunnelFailed)
                self.assertEqual(node.tampering.tampered, 1, (kind, step, bit))
                self.assertIn(why, str(failure.value))
                self.assertClean(network, remembered=False)
                self.assertEqual(accepted, [])
                if noticed:
                    self.assertTrue(logs.having(*noticed), (kind, step, bit, noticed))
                logs.clear()
            node.tampering.disarm()

        refused(PathKind.EXIT, "opening", BITS, "init block does not check out", ())
        refused(PathKind.EXIT, ("fromOwner", 0), BITS, "no tunnel to", ["exit node failed", "malformed outbound reply block"])
        refused(PathKind.ENTRY, "opening", BITS, "no tunnel to", ["an entry request", "malformed inbound reply block"])
        refused(PathKind.ENTRY, "setup block", BITS[:1], "no tunnel to", ["an inbound tunnel failed", "does not check out"])

        for kind, step in ((PathKind.EXIT, ("toOwner", 0)), (PathKind.ENTRY, ("toOwner", 0)), (PathKind.ENTRY, ("fromOwner", 0))):
            node, relayed = relays[kind]
            node.tampering.arm(relayed, kind, step, BITS[1])
            before = len(accepted)
            d = client.tunnels.open(server.apAddress)
            network.settle()
            outcome = []
            d.addBoth(outcome.append)
            if isinstance(outcome[0], OwnerTunnel):
                message = os.urandom(1000)
                collector = Collector(len(message))
                outcome[0].start(collector)
                outcome[0].write(message)
                network.settle()
                self.assertEqual(bytes(collector.received), message)
                outcome[0].loseConnection()
            else:
                outcome[0].trap(TunnelFailed)
                self.assertEqual([bytes(recorder.received) for _, recorder in accepted[before:]], [b""] * (len(accepted) - before))
            self.assertEqual(node.tampering.tampered, 1, (kind, step))
            node.tampering.disarm()
            network.runFor(2 * common.SETUP_TIMEOUT)
            self.assertClean(network, remembered=False)
        self.echoIntact(network, client, server, accepted)
        self.assertClean(network, remembered=False)

    def test_setupBlockFlippedOnAnExitPath(self):
        """
        A relay of an exit path flips a bit of the setup block it passes on, and remembers the
        block so: the tunnel links come back as they should, but the hops after it derive their
        stream layers from another block than the client does. The open must fail, or the
        tunnel deliver nothing but the bytes sent.
        """
        network, client, server, accepted, relays = tamperingNetwork(self)
        node, relayed = relays[PathKind.EXIT]
        node.tampering.arm(relayed, PathKind.EXIT, "setup block", BITS[1])
        d = client.tunnels.open(server.apAddress)
        network.settle()
        outcome = []
        d.addBoth(outcome.append)
        self.assertEqual(node.tampering.tampered, 1)
        if isinstance(outcome[0], OwnerTunnel):
            message = os.urandom(1000)
            outcome[0].start(Collector())
            outcome[0].write(message)
            network.settle()
            for _, recorder in accepted:
                self.assertTrue(message.startswith(bytes(recorder.received)), "the server got other bytes than were sent")
            outcome[0].loseConnection()
        else:
            outcome[0].trap(TunnelFailed)
        network.runFor(2 * common.SETUP_TIMEOUT)
        self.assertClean(network, remembered=False)


class BadInputTests(NetworkTestCase):
    def rawLink(self, network, sender, target, purpose):
        """A link from C{sender} to C{target} for C{purpose}, as any node may open one, and a L{CollectingHandler} of it."""
        connecting = sender.links.connect(*target.links.address, purpose, os.urandom(LINK_ID_SIZE), target.nodeId)
        handlers = []
        connecting.addCallback(lambda link: (handlers.append(CollectingHandler(link)), link.attach(handlers[-1]), link)[-1])
        network.settle()
        return self.successResultOf(connecting), handlers[0]

    def test_badTunnelAndEntryLinks(self):
        """
        TUNNEL links whose first frame names no setup, is the wrong size, or names a setup but
        comes from another node than the one the block went to; ENTRY links asking an entry node
        for an AP-address it does not serve, sending it garbage, or asking a node that is no
        entry node: each is closed, with a warning naming the sender and the reason (a node that
        is no entry node just refuses: an entry link may follow a stale routing entry). A tunnel
        open all the while carries on, the paths stay up, and new tunnels open.
        """
        logs = LogCollector(self, "phantom")
        network, client, server, entryPath, exitPath, accepted = clientAndServer(self, 11)
        tunnel = self.opened(network, client, server.apAddress)
        collector = Collector()
        tunnel.start(collector)
        tunnel.write(b"before")
        network.settle()
        self.assertEqual(bytes(collector.received), b"before")

        relayNode, entryNode, notEntry, sender = network.nodes[6], network.nodes[4], network.nodes[8], network.nodes[10]
        relayed = network.relayedOn(relayNode, exitPath)
        senderAt = f"{sender.links.address[0]}:"

        def refused(target, purpose, frame, *why, level="warn", answer=None):
            link, handler = self.rawLink(network, sender, target, purpose)
            if frame is not None:
                link.sendFrame(frame)
            network.settle()
            self.assertTrue(handler.closed.called)
            self.assertEqual(handler.frames, [answer] if answer else [])
            self.assertTrue(logs.having(senderAt, *why, level=level), (why, logs.events))

        block = os.urandom(BLOCK_SIZE)
        refused(relayNode, Purpose.TUNNEL, TunnelOpening.build({"first": block, "second": block}), "a tunnel link from", "names no tunnel setup")
        refused(relayNode, Purpose.TUNNEL, block, "a tunnel link from", "malformed tunnel opening")
        refused(relayNode, Purpose.TUNNEL, os.urandom(2 * BLOCK_SIZE + 1), "a tunnel link from", "malformed tunnel opening")
        # A block the relay did pass on (towards T), named on a link from another node.
        passedOn = RelaySetup(relayed, Side.PREVIOUS, Side.NEXT, chooseKey(relayNode.tunnels.keySets.ofRelayed(relayed), random.Random(1)), block)
        self.assertTrue(relayNode.tunnels.remembered.remember(passedOn.passed, passedOn))
        refused(relayNode, Purpose.TUNNEL, TunnelOpening.build({"first": passedOn.passed, "second": block}), "a tunnel link from", "not from the neighbour")
        self.assertNotIn(passedOn.passed, relayNode.tunnels.remembered)

        stranger = bytes.fromhex("fd") + os.urandom(15)
        refusal = ApAnswer.build({"status": InboundStatus.REFUSED})
        refused(entryNode, Purpose.ENTRY, ApRequest.build({"ap_address": stranger}), "an entry request from", "no entry node of fd", answer=refusal)
        refused(entryNode, Purpose.ENTRY, b"\x00" * 5, "an entry request from", "malformed AP request")
        refused(notEntry, Purpose.ENTRY, ApRequest.build({"ap_address": server.apAddress}), "refused an entry link from", "no entry node", level="info")
        # A TUNNEL link that never names its setup is closed after the setup timeout.
        link, handler = self.rawLink(network, sender, relayNode, Purpose.TUNNEL)
        network.runFor(common.SETUP_TIMEOUT)
        self.assertTrue(handler.closed.called)

        tunnel.write(b" and after")
        network.settle()
        self.assertEqual(bytes(collector.received), b"before and after")
        self.assertEqual(bytes(accepted[0][1].received), b"before and after")
        self.assertEqual(client.paths.paths, [exitPath])
        self.assertEqual(server.paths.paths, [entryPath])
        self.echoIntact(network, client, server, accepted)
        tunnel.loseConnection()
        network.settle()
        self.assertClean(network)

    def test_wrongSizeOnPathLink(self):
        """
        A frame on a PATH link that is not one setup block closes that path at the X-node that
        got it, with a warning, and the path goes at its owner; other paths are not disturbed,
        and a new exit path carries tunnels. (That the path service replaces a path that goes
        is tested with it.)
        """
        logs = LogCollector(self, "phantom")
        network, client, server, entryPath, exitPath, accepted = clientAndServer(self)
        x0 = network.nodes[5]
        relayed = network.relayedOn(x0, exitPath)
        exitPath.link.sendFrame(b"x" * (BLOCK_SIZE - 1))
        network.settle()
        self.assertTrue(relayed.gone)
        self.assertNotIn(relayed, x0.paths.relaying.values())
        self.assertTrue(exitPath.gone)
        self.assertTrue(logs.having("closing a path", f"a frame of {BLOCK_SIZE - 1} bytes"))
        self.assertEqual(server.paths.paths, [entryPath])
        network.buildPath(client, EXIT, network.nodes[7:4:-1])
        self.echoIntact(network, client, server, accepted)

    def test_setupBlockAtTheEndOfAnEntryPath(self):
        """An entry node that gets a setup block over its entry path closes the path, with a warning."""
        logs = LogCollector(self, "phantom")
        network, client, server, entryPath, exitPath, accepted = clientAndServer(self)
        entryPath.link.sendFrame(os.urandom(BLOCK_SIZE))
        network.settle()
        self.assertTrue(entryPath.gone)
        self.assertTrue(logs.having("closing a path", "at the end of an entry path"))
        self.assertEqual(client.paths.paths, [exitPath])


class QuotaTests(NetworkTestCase):
    def test_floodingX0(self):
        """
        A malicious x0 floods its path's next hop with setup blocks that its T, colluding, never
        answers: that relay remembers no more than the path's share of them, and a tunnel over
        another path through the same relay still opens.
        """
        network, client, server, _, exitPath, accepted = clientAndServer(self, 14)
        relayNode, flooder, colluder = network.nodes[6], network.nodes[9], network.nodes[10]
        floodPath = network.buildPath(network.nodes[8], EXIT, [flooder, relayNode, colluder])
        colluder.tunnels.pathFrameReceived = lambda path, side, payload: None
        flooding = network.relayedOn(flooder, floodPath)
        [towardsRelay] = [flooding.links[side] for side in flooding.sides() if flooding.contacts[side].nodeId == relayNode.nodeId]
        for _ in range(common.MAX_PENDING + 1000):
            towardsRelay.sendFrame(os.urandom(BLOCK_SIZE))
        network.settle()
        self.assertEqual(len(relayNode.tunnels.remembered), common.MAX_PENDING_PER_PATH)
        self.echoIntact(network, client, server, accepted)

    def test_floodingEntryRequests(self):
        """
        One node opens ENTRY links to an entry node as fast as it can: the entry node takes no
        more than that node's share, the owner searches keys for no more than its rate, and
        tunnels from other exit nodes still open.
        """
        network, client, server, entryPath, _, accepted = clientAndServer(self, 10)
        entryNode = network.nodes[4]
        flooder = network.links.linkService()
        links = []
        for _ in range(1000):
            opened = flooder.connect(*entryNode.address, Purpose.ENTRY, os.urandom(LINK_ID_SIZE), entryNode.nodeId)
            opened.addCallback(lambda link: (links.append(link), link.attach(CollectingHandler(link)), link.sendFrame(ApRequest.build({"ap_address": server.apAddress}))))
        network.settle()
        self.assertEqual(len(entryNode.tunnels.entering), 0, "the owner answered every request it took")
        self.assertEqual(len(accepted), common.MAX_ENTRY_PENDING_PER_PEER)
        self.echoIntact(network, client, server, accepted)

    def test_sybilsFloodingEntryRequests(self):
        """
        Four node ids on one address (node ids are free) open ENTRY links to an entry node as
        fast as they can: together they get no more than one node's share of entry requests.
        """
        network, client, server, entryPath, _, accepted = clientAndServer(self, 10)
        entryNode = network.nodes[4]
        for port in range(7500, 7504):
            flooder = network.links.linkService(host="10.9.9.9", port=port)
            for _ in range(300):
                opened = flooder.connect(*entryNode.address, Purpose.ENTRY, os.urandom(LINK_ID_SIZE), entryNode.nodeId)
                opened.addCallback(lambda link: (link.attach(CollectingHandler(link)), link.sendFrame(ApRequest.build({"ap_address": server.apAddress}))))
        network.settle()
        self.assertEqual(len(accepted), common.MAX_ENTRY_PENDING_PER_PEER)
        self.echoIntact(network, client, server, accepted)


class FreshnessTests(NetworkTestCase):
    def test_replayedBlocksAndReplies(self):
        """
        Every setup block a hop (or the owner) received is sent to it again a hundred times, as
        a malicious neighbour would replay it: each replay is refused by the hop it reaches, and
        no hop ever derives the same stream keys twice. (A reply travels only on the tunnel link
        whose opening names a remembered block, and a remembered block is taken once: a replayed
        opening names no setup, as L{BadInputTests.test_badTunnelAndEntryLinks} shows.)
        """
        derived = []
        realStreamKeys = keys.streamKeys

        def recordingStreamKeys(chosenKey, tunnelMaterial):
            derived.append(realStreamKeys(chosenKey, tunnelMaterial))
            return derived[-1]

        self.patch(keys, "streamKeys", recordingStreamKeys)
        network, client, server, _, _, accepted = clientAndServer(self)
        received = []
        for node in network.nodes:
            node.pathFrameReceived = lambda path, side, payload, node=node: (received.append((node, path, side, payload)), node.tunnels.pathFrameReceived(path, side, payload))
        self.echoIntact(network, client, server, accepted)
        self.assertEqual(len(received), 6, "x0, x1 and T of the exit path; x1, x0 and the owner of the entry path")
        before = len(derived)
        logs = LogCollector(self, "phantom.tunnel")
        for node, path, side, payload in received:
            for _ in range(100):
                node.tunnels.pathFrameReceived(path, side, payload)
        network.settle()
        self.assertEqual(len(derived), before, "a hop derived stream keys for a replay")
        self.assertTrue(logs.having("a replayed setup block", level="warn"))
        self.assertEqual(network.leftovers(), [])
        self.echoIntact(network, client, server, accepted)
        self.assertEqual(set(Counter(derived).values()), {2}, "each pair of stream keys is derived by one hop and its path's owner, once")


class RouteSetTests(NetworkTestCase):
    def test_twoEntryNodesOneDies(self):
        """
        A server with two entry paths has two entry nodes in the network database; when the
        one tried first dies, a tunnel still reaches the server through the other.
        """
        network = MemoryTunnelNetwork(self, 14)
        server, client = network.nodes[:2]
        network.buildPath(server, ENTRY, network.nodes[2:5])
        network.runFor(1)
        network.buildPath(server, ENTRY, network.nodes[5:8])
        network.buildPath(client, EXIT, network.nodes[8:11])
        accepted = []
        acceptInto(server, accepted)
        found = self.successResultOf(ensureDeferred(client.dht.findRecord(Table.ROUTE, routeKey(server.apAddress))))
        self.assertEqual([node.nodeId for node in found.entryNodes], [network.nodes[7].nodeId, network.nodes[4].nodeId])
        network.links.disconnect(network.nodes[7].links)
        self.echoIntact(network, client, server, accepted)
        self.assertEqual(len(accepted), 1)
