"""Configuration: defaults, the VoidPhone-style INI file, and command-line overrides."""

import os
import re
import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LISTEN_BACKLOG, configReference, configSchema, formatConfig, readConfigFile, resolveConfig
from phantom.errors import ConfigError


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


class StrictFileTests(SynchronousTestCase):
    """Unknown sections and keys are errors that name the file, the key and the valid keys."""

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def refused(self, text):
        path = self.write(text)
        with self.assertRaises(ConfigError) as caught:
            resolveConfig(configFile=path)
        message = str(caught.exception)
        self.assertIn(path, message)
        return message

    def test_unknownKey(self):
        """A misspelt key is named, with the keys its section has and the likely one."""
        message = self.refused("[dht]\np2p_adress = 127.0.0.1:7402\n")
        self.assertIn("'p2p_adress'", message)
        self.assertIn("did you mean p2p_address?", message)
        for key in configSchema():
            if key.section == "dht":
                self.assertIn(key.name, message)

    def test_unknownSection(self):
        """A misspelt section is named, with the valid sections."""
        message = self.refused("[pth]\nx = 3\n")
        self.assertIn("[pth]", message)
        self.assertIn("did you mean path?", message)
        self.assertIn("[tunnel]", message)

    def test_keyInWrongSection(self):
        """A key of one section given in another is refused (the old README's mistake)."""
        message = self.refused("[phantom]\nget_timeout = 10\n")
        self.assertIn("[phantom] unknown key 'get_timeout'", message)

    def test_globalKeys(self):
        """Before the first section only VoidPhone's hostkey is known; dashes are not underscores."""
        self.assertIsNone(resolveConfig(configFile=self.write("hostkey = /k.pem\n")).apiAddress)
        self.assertIn("'data_dir'", self.refused("data_dir = /x\n[phantom]\n"))
        self.assertIn("'data-dir'", self.refused("[phantom]\ndata-dir = /x\n"))

    def test_badValueNamesKey(self):
        """A bad value names the file, section and key."""
        self.assertIn("[dht] p2p_address", self.refused("[dht]\np2p_address = nowhere\n"))
        self.assertIn("[phantom] log_level", self.refused("[phantom]\nlog_level = loud\n"))

    @given(st.text(alphabet=string.ascii_lowercase + "_-", min_size=1, max_size=20))
    def test_anyUnknownKeyRefused(self, name):
        """Every name the schema does not know is refused in every section; known ones are not."""
        known = {(key.section, key.name) for key in configSchema()}
        path = self.write("")
        for section in ("phantom", "dht", "link", "path", "tunnel"):
            with open(path, "w") as f:
                f.write(f"[{section}]\n{name} = 1\n")
            if (section, name) in known:
                continue
            with self.assertRaises(ConfigError):
                readConfigFile(path)

    def test_binaryFile(self):
        """A file that is not text is refused with one line."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\xff\xfe[dht]\x00")
        with self.assertRaises(ConfigError) as caught:
            resolveConfig(configFile=path)
        self.assertIn(path, str(caught.exception))


class EffectiveConfigTests(SynchronousTestCase):
    """--print-config: the effective value of every key, and where it came from."""

    def test_sources(self):
        """Defaults, the file and the command line are each named."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[link]\nidle_timeout = 45\n[dht]\np2p_address = 127.0.0.9:7502\n")
        config = resolveConfig(configFile=path, dataDir="/d")
        settings = {(s.key.section, s.key.name): (s.value, s.source) for s in config.settings}
        self.assertEqual(settings[("link", "idle_timeout")], ("45", f"file {path}"))
        self.assertEqual(settings[("dht", "p2p_address")], ("127.0.0.9:7502", f"file {path}"))
        self.assertEqual(settings[("phantom", "data_dir")], ("/d", "command line"))
        self.assertEqual(settings[("link", "open_timeout")], ("10", "default"))
        self.assertEqual(len(settings), len(configSchema()))
        overridden = resolveConfig(configFile=path, port="7600")
        self.assertIn(("127.0.0.9:7600", "command line"), [(s.value, s.source) for s in overridden.settings])

    def test_printedConfigReads(self):
        """What --print-config prints is a config file that gives the same configuration."""
        config = resolveConfig(dataDir="/d", port="7402", listenAddress="127.0.0.5", forward="127.0.0.1:9000=fd00::1")
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(formatConfig(config))
        again = resolveConfig(configFile=path)
        self.assertEqual(again, config)
        self.assertEqual({s.source for s in again.settings}, {f"file {path}"})


class ReferenceTests(SynchronousTestCase):
    """docs/config.md and the README agree with the schema."""

    def test_referenceCurrent(self):
        """docs/config.md is what python -m phantom.config prints: every key, documented."""
        with open(os.path.join(ROOT, "docs", "config.md"), encoding="utf-8") as f:
            self.assertEqual(f.read(), configReference(), "regenerate: python -m phantom.config > docs/config.md")
        for key in configSchema():
            self.assertTrue(key.doc, f"[{key.section}] {key.name} has no docstring")

    def test_readmeExample(self):
        """The README's example config file parses, every value as it says."""
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        example = re.search(r"```ini\n(.*?)```", readme, re.S).group(1)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(example)
        config = resolveConfig(configFile=path)
        fromFile = {(s.key.section, s.key.name) for s in config.settings if s.source != "default"}
        self.assertLessEqual(set(readConfigFile(path)), fromFile)

    def test_readmeOptions(self):
        """Every option of twistd phantom is in the README's options table."""
        from phantom.tap import Options

        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        missing = [option[0] for option in Options.optFlags + Options.optParameters if f"`--{option[0]}`" not in readme]
        self.assertEqual(missing, [])


class KeptPathsTests(SynchronousTestCase):
    """[path] entry_paths and exit_paths, and where a node keeps them."""

    def configWith(self, text, **options):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return resolveConfig(configFile=path, dataDir="/d", **options)

    def test_counts(self):
        """2 entry paths (issue 13: an AP-address with two entry nodes) and 1 exit path by default; 0 turns them off; negative or more than 8 are refused."""
        from phantom.config import PathSettings

        self.assertEqual((PathSettings().entryPaths, PathSettings().exitPaths), (2, 1))
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

        self.assertEqual(kept(), (2, 0))
        self.assertEqual(kept(serve="none"), (0, 0))
        self.assertEqual(kept(serve="none", tun="phantom0"), (2, 1))
        self.assertEqual(kept(forward="127.0.0.1:9000=fd00::1"), (2, 1))
        self.assertEqual(kept(tun="phantom0", ownExit=True, ownEntry=True), (0, 0))
