"""Configuration: defaults, the VoidPhone-style INI file, and command-line overrides."""

from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LISTEN_BACKLOG, resolveConfig
from phantom.errors import ConfigError


class ResolveTests(SynchronousTestCase):
    """What the node ends up with."""

    def test_barePort(self):
        """A bare port listens on the listen address."""
        config = resolveConfig(port="7402", listenAddress="127.0.0.5", dataDir="/d")
        self.assertEqual(config.listenEndpoint, f"tcp:7402:interface=127.0.0.5:backlog={LISTEN_BACKLOG}")
        self.assertEqual(config.listenAddress, "127.0.0.5")

    def test_ipv6ListenAddress(self):
        """IPv6 listen addresses are escaped for the endpoint string."""
        config = resolveConfig(port="7402", listenAddress="::1", dataDir="/d")
        self.assertEqual(config.listenEndpoint, f"tcp6:7402:interface=\\:\\:1:backlog={LISTEN_BACKLOG}")

    def test_wildcard(self):
        """Without a listen address the node listens everywhere and binds nothing."""
        config = resolveConfig(dataDir="/d")
        self.assertTrue(config.listenEndpoint.startswith("tcp:7402:interface=0.0.0.0"))
        self.assertIsNone(config.listenAddress)

    def test_endpointString(self):
        """A tcp endpoint string is taken as it is; TLS endpoint strings are refused."""
        self.assertEqual(resolveConfig(port="tcp:9000", dataDir="/d").listenEndpoint, "tcp:9000")
        self.assertRaises(ConfigError, resolveConfig, port="ssl:9000", dataDir="/d")
        self.assertRaises(ConfigError, resolveConfig, listenAddress="localhost", dataDir="/d")

    def test_configFileAndOverrides(self):
        """The INI file sets what the command line does not."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "hostkey = /ignored.pem\n"
                "[dht]\n"
                "p2p_address = 127.0.0.9:7502 ; our TLS port\n"
                "api_address = 127.0.0.9:7501 # the module API\n"
                "bootstrapper = 127.0.0.2:7402, 127.0.0.3:7402\n"
                "[phantom]\n"
                "data_dir = /var/lib/phantom\n"
                "[link]\n"
                "idle_timeout = 45\n"
                "max_frames_per_second = 1000\n"
                "[tunnel]\n"
                "serve = 127.0.0.1:8080\n"
                "forward = 127.0.0.1:9000=fd00::1, [::1]:9001=fd00::2\n"
                "own_exit = yes\n"
            )
        config = resolveConfig(configFile=path)
        self.assertEqual(config.tunnel.serve, "127.0.0.1:8080")
        self.assertEqual(config.tunnel.forwards(), [(("127.0.0.1", 9000), "fd00::1"), (("::1", 9001), "fd00::2")])
        self.assertEqual((config.tunnel.ownExit, config.tunnel.ownEntry), (True, False))
        self.assertEqual(resolveConfig(configFile=path, serve="none", ownEntry=True).tunnel.serve, "none")
        self.assertTrue(resolveConfig(configFile=path, ownEntry=True).tunnel.ownEntry)
        self.assertEqual(config.listenAddress, "127.0.0.9")
        self.assertTrue(config.listenEndpoint.startswith("tcp:7502:interface=127.0.0.9"))
        self.assertEqual(config.apiAddress, ("127.0.0.9", 7501))
        self.assertEqual([str(c) for c in config.bootstrap], ["127.0.0.2:7402", "127.0.0.3:7402"])
        self.assertEqual(config.dataDir, "/var/lib/phantom")
        self.assertEqual((config.link.idleTimeout, config.link.maxFramesPerSecond), (45.0, 1000))
        overridden = resolveConfig(configFile=path, port="7600", listenAddress="127.0.0.4", bootstrap="")
        self.assertTrue(overridden.listenEndpoint.startswith("tcp:7600:interface=127.0.0.4"))
        self.assertEqual(overridden.bootstrap, ())

    def test_badConfigFile(self):
        """Unreadable files and bad values are refused with the file named."""
        self.assertRaises(ConfigError, resolveConfig, configFile=self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[link]\nidle_timeout = soon\n")
        with self.assertRaises(ConfigError) as caught:
            resolveConfig(configFile=path)
        self.assertIn(path, str(caught.exception))
        for bad in (
            "[tunnel]\nown_exit = maybe\n",
            "[tunnel]\nforward = 127.0.0.1:9000=10.0.0.1\n",
            "[tunnel]\nserve = nowhere\n",
            "[dht]\nmax_store_bytes = 1000000\nstore_reserve_bytes = 1000000\n",
        ):
            with open(path, "w") as f:
                f.write(bad)
            self.assertRaises(ConfigError, resolveConfig, configFile=path)


class KeptPathsTests(SynchronousTestCase):
    """[path] entry_paths and exit_paths, and where a node keeps them."""

    def configWith(self, text, **options):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return resolveConfig(configFile=path, dataDir="/d", **options)

    def test_counts(self):
        """1 of each by default; 0 turns them off; negative or more than 8 are refused."""
        from phantom.config import PathSettings

        self.assertEqual((PathSettings().entryPaths, PathSettings().exitPaths), (1, 1))
        config = self.configWith("[path]\nentry_paths = 0\nexit_paths = 2\n")
        self.assertEqual((config.path.entryPaths, config.path.exitPaths), (0, 2))
        for bad in ("entry_paths = -1", "exit_paths = 9", "entry_paths = many"):
            self.assertRaises(ConfigError, self.configWith, f"[path]\n{bad}\n")

    def test_whereKept(self):
        """
        Entry paths where the node takes inbound tunnels and is not its own entry node; exit paths
        where it has a tun device or forwards and does not open tunnels without them.
        """
        from phantom.node import keptPaths
        from phantom.path.interfaces import PathKind

        def kept(**options):
            counts = keptPaths(resolveConfig(dataDir="/d", **options))
            return counts[PathKind.ENTRY], counts[PathKind.EXIT]

        self.assertEqual(kept(), (1, 0))
        self.assertEqual(kept(serve="none"), (0, 0))
        self.assertEqual(kept(serve="none", tun="phantom0"), (1, 1))
        self.assertEqual(kept(forward="127.0.0.1:9000=fd00::1"), (1, 1))
        self.assertEqual(kept(tun="phantom0", ownExit=True, ownEntry=True), (0, 0))
