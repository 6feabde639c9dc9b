"""Routing paths built over real links on loopback, by real nodes in this process."""

import random

from twisted.trial.unittest import TestCase
from zope.interface import implementer

from phantom.config import PathSettings
from phantom.netdb.records import routeKey
from phantom.path.interfaces import IPathFrameReceiver
from phantom.path.plan import PathShape
from phantom.path.service import PathService
from phantom.wire.dht import Table
from phantom.wire.link import Purpose, dataHeader, encodeOpen
from phantom.wire.path import SLOT_SIZE, SetupArray
from tests.link.helpers import LogCollector, RawClient, connectRaw, ownTimeClock, until
from tests.path.helpers import PublishedRoutes
from tests.netdb.helpers import startDhtNetwork

SETTINGS = PathSettings(roundTimeout=5.0, diversity="off", coarseEntries=False)
"""The nodes are all on 127.42.0.0/16: the X-node diversity rule is off, as on a testnet."""


@implementer(IPathFrameReceiver)
class TunnelsOf:
    """Hands the frames of a node's PATH links to C{node.tunnels}, once a test has given it one."""

    def __init__(self, node):
        self._node = node

    def pathFrameReceived(self, path, side, payload):
        tunnels = getattr(self._node, "tunnels", None)
        if tunnels is None:
            path.close()
            return
        tunnels.pathFrameReceived(path, side, payload)


async def startPathNetwork(testCase, count, base, settings=SETTINGS, cls=PathService):
    """
    C{count} nodes with a DHT and a path service (of class C{cls}) each, every timer on the
    test's L{OwnTimeClock} (C{node.clock}).
    """
    nodes = await startDhtNetwork(testCase, count, base=base)
    clock = ownTimeClock(testCase)
    for index, node in enumerate(nodes):
        node.clock = clock
        node.paths = cls(node.identity, node.links, node, clock, settings, random.Random(index), frameReceiver=TunnelsOf(node))
        node.paths.startService()
        testCase.addCleanup(node.paths.stopService)
    return nodes


def byId(nodes):
    return {node.nodeId: node for node in nodes}


class PathBuildTests(TestCase):
    timeout = 120

    async def test_exitPath(self):
        """An exit path of 3 X- and 12 Y-nodes is built; every X has its place, no Y remembers it."""
        nodes = await startPathNetwork(self, 20, base=600)
        owner = nodes[5]
        path = await owner.paths.build("exit", PathShape(3, 12))
        self.assertEqual(len(path.nodes), 3)
        self.assertIn(path.link, owner.links.links)
        self.assertEqual(path.link.nodeId, path.plan.adjacent.nodeId)
        everyone = byId(nodes)
        xIds = [record.nodeId for record in path.nodes]
        # Each X-node joined the path in round 2, before the array came back to the owner.
        self.assertTrue(all(everyone[x].paths.relaying for x in xIds))
        t = everyone[path.plan.terminating.nodeId]
        [relayed] = t.paths.relaying.values()
        self.assertTrue(relayed.terminating)
        for record in path.plan.yNodes:
            self.assertEqual(everyone[record.nodeId].paths.relaying, {})
        await until(lambda: all(everyone[record.nodeId].paths.helping == 0 for record in path.plan.yNodes))
        # T never holds a setup or path link from or to the owner's address (being on the
        # network is public: DHT links between any two nodes are no sign of who owns a path).
        pathLinks = {link.peer.host for link in t.links.connections if link.purpose in (Purpose.SETUP, Purpose.PATH)}
        self.assertTrue(pathLinks)
        self.assertNotIn(owner.address[0], pathLinks)

    async def test_entryPath(self):
        """An entry path's T publishes the routing entry; another node finds and verifies it."""
        nodes = await startPathNetwork(self, 20, base=630)
        published = PublishedRoutes(nodes)
        owner = nodes[3]
        path = await owner.paths.build("entry", PathShape(3, 12))
        seeker = nodes[17]

        async def found():
            record = await seeker.findRecord(Table.ROUTE, routeKey(path.apAddress))
            return record

        await published.whenStored(path.apAddress)
        self.assertTrue(any(node.store.get(Table.ROUTE, routeKey(path.apAddress)) for node in nodes))
        entry = await found()
        self.assertEqual([n.nodeId for n in entry.entryNodes], [path.plan.terminating.nodeId])


class BadInputTests(TestCase):
    timeout = 120

    async def test_malformedAndForeignArrays(self):
        """
        A SETUP link carrying a malformed array, or one with no slot for the node, is closed with
        one warning naming the peer; the node goes on building and taking part in paths.
        """
        nodes = await startPathNetwork(self, 10, base=660)
        target = nodes[4]
        logs = LogCollector(self, "phantom.path")
        port = target.links.listeningAddress.port
        garbage = encodeOpen(Purpose.SETUP, b"\x01" * 16) + dataHeader(3) + b"bad"
        foreign = SetupArray.build({"round": 1, "slots": [b"\x00" * SLOT_SIZE]})
        foreignFrame = encodeOpen(Purpose.SETUP, b"\x02" * 16) + dataHeader(len(foreign)) + foreign
        clients = [RawClient(garbage), RawClient(foreignFrame)]
        for client in clients:
            await connectRaw(port, client, host=target.address[0])
        for client in clients:
            [line] = logs.about(client.localPort)
            self.assertIn("refused", line)
        self.assertEqual(target.paths.helping, 0)
        path = await nodes[0].paths.build("exit", PathShape(2, 3))
        self.assertEqual(len(path.nodes), 2)
