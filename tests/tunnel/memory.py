"""
Tunnel services on the path tests' in-memory network (L{tests.path.helpers.MemoryPathNetwork}):
each node has a real path service, its paths built by L{PathService.build} on the driven clock
(L{MemoryPathNetwork.buildPath} lets a test choose the X-nodes), and a tunnel service that the
node hands its PATH links' frames, as the real node does. One in-memory network database
(L{phantom.netdb.testing.MemoryDatabase}) holds the routing entries.
"""

import random

from zope.interface import implementer

from phantom.config import PathSettings
from phantom.crypto import apAddressOf
from phantom.path.interfaces import IPathFrameReceiver
from phantom.tunnel.endpoint import EndToEnd
from phantom.tunnel.service import TunnelService
from phantom.wire.link import Purpose
from tests.path.helpers import MemoryNode, MemoryPathNetwork
from tests.tunnel.helpers import leftovers
from tests.tunnel.tampering import Tampering

SETTINGS = PathSettings(roundTimeout=5.0, x=3, y=5, diversity="off", lifetime=86400.0, coarseEntries=False)
"""Paths of 3 X- and 5 Y-nodes that outlive any test (a renewal would close their tunnels);
the in-memory network's nodes all share one /16."""


@implementer(IPathFrameReceiver)
class MemoryTunnelNode(MemoryNode):
    """
    A node of a L{MemoryTunnelNetwork}: a L{MemoryNode} with C{tunnels}, C{routingKey},
    C{apAddress} and C{endToEnd} (on the network's clock). C{options} go to its tunnel service,
    and C{ownEntry=True}, C{tampering=True} (its L{Tampering} as C{tampering}).
    """

    def __init__(self, network, index, settings, participant, options):
        super().__init__(network, index, settings, participant, self)
        self.routingKey = self.identity.routingKey
        self.apAddress = apAddressOf(self.routingKey.public_key())
        if options.pop("ownEntry", False):
            options["ownEntry"] = self.routingKey
        if options.pop("tampering", False):
            self.tampering = options["relaySetup"] = Tampering()
        self.tunnels = TunnelService(
            self.links, self.paths, self.dht, network.clock, self.apAddress, random.Random(1000 + index), **options
        )
        self.endToEnd = EndToEnd(self.routingKey, network.clock)

    def pathFrameReceived(self, path, side, payload):
        self.tunnels.pathFrameReceived(path, side, payload)


class MemoryTunnelNetwork(MemoryPathNetwork):
    """
    C{count} L{MemoryTunnelNode}s on one clock (C{options}: node index to more keyword
    arguments of its tunnel service; C{every}: keyword arguments for all).
    """

    def __init__(self, testCase, count, options=None, **every):
        self._options = lambda index: {**every, **(options or {}).get(index, {})}
        super().__init__(testCase, count, SETTINGS)
        for node in self.nodes:
            testCase.addCleanup(node.tunnels.stop)

    def makeNode(self, index, settings, participant, frameReceiver):
        return MemoryTunnelNode(self, index, settings, participant, self._options(index))

    def relayedOn(self, node, path):
        """C{node}'s place in C{path}."""
        seed = path.keySeeds[node.nodeId]
        return next(relayed for relayed in node.paths.relaying.values() if relayed.keySeed == seed)

    def leftovers(self, remembered=True):
        """What tunnels left behind, as L{tests.tunnel.helpers.leftovers} finds it on real nodes."""
        return leftovers(self.nodes, remembered, linksOf=memoryTunnelLinks)


def memoryTunnelLinks(node):
    """The node's open link ends that are TUNNEL or ENTRY links."""
    return [link for link in node.links.links if link.purpose in (Purpose.TUNNEL, Purpose.ENTRY)]
