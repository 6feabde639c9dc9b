"""C{phantomctl status} without Twisted, and what phantomctl does as a program: version, help, pipes."""

import os
import subprocess

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.amp import AmpList, Float, Integer, ListOf, Unicode
from twisted.trial.unittest import SynchronousTestCase, TestCase

from phantom.control import responses
from phantom.control.cli import RouteLookupOptions, isoTime, quickStatusNode
from phantom.control.commands import Status
from phantom.control.quick import STATUS_TYPES, decodeBoxes, decodeFields, decodeTexts, encodeBox
from phantom.version import PROTOCOL_VERSION, packageVersion
from tests.control.helpers import OTHER_ID, FakeNode, contact
from tests.control.test_control import PHANTOMCTL, shortDirectory, startNode

keys = st.binary(min_size=1, max_size=20).filter(lambda k: not k.startswith(b"_"))
boxes = st.dictionaries(keys, st.binary(max_size=300), max_size=5)


class QuickDecoderTests(SynchronousTestCase):
    """The standard-library AMP decoder reads what the node's AMP writes."""

    def test_typesMatchCommand(self):
        """STATUS_TYPES names every field of the Status response that is not text, as its type."""
        def expected(schema):
            types = {}
            for name, argument in schema:
                if isinstance(argument, AmpList):
                    types[name.decode()] = expected(argument.subargs)
                elif isinstance(argument, ListOf) and isinstance(argument.elementType, Unicode):
                    types[name.decode()] = [str]
                elif isinstance(argument, (Integer, Float)):
                    types[name.decode()] = int if isinstance(argument, Integer) else float
                else:
                    self.assertIsInstance(argument, Unicode, f"{name}: teach phantom.control.quick its type")
            return types

        self.assertEqual(STATUS_TYPES, expected(Status.response))

    def test_decodesStatus(self):
        """A node's Status answer, as AMP serializes it, decodes to what ControlClient gets."""
        node = FakeNode()
        node.startedAt = 0.0
        node.reactor.advance(12.5)
        node.table.extend([contact(OTHER_ID), contact(OTHER_ID)])
        answer = responses.status(node)
        box = Status.makeResponse(answer, None)
        box[b"_answer"] = b"1"
        decoded = decodeBoxes(box.serialize())
        self.assertEqual(len(decoded), 1)
        fields = decodeFields({k: v for k, v in decoded[0].items() if not k.startswith("_")}, STATUS_TYPES)
        self.assertEqual(fields, answer)

    @given(st.lists(st.text(max_size=60), max_size=8))
    def test_textListRoundTrip(self, texts):
        """A C{ListOf(Unicode())} value as AMP writes it decodes to its texts."""
        self.assertEqual(decodeTexts(ListOf(Unicode()).toString(texts)), texts)

    @given(st.binary(max_size=40))
    def test_textListBadInput(self, value):
        """Any bytes as a list of texts: its texts, or ValueError, nothing else."""
        try:
            decodeTexts(value)
        except ValueError:
            pass

    @given(st.lists(boxes, max_size=4))
    def test_roundTrip(self, written):
        """Any boxes encoded are decoded as they were."""
        data = b"".join(encodeBox(box) for box in written)
        self.assertEqual(decodeBoxes(data), [{k.decode("ascii", "replace"): v for k, v in box.items()} for box in written])
        self.assertEqual(len(decodeBoxes(data[:-1])), max(0, len(written) - 1))

    @given(st.binary(max_size=200))
    def test_anyBytes(self, data):
        """Bytes that are no boxes give what whole boxes they begin with, and no error."""
        self.assertIsInstance(decodeBoxes(data), list)

    def test_quickStatusForms(self):
        """Only the text status goes the quick way."""
        self.assertEqual(quickStatusNode(["--node", "/d", "status"]), "/d")
        self.assertEqual(quickStatusNode(["-n", "/d", "status"]), "/d")
        self.assertEqual(quickStatusNode(["--node=/d", "status"]), "/d")
        self.assertIsNotNone(quickStatusNode(["status"]))
        for argv in (["status", "--json"], ["--node", "/d", "peers"], ["-h"], []):
            self.assertIsNone(quickStatusNode(argv))

    def test_isoTimes(self):
        """Times in text output are ISO 8601."""
        self.assertEqual(isoTime(0), "1970-01-01T00:00:00Z")
        text = RouteLookupOptions().render({"found": True, "ap_address": "fd00::1", "sequence": 3, "expires": 1800000000, "entry_nodes": []})
        self.assertIn("expires at 2027-01-15T08:00:00Z", text)


def run(*argv, stdout=subprocess.PIPE):
    return subprocess.run([PHANTOMCTL, *argv], stdout=stdout, stderr=subprocess.PIPE, env=os.environ, timeout=30)


class ProgramTests(SynchronousTestCase):
    """phantomctl as a program."""

    def test_version(self):
        """--version names Phantom's version and the protocol's, not Twisted's."""
        done = run("--version")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(done.stdout.decode().strip(), f"phantomctl (Phantom) {packageVersion()}, protocol {PROTOCOL_VERSION}")

    def test_help(self):
        """-h is --help; the usage line names the program and the command."""
        self.assertTrue(run("-h").stdout.startswith(b"Usage: phantomctl [--node DIR] COMMAND"))
        self.assertTrue(run("dht", "put", "-h").stdout.startswith(b"Usage: phantomctl [--node DIR] dht put KEY VALUE"))

    def test_closedPipe(self):
        """A reader that went away (phantomctl ... | head) is no traceback."""
        for argv in (["-h"], ["--node", "/nonexistent", "status"], ["--version"]):
            readEnd, writeEnd = os.pipe()
            os.close(readEnd)
            done = run(*argv, stdout=writeEnd)
            os.close(writeEnd)
            self.assertNotIn(b"Traceback", done.stderr, argv)
            self.assertNotIn(b"BrokenPipe", done.stderr, argv)

    def test_nonApRefused(self):
        """Addresses outside fd00::/8 are refused before anything is sent."""
        for argv in (["route", "lookup", "10.0.0.1"], ["tunnel", "open", "2001:db8::1"]):
            done = run("--node", "/nonexistent", *argv)
            self.assertEqual(done.returncode, 2)
            self.assertIn(b"not an AP-address", done.stderr)


class QuickStatusTests(TestCase):
    """phantomctl status, the quick way, against a real node."""

    async def test_status(self):
        """The text is what the Twisted way prints; and no node: exit 1 with a message."""
        node = startNode(self, "127.0.0.29")
        out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", node.config.dataDir, "status"], env=os.environ)
        self.assertEqual(code, 0, err)
        self.assertIn(f"node       {node.nodeId.hex()}", out.decode())
        self.assertIn(f"listening  {node.address}", out.decode())
        out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", shortDirectory(self), "status"], env=os.environ)
        self.assertEqual(code, 1)
        self.assertIn(b"no node answers", err)
