"""C{phantomctl}'s subcommands: what they ask, what C{--json} prints, and their text; in memory."""

import hashlib
from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import formatAddress
from phantom.control.cli import Options, formatUptime, parseKey
from phantom.netdb.interfaces import PutOutcome
from tests.control.helpers import AP_ADDRESS, EXIT_ADDRESS, FAR_AP_ADDRESS, NODE_ID, OTHER_ID, FakeNode, contact, fakePath, fakeTunnel, memoryClient

FAR = formatAddress(FAR_AP_ADDRESS)


class SubcommandTests(SynchronousTestCase):
    """Each subcommand, parsed as phantomctl parses it, asking a L{FakeNode}."""

    def setUp(self):
        self.node = FakeNode()
        self.client, self.endpoint = memoryClient(self.node)

    def phantomctl(self, *argv, advance=()):
        """
        @return: what C{phantomctl --json ARGV} and C{phantomctl ARGV} print, asking the fake node.
        """
        printed = []
        for json in (True, False):
            options = Options()
            options.parseOptions(["--node", "/nowhere", *argv] + (["--json"] if json else []))
            subcommand = options.subOptions
            while hasattr(subcommand, "subOptions"):
                subcommand = subcommand.subOptions
            d = Deferred.fromCoroutine(subcommand.ask(self.client))
            self.endpoint.flush()
            for seconds in advance:
                self.node.reactor.advance(seconds)
            self.endpoint.flush()
            result = self.successResultOf(d)
            printed.append(result if json else subcommand.render(result))
        return printed

    def test_status(self):
        """status: uptime rounded to milliseconds; the exit APs; each peer on a line of its own."""
        self.node.startedAt = 0.0
        self.node.reactor.advance(3723.45678)
        self.node.table.append(contact(OTHER_ID))
        result, text = self.phantomctl("status")
        self.assertEqual(result["uptime"], 3723.457)
        self.assertIn("uptime     1h 2m 3s", text)
        self.assertIn(f"  {OTHER_ID.hex()}  127.0.0.5:7402  in 0 out 0", text)
        self.assertIn(f"exit APs   {formatAddress(EXIT_ADDRESS)} (connects out from the first; never published)", text)

    def test_statusApAddressAndKeptPaths(self):
        """status names the node's AP-address and the state of the entry and exit paths it keeps."""
        self.node.kept = [
            {"kind": "entry", "wanted": 1, "built": 1, "building": 0, "failures": 0, "last_error": ""},
            {"kind": "exit", "wanted": 1, "built": 0, "building": 1, "failures": 2, "last_error": "no exit path"},
        ]
        result, text = self.phantomctl("status")
        self.assertEqual(result["ap_address"], formatAddress(self.node.apAddress))
        self.assertEqual(result["kept_paths"], self.node.kept)
        self.assertIn(f"AP-address {formatAddress(self.node.apAddress)}", text)
        self.assertIn("entry path 1 of 1 built\n", text)
        self.assertIn("exit path  0 of 1 built, 1 building; 2 failed, last: no exit path", text)

    def test_peers(self):
        """peers: requests per lookup."""
        self.node.lookups = (4, 10)
        result, text = self.phantomctl("peers")
        self.assertEqual(result["lookup_requests"], 10)
        self.assertIn("lookups    4 (2.5 requests each)", text)

    def test_dht(self):
        """dht put hashes a key that is not 64 hex digits; dht get prints the value, or that there is none."""
        stored, text = self.phantomctl("dht", "put", "greeting", "hello", "--ttl", "60")
        key = hashlib.sha256(b"greeting").hexdigest()
        self.assertEqual(stored, {"key": key, "stored": True, "here": True, "replicas": 3})
        self.assertEqual(text, f"stored under {key} here and on 3 other nodes")
        self.assertEqual(self.node.puts[0][2:], (60, 20))
        self.assertEqual(self.phantomctl("dht", "get", "greeting"), [{"key": key, "found": True, "value": "hello", "value_hex": b"hello".hex()}, "hello"])
        self.assertEqual(self.phantomctl("dht", "get", "ab" * 32), [{"key": "ab" * 32, "found": False}, f"nothing found under {'ab' * 32}"])

    def test_dhtPutThroughAFullStore(self):
        """dht put through a node whose store is full says the value is not kept there, and where it is."""
        key = hashlib.sha256(b"greeting").hexdigest()
        self.node.putOutcome = PutOutcome(2, here=False)
        stored, text = self.phantomctl("dht", "put", "greeting", "hello")
        self.assertEqual(stored, {"key": key, "stored": True, "here": False, "replicas": 2})
        self.assertEqual(text, f"stored under {key} on 2 other nodes; not here: this node's store is full")
        self.node.putOutcome = PutOutcome(0, here=False)
        stored, text = self.phantomctl("dht", "put", "greeting", "hello")
        self.assertEqual((stored["stored"], text), (False, f"not stored under {key}: this node's store is full and no other node took it"))

    def test_pathBuild(self):
        """path build: phases and total rounded, one line each."""
        self.node.built = fakePath(phases={"plan": 0.123456, "round1": 1.0})
        result, text = self.phantomctl("path", "build", "--kind", "entry", "--x", "2", "--y", "3")
        self.assertEqual((result["phases"], result["seconds"]), ({"plan": 0.1235, "round1": 1.0}, 1.1235))
        self.assertEqual(text.splitlines(), ["built an entry path in 1.123 s", "  plan     0.123 s", "  round1   1.000 s", f"AP-address {formatAddress(AP_ADDRESS)}"])

    def test_pathList(self):
        """path list: a line a path, or that there are none."""
        self.assertEqual(self.phantomctl("path", "list"), [{"paths": []}, "no paths"])
        self.node.paths = [fakePath()]
        self.assertEqual(self.phantomctl("path", "list")[1], f"entry  2 X-nodes  x0 127.0.0.5:7402  0s old  {formatAddress(AP_ADDRESS)}")

    def test_routeLookup(self):
        """route lookup: the AP-address asked about is in the answer."""
        result, text = self.phantomctl("route", "lookup", FAR)
        self.assertEqual((result["found"], result["ap_address"]), (False, FAR))
        self.assertEqual(text, f"no routing entry for {FAR}")

    def test_tunnelOpen(self):
        """tunnel open: seconds rounded; the round trip in milliseconds."""
        self.node.echoSeconds = 0.0123456
        result, text = self.phantomctl("tunnel", "open", FAR, advance=(0.5, 0.0123456))
        self.assertEqual((result["open_seconds"], result["rtt_seconds"]), (0.5, 0.0123))
        self.assertEqual(text, f"tunnel to {FAR} open in 500 ms (end-to-end TLS verified); 1 KiB round trip 12.3 ms")

    def test_tunnelOpenNoEcho(self):
        """tunnel open when nothing came back: no echo."""
        self.node.echo = False
        self.assertTrue(self.phantomctl("tunnel", "open", FAR, advance=(0.5, 5))[1].endswith("1 KiB round trip no echo"))

    def test_tunnelList(self):
        """tunnel list: the node's AP-address, then a line a tunnel."""
        self.node.tunnels = [fakeTunnel(peer=None)]
        result, text = self.phantomctl("tunnel", "list")
        self.assertEqual(result["ap_address"], formatAddress(AP_ADDRESS))
        self.assertEqual(text.splitlines()[1], "out  peer not yet known  0s old  0 B sent  0 B received")

    def test_tunStatus(self):
        """tun status without a device says how to get one; with one, its AP-address and exit APs."""
        result, text = self.phantomctl("tun", "status")
        self.assertEqual(result["counts"], {})
        self.assertTrue(text.startswith("no tun device (start the node with --tun NAME)"))
        self.node.device = SimpleNamespace(name="phantom0")
        self.node.router = SimpleNamespace(tunnels={}, counts={})
        result, text = self.phantomctl("tun", "status")
        self.assertEqual(result["exit_addresses"], [formatAddress(EXIT_ADDRESS)])
        self.assertEqual(text.splitlines()[1], f"  exit AP {formatAddress(EXIT_ADDRESS)}/128 (programs connect out from it)")


class CommandLineTests(SynchronousTestCase):
    """phantomctl's options."""

    def test_commandNeeded(self):
        """phantomctl, and each group, need a command."""
        for argv in ([], ["dht"], ["path"]):
            self.assertRaises(UsageError, Options().parseOptions, argv)

    def test_badOptions(self):
        """A kind that is neither exit nor entry, and an empty value, are usage errors."""
        for argv in (["path", "build", "--kind", "sideways"], ["dht", "put", "k", ""]):
            self.assertRaises(UsageError, Options().parseOptions, argv)

    def test_uptime(self):
        self.assertEqual(formatUptime(93784.2), "1d 2h 3m 4s")
        self.assertEqual(formatUptime(5), "5s")

    def test_parseKey(self):
        """64 hex digits are the key; anything else is hashed."""
        self.assertEqual(parseKey(NODE_ID.hex()), NODE_ID)
        self.assertEqual(parseKey("z" * 64), hashlib.sha256(b"z" * 64).digest())
