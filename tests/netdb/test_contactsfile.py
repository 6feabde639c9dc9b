"""
C{contacts.json}: what a node makes of any file in its place, and when it writes it. Nodes in
memory on a driven clock, the file in a temporary directory.
"""

import json
import os

from hypothesis import given, settings, strategies as st
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact
from phantom.netdb.contactsfile import MAX_CONTACTS_FILE, encodeContacts, parseContacts
from phantom.netdb.service import CONTACTS_FILE
from tests.netdb.helpers import MemoryDht
from tests.properties import mutated

hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
contacts = st.builds(Contact, hosts, st.integers(1, 0xFFFF), st.binary(min_size=32, max_size=32))
jsonValues = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["host", "port", "node_id", "x"]), children, max_size=4),
    max_leaves=20,
)


class ParseTests(SynchronousTestCase):
    @given(st.lists(contacts, max_size=30))
    def test_roundTrip(self, saved):
        """What a node writes it reads back."""
        self.assertEqual(parseContacts(encodeContacts(saved)), saved)

    @settings(max_examples=300)
    @given(st.one_of(mutated(st.lists(contacts, min_size=1, max_size=3).map(encodeContacts)), jsonValues.map(lambda v: json.dumps(v).encode())))
    def test_anythingParsedOrRefused(self, data):
        """Any bytes give valid contacts, or ValueError; nothing else escapes."""
        try:
            parsed = parseContacts(data)
        except ValueError:
            return
        self.assertEqual(parseContacts(encodeContacts(parsed)), parsed)
        for contact in parsed:
            self.assertEqual(len(contact.nodeId), 32)
            self.assertTrue(1 <= contact.port <= 0xFFFF)

    def test_refused(self):
        """Each kind of damage found, with its reason."""
        good = {"host": "10.0.0.1", "port": 7402, "node_id": "ab" * 32}
        cases = {
            "nested too deep": b"[" * 100_000 + b"]" * 100_000,
            "not a list": b'{"host": "10.0.0.1"}',
            "not an object": b"[1]",
            "no host": json.dumps([{**good, "host": 5}]).encode(),
            "not an IP address": json.dumps([{**good, "host": "example.org"}]).encode(),
            "no port": json.dumps([{**good, "port": 70000}]).encode(),
            "no node id": json.dumps([{**good, "node_id": "ab" * 30}]).encode(),
            "longer than": b" " * (MAX_CONTACTS_FILE + 1),
        }
        for why, data in cases.items():
            with self.assertRaises(ValueError) as raised:
                parseContacts(data)
            self.assertIn(why, str(raised.exception))
        self.assertRaises(ValueError, parseContacts, json.dumps([{**good, "port": True}]).encode())
        self.assertRaises(ValueError, parseContacts, json.dumps([{**good, "node_id": "zz" * 32}]).encode())


class NodeTests(SynchronousTestCase):
    """A node with a data directory: what it reads at start, what it writes and when."""

    def setUp(self):
        self.dht = MemoryDht(self)
        self.nodes = self.dht.start(4)
        self.dataDir = self.mktemp()
        os.makedirs(self.dataDir)
        self.path = os.path.join(self.dataDir, CONTACTS_FILE)

    def startWith(self, content):
        """Start a node whose data directory holds C{content} as its contacts file; @return: its warnings."""
        if content is not None:
            with open(self.path, "wb") as f:
                f.write(content)
        with capturedLogs() as events:
            node = self.dht.startNode(20, bootstrap=[self.nodes[0].contact], dataDir=self.dataDir)
            self.dht.run(node.joined)
        self.assertEqual([event for event in events if event.get("log_failure")], [])
        self.assertGreater(len(node.table), 2)
        return node, [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]

    def test_damagedFileIgnored(self):
        """
        A 30-byte node id or JSON nested 100,000 deep (which stopped the node with a
        traceback), or any other damage: one warning, and the node joins through its bootstrap.
        """
        for content in (
            json.dumps([{"host": "10.0.0.1", "port": 7402, "node_id": "ab" * 30}]).encode(),
            b"[" * 100_000 + b"]" * 100_000,
            b"\xff\xfe",
        ):
            node, warnings = self.startWith(content)
            self.assertEqual(len(warnings), 1, warnings)
            self.assertIn(f"ignoring unreadable {self.path}", warnings[0])
            self.dht.stop(node)

    def test_directoryInPlace(self):
        """A directory where the file should be: reading and saving it are warnings, no traceback."""
        os.mkdir(self.path)
        node, warnings = self.startWith(None)
        self.assertIn(f"ignoring unreadable {self.path}", warnings[0])
        self.assertIn(f"could not save {self.path}", warnings[1])
        self.assertEqual(os.listdir(self.dataDir), [CONTACTS_FILE])

    def test_writtenOnJoining(self):
        """The contacts are written as soon as the node has joined, not at the first upkeep."""
        node, _ = self.startWith(None)
        with open(self.path, "rb") as f:
            self.assertEqual(set(parseContacts(f.read())), set(node.table))
        self.assertEqual(os.listdir(self.dataDir), [CONTACTS_FILE])
