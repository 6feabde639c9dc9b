"""
Tests of L{phantom.testnet.manifest}: the nodes' layout in a testnet directory, whatever their
addresses, and a manifest surviving JSON and the disk.
"""

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from phantom.testnet.loopback import planLoopback
from phantom.testnet.manifest import MANIFEST, Manifest, TestnetError, layOutNodes, manifestPath
from tests.testnet.helpers import shortTemporaryDirectory


class LayOutTests(SynchronousTestCase):
    """L{layOutNodes} takes each node's address from the mode, and lays out the rest itself."""

    def test_addressOf(self):
        """Node I gets C{addressOf(I)}; every node but node 1 joins through node 1."""
        nodes = layOutNodes("/tmp/tn", 3, 23456, lambda index: f"fd00::{index}")
        self.assertEqual([node.address for node in nodes], ["fd00::1", "fd00::2", "fd00::3"])
        self.assertEqual([node.bootstrap for node in nodes], [(), ("[fd00::1]:23456",), ("[fd00::1]:23456",)])
        self.assertEqual([node.dataDir for node in nodes], ["/tmp/tn/node01", "/tmp/tn/node02", "/tmp/tn/node03"])


class ManifestTests(SynchronousTestCase):
    """A L{Manifest} survives JSON and the disk unchanged; anything else is refused clearly."""

    def test_jsonRoundTrip(self):
        manifest = planLoopback("/tmp/tn", 5, 23456)
        self.assertEqual(Manifest.fromJSON(json.loads(json.dumps(manifest.toJSON()))), manifest)

    def test_fileRoundTrip(self):
        directory = os.path.join(shortTemporaryDirectory(self), "tn")
        manifest = planLoopback(directory, 3)
        manifest.write()
        self.assertEqual(Manifest.read(directory), manifest)
        self.assertEqual(os.listdir(directory), [MANIFEST])

    def test_missing(self):
        directory = self.mktemp()
        error = self.assertRaises(TestnetError, Manifest.read, directory)
        self.assertIn(f"no testnet in {directory}", str(error))

    def test_malformed(self):
        """Bad JSON, another version, or a node entry lacking a field: each is a L{TestnetError}."""
        directory = shortTemporaryDirectory(self)
        good = planLoopback(directory, 2).toJSON()
        lacking = json.loads(json.dumps(good))
        del lacking["nodes"][1]["pidfile"]
        wrongType = json.loads(json.dumps(good))
        wrongType["nodes"][0]["port"] = "7402"
        for content in ("{not json", json.dumps({**good, "version": 99}), json.dumps(lacking), json.dumps(wrongType)):
            with open(manifestPath(directory), "w") as f:
                f.write(content)
            error = self.assertRaises(TestnetError, Manifest.read, directory)
            self.assertIn(manifestPath(directory), str(error))
