"""
Stream layers across many tunnels: no two contexts share a keystream, the owners hold exactly
the layers the hops hold, and a hundred tunnels over one pair of paths never cross.
"""

import os
from collections import Counter

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from phantom.tunnel import entry, exit, keys, owner, relay, service
from phantom.tunnel.keys import StreamLayer
from phantom.tunnel.transport import OwnerTunnel
from phantom.wire.dht import Table
from tests.tunnel.helpers import SHAPE, Collector, acceptInto, buildEntry, hopNode, startClientAndServer, startTunnelNetwork, untilClean


def recordLayers(testCase):
    """
    From now on, keep every stream layer the tunnel service makes, with the keys the real
    L{keys.streamKeys} gave it, and the layers of every owner's tunnel.

    @return: C{(layers, owned)}: every L{StreamLayer} made, each with its C{streamKeys} as
        C{keys}; and the layer lists handed to L{OwnerTunnel}s.
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

    testCase.patch(keys, "streamKeys", recordingStreamKeys)
    for module in (relay, exit, entry, owner):
        testCase.patch(module, "StreamLayer", RecordingLayer)
    testCase.patch(service, "OwnerTunnel", RecordingTunnel)
    testCase.addCleanup(lambda: testCase.assertEqual(len(made), len(layers), "stream keys derived outside a stream layer"))
    return layers, owned


async def echoOnce(client, server, message):
    """Open a tunnel from C{client} to C{server}, send C{message}, return what comes back, close."""
    tunnel = await client.tunnels.open(server.apAddress)
    collector = Collector(len(message))
    tunnel.start(collector)
    tunnel.write(message)
    echoed = await collector.arrived
    tunnel.loseConnection()
    await collector.ended
    return echoed


class StreamKeyTests(TestCase):
    timeout = 120

    async def test_noKeystreamShared(self):
        """
        Twenty tunnels between two clients and two servers, over one exit path of one client
        and two of the other, five at a time or one after the other: every hop of every tunnel
        has two stream keys of its own, no key serves two contexts (hop, tunnel, direction),
        and each owner-side layer has exactly the keys of one hop's layer, each hop's layer
        matched once. Every layer is made once per tunnel, none per frame.
        """
        layers, owned = recordLayers(self)
        nodes = await startTunnelNetwork(self, 16, base=840)
        clientA, clientB, serverA, serverB = nodes[3], nodes[6], nodes[10], nodes[13]
        for server in (serverA, serverB):
            await buildEntry(nodes, server)
            acceptInto(server, [])
        await clientA.paths.build("exit", SHAPE)
        await clientB.paths.build("exit", SHAPE)
        await clientB.paths.build("exit", SHAPE)
        self.assertEqual(layers, [], "a stream layer made before any tunnel")

        async def batch(client, server, count):
            messages = [b"%d " % index + os.urandom(200 + index) for index in range(count)]
            echoed = await gatherResults([Deferred.fromCoroutine(echoOnce(client, server, message)) for message in messages])
            self.assertEqual(echoed, messages)

        await batch(clientA, serverA, 5)
        for _ in range(5):
            await batch(clientA, serverB, 1)
        await gatherResults([Deferred.fromCoroutine(batch(clientB, serverA, 5)), Deferred.fromCoroutine(batch(clientB, serverB, 5))])
        await untilClean(nodes)

        tunnels = 20
        ownerLayers = [layer for layerList in owned for layer in layerList]
        ownerIds = {id(layer) for layer in ownerLayers}
        hopLayers = [layer for layer in layers if id(layer) not in ownerIds]
        self.assertEqual(len(owned), 2 * tunnels)
        self.assertEqual({len(layerList) for layerList in owned}, {SHAPE.x})
        self.assertEqual(len(ownerLayers), 2 * SHAPE.x * tunnels)
        self.assertEqual(len(ownerIds), len(ownerLayers))
        self.assertEqual(len(hopLayers), 2 * SHAPE.x * tunnels)

        hopKeys = [key for layer in hopLayers for key in layer.keys]
        self.assertEqual({len(key) for key in hopKeys}, {32})
        self.assertEqual(len(set(hopKeys)), 2 * len(hopLayers), "two contexts share a stream key")
        hopPairs = Counter(layer.keys for layer in hopLayers)
        ownerPairs = Counter(layer.keys for layer in ownerLayers)
        self.assertEqual(ownerPairs, hopPairs, "an owner's layer that no hop holds, or a hop's layer no owner holds")
        self.assertEqual(set(ownerPairs.values()), {1})
        allKeys = {key for layer in layers for key in layer.keys}
        self.assertEqual(len(allKeys), 2 * len(hopLayers))

    async def test_hundredTunnelsAtOnce(self):
        """
        A hundred tunnels opened at once over one exit path and one entry path, each sent its
        own message: each gets its own message back, intact, and the server saw each message
        on one tunnel of its own. Closing them all leaves nothing behind.
        """
        nodes, client, server, _, _, accepted = await startClientAndServer(self, 14, 860, 4, 11)
        count = 100
        tunnels = await gatherResults([client.tunnels.open(server.apAddress) for _ in range(count)])
        self.assertEqual(len(set(map(id, tunnels))), count)
        self.assertEqual(len(client.paths.paths), 1)
        self.assertEqual(len(server.paths.paths), 1)

        messages = [b"tunnel %03d:" % index + os.urandom(64) for index in range(count)]
        collectors = [Collector(len(message)) for message in messages]
        for tunnel, collector, message in zip(tunnels, collectors, messages):
            tunnel.start(collector)
            tunnel.write(message)
        echoed = await gatherResults([collector.arrived for collector in collectors])
        self.assertEqual(echoed, messages)
        self.assertEqual(len(accepted), count)
        self.assertEqual(sorted(bytes(recorder.received) for _, recorder in accepted), sorted(messages))
        self.assertEqual(len(client.tunnels.tunnels), count)
        self.assertEqual(len(server.tunnels.tunnels), count)

        for tunnel in tunnels:
            tunnel.loseConnection()
        await gatherResults([recorder.ended for _, recorder in accepted])
        await untilClean(nodes)
        self.assertEqual([collector.received for collector in collectors], messages)


class EntryAtExitTests(TestCase):
    timeout = 120

    async def test_exitNodeIsEntryNode(self):
        """
        The exit node of the client's path is the entry node of the server's AP-address (in a
        network of n nodes, about one tunnel in n): the tunnel opens all the same, and echoes.
        """
        nodes = await startTunnelNetwork(self, 12, base=820)
        server = nodes[7]
        acceptInto(server, [])
        entryNode = hopNode(nodes, await buildEntry(nodes, server), -1)
        client = next(node for node in nodes[1:] if node not in (server, entryNode))
        others = [node for node in nodes if node not in (client, entryNode)]
        candidates = [node.store.get(Table.NODE, node.nodeId) for node in [entryNode] + others[: SHAPE.size - 1]]
        for _ in range(60):
            path = await client.paths.build("exit", SHAPE, candidates=candidates)
            if path.plan.terminating.nodeId == entryNode.nodeId:
                break
            client.paths.retire(path)
        else:
            self.fail("no exit path through the entry node in 60 builds")
        message = b"through one node at both ends " + os.urandom(32)
        self.assertEqual(await echoOnce(client, server, message), message)
        await untilClean(nodes)
