"""The config file every testnet node is started with: a path shape that fits the testnet."""

import os

from twisted.trial.unittest import SynchronousTestCase

from phantom.config import resolveConfig
from phantom.testnet.nodeconfig import NODE_CONFIG, nodeConfigSections, writeNodeConfig

ONE_NETWORK = {"diversity": "off", "coarse_entries": "no"}
"""What every testnet node's config says: one /16, routing entries published at once."""


class NodeConfigTests(SynchronousTestCase):
    def test_shapes(self):
        """Half the other nodes spare; the smallest shape down to 6 nodes; below, own exit and entry."""
        self.assertEqual(nodeConfigSections(31)["path"], {"x": "3", "y": "12", **ONE_NETWORK})
        self.assertEqual(nodeConfigSections(20)["path"], {"x": "3", "y": "7", **ONE_NETWORK})
        self.assertEqual(nodeConfigSections(12)["path"], {"x": "2", "y": "4", **ONE_NETWORK})
        self.assertEqual(nodeConfigSections(6)["path"], {"x": "2", "y": "3", **ONE_NETWORK})
        self.assertEqual(nodeConfigSections(5), {"path": ONE_NETWORK, "tunnel": {"own_exit": "yes", "own_entry": "yes"}})

    def test_written(self):
        """The file a node gets parses as a config file and gives the shape."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = writeNodeConfig(directory, 12)
        self.assertEqual(path, os.path.join(directory, NODE_CONFIG))
        config = resolveConfig(dataDir=directory, configFile=path)
        self.assertEqual((config.path.x, config.path.y), (2, 4))
        tiny = resolveConfig(dataDir=directory, configFile=writeNodeConfig(directory, 2))
        self.assertEqual((tiny.tunnel.ownExit, tiny.tunnel.ownEntry), (True, True))
