"""The node's log: safe logging, levels, quiet control connections, rate-limited warnings, rotation."""

import io
import ipaddress
import json
import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import Logger, LogLevel, formatEvent, jsonFileLogObserver, textFileLogObserver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from phantom.config import LogSettings
from phantom.logs import OWN_ADDRESSES, SCRUBBED, RateLimitedObserver, keepOwnAddress, makeObserver, peerOf, rotatedFile, scrub

LINK_CLOSED = "link {direction} {peer} closed: {why}"
"""The link layer's warning for a peer that broke the protocol (phantom/link/protocol.py)."""

publicV4 = st.ip_addresses(v=4).filter(lambda a: a.is_global)
publicV6 = st.ip_addresses(v=6).filter(lambda a: not (a.is_loopback or a.is_unspecified or a.ipv4_mapped))
apAddresses = st.binary(min_size=15, max_size=15).map(lambda b: ipaddress.IPv6Address(b"\xfd" + b))


class Collect(list):
    """An observer keeping the text it would write."""

    def __call__(self, event):
        self.append(formatEvent(event))


class ScrubTests(SynchronousTestCase):
    """Safe logging scrubs every IP address and AP-address that is not this node's own or loopback."""

    @given(st.one_of(publicV4, publicV6, apAddresses), st.integers(1, 65535), st.text(max_size=20))
    def test_addressesScrubbed(self, address, port, words):
        """An address, bare, with a port, or bracketed, never survives."""
        for shown in (str(address), f"{address}:{port}", f"[{address}]:{port}"):
            line = scrub(f"{words} peer {shown} closed: {words}")
            self.assertNotIn(str(address), line)
            self.assertIn(SCRUBBED, line)

    @given(st.text())
    def test_anyText(self, text):
        """Any text is scrubbed without error, and text without a colon or dot is left as it is."""
        scrubbed = scrub(text)
        if ":" not in text and "." not in text:
            self.assertEqual(scrubbed, text)

    def test_kept(self):
        """Loopback, unspecified and the node's own addresses stay; times and versions are no addresses."""
        line = "listening on 192.0.2.7:7402, 127.0.0.5, [::1]:9, 0.0.0.0 at 13:08:22, twisted 24.10.0"
        self.assertEqual(scrub(line, keep=["192.0.2.7"]), line)

    def test_ownApAddressKept(self):
        """The node's published AP-address, once kept, stays in every line; other AP-addresses do not."""
        self.addCleanup(OWN_ADDRESSES.clear)
        line = "phantom node listening with AP-address fd12:3456:789a::1, a tunnel to fd99::2"
        self.assertEqual(scrub(line), f"phantom node listening with AP-address {SCRUBBED}, a tunnel to {SCRUBBED}")
        keepOwnAddress("fd12:3456:789a:0::1")
        self.assertEqual(scrub(line), f"phantom node listening with AP-address fd12:3456:789a::1, a tunnel to {SCRUBBED}")

    def test_eventFieldsAndFailures(self):
        """The text, the system (Twisted puts the peer's host in it) and a failure's traceback are scrubbed."""
        out = Collect()
        observer = makeObserver(LogSettings(), out)
        try:
            raise ValueError("refused by 198.51.100.7")
        except ValueError:
            failure = Failure()
        observer({
            "log_format": "from {peer}", "peer": "203.0.113.9:4000", "log_level": LogLevel.error,
            "log_namespace": "x", "log_time": 0.0, "log_failure": failure, "log_system": "Factory,5,203.0.113.9",
        })
        self.assertNotIn("203.0.113.9", out[0])
        self.assertNotIn("198.51.100.7", out[0])
        self.assertIn("ValueError", out[0])

    def test_unsafeKeepsAddresses(self):
        """safe_logging = no writes addresses as they are, to debug."""
        out = Collect()
        makeObserver(LogSettings(safeLogging=False), out)(
            {"log_format": "from {peer}", "peer": "203.0.113.9:4000", "log_level": LogLevel.info, "log_namespace": "x", "log_time": 0.0}
        )
        self.assertEqual(out, ["from 203.0.113.9:4000"])


class LevelTests(SynchronousTestCase):
    """log_level, and the control socket's connections at debug level."""

    def events(self, level):
        out = Collect()
        log = Logger(namespace="phantom.test", observer=makeObserver(LogSettings(logLevel=level), out))
        log.debug("a debug line")
        log.info("an info line")
        log.warn("a warning")
        amp = Logger(namespace="twisted.protocols.amp", observer=log.observer)
        amp.info("{cls} connection established (HOST:{host} PEER:{peer})", cls="ControlProtocol", host="h", peer="p")
        amp.info("{cls} connection lost (HOST:{host} PEER:{peer})", cls="ControlProtocol", host="h", peer="p")
        return out

    def test_info(self):
        """At info (the default), debug lines and the control socket's connections are left out."""
        self.assertEqual(self.events("info"), ["an info line", "a warning"])

    def test_debug(self):
        """At debug, everything is written."""
        self.assertEqual(len(self.events("debug")), 5)

    def test_warn(self):
        self.assertEqual(self.events("warn"), ["a warning"])


class RateLimitTests(SynchronousTestCase):
    """Repeated warnings: one line per kind per peer per interval, a bounded number per kind, a count."""

    def flood(self, count, seconds, hosts):
        """C{count} bad-connection warnings over C{seconds}, from C{hosts} addresses; @return: bytes written."""
        text = io.StringIO()
        observer = makeObserver(LogSettings(), textFileLogObserver(text))
        for i in range(count):
            host = f"198.51.{i % hosts // 256}.{i % hosts % 256}"
            observer({
                "log_format": LINK_CLOSED, "direction": "from", "peer": f"{host}:{40000 + i % 20000}",
                "why": "protocol error: a frame of 3 bytes", "log_level": LogLevel.warn,
                "log_namespace": "phantom.link.protocol.LinkProtocol", "log_time": 1.8e9 + i * seconds / count,
            })
        return text.getvalue()

    def test_floodOnePeer(self):
        """10,000 bad connections from one host within a minute: one line."""
        written = self.flood(10_000, 30.0, hosts=1)
        self.assertEqual(len(written.splitlines()), 1)

    def test_floodManyPeers(self):
        """
        10,000 bad connections from 10,000 hosts over 10 minutes write at most 10 bytes per
        connection (log_bytes_per_bad_connection), and the lines say how many were left out.
        """
        written = self.flood(10_000, 600.0, hosts=10_000)
        perConnection = len(written.encode()) / 10_000
        self.assertLessEqual(perConnection, 10)
        self.assertIn("more like this left out", written)
        self.assertNotIn("198.51.", written)

    def test_otherKindsStillWritten(self):
        """A flood of one kind does not silence another kind, nor the same kind about another peer."""
        out = Collect()
        limited = RateLimitedObserver(out, interval=60.0, perKind=10)
        for i in range(1000):
            limited({"log_format": "bad {peer}", "peer": "192.0.2.1:1", "log_level": LogLevel.warn, "log_time": i / 100})
        limited({"log_format": "bad {peer}", "peer": "192.0.2.2:1", "log_level": LogLevel.warn, "log_time": 10.0})
        limited({"log_format": "other {peer}", "peer": "192.0.2.1:1", "log_level": LogLevel.warn, "log_time": 10.0})
        limited({"log_format": "info {peer}", "peer": "192.0.2.1:1", "log_level": LogLevel.info, "log_time": 10.0})
        self.assertEqual(
            out, ["bad 192.0.2.1:1", "bad 192.0.2.2:1 (999 more like this left out)", "other 192.0.2.1:1", "info 192.0.2.1:1"]
        )
        limited({"log_format": "bad {peer}", "peer": "192.0.2.1:1", "log_level": LogLevel.warn, "log_time": 70.0})
        self.assertEqual(out[-1], "bad 192.0.2.1:1")

    def test_peerOf(self):
        self.assertEqual(peerOf({"peer": "[2001:db8::1]:7402"}), "2001:db8::1")
        self.assertEqual(peerOf({"peer": "192.0.2.1:7402"}), "192.0.2.1")
        self.assertIsNone(peerOf({}))


class FileTests(SynchronousTestCase):
    """Rotated files are bounded in number; JSON lines are scrubbed too."""

    def test_rotationBounded(self):
        """However much is written, at most log_files rotated files are kept."""
        directory = self.mktemp()
        os.mkdir(directory)
        settings = LogSettings(logFiles=3, logFileBytes=1000)
        logFile = rotatedFile(os.path.join(directory, "node.log"), settings)
        for i in range(100):
            logFile.write("x" * 200 + "\n")
        logFile.close()
        self.assertEqual(sorted(os.listdir(directory)), ["node.log", "node.log.1", "node.log.2", "node.log.3"])

    def test_json(self):
        """The JSON lines file holds one object per event, its addresses scrubbed."""
        text = io.StringIO()
        observer = makeObserver(LogSettings(), Collect(), writeJson=jsonFileLogObserver(text))
        Logger(namespace="n", observer=observer).warn("from {peer}", peer="203.0.113.9:1")
        events = [json.loads(record) for record in text.getvalue().split("\x1e") if record]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_format"], f"from {SCRUBBED}:1")
        self.assertNotIn("203.0.113.9", text.getvalue())
