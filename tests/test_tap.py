"""The twistd plugin and its options."""

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from phantom.node import PhantomNode
from phantom.tap import Options, makeService


class PluginTests(SynchronousTestCase):
    """``twistd phantom`` is found and makes a node."""

    def test_pluginFound(self):
        """The plugin is discoverable through IServiceMaker, as twistd looks for it."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("phantom", makers)
        self.assertIs(makers["phantom"].options, Options)

    def test_makeService(self):
        """The options make a node with the configured data directory and endpoint."""
        options = Options()
        dataDir = self.mktemp()
        options.parseOptions(["--port", "7402", "--listen-address", "127.0.0.3", "--data-dir", dataDir])
        node = makeService(options, reactor=MemoryReactorClock())
        self.assertIsInstance(node, PhantomNode)
        self.assertEqual(node.config.dataDir, dataDir)
        self.assertTrue(node.config.listenEndpoint.startswith("tcp:7402:interface=127.0.0.3"))

    def test_badOptions(self):
        """Bad option values are usage errors that name the problem."""
        for argv in (["--port", "ssl:443"], ["--bootstrap", "nowhere"], ["--listen-address", "x"]):
            with self.assertRaises(SystemExit) as caught:
                Options().parseOptions(argv)
            self.assertTrue(str(caught.exception.code).startswith("phantom: "))
            self.assertNotIn("\n", str(caught.exception.code))
