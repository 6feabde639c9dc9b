"""
L{ControlClient} against the control socket's responders: in memory on a driven clock, and
once over a real unix socket; and what the socket does with bad input.
"""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase, TestCase
from hypothesis import given, settings
from hypothesis import strategies as st

from phantom.address import formatAddress
from phantom.control import CONTROL_SOCKET
from phantom.control.client import TIMEOUT, ControlClient, ControlError
from phantom.control.commands import Status
from phantom.control.server import BAD_ARGUMENTS, COMMANDS, NO_COMMAND, PROBE_TIMEOUT, ControlService
from phantom.errors import PathFailed, TunnelFailed
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from tests.control.helpers import AP_ADDRESS, FAR_AP_ADDRESS, NODE_ID, OTHER_ID, THIRD_ID, FakeNode, contact, fakePath, fakeTunnel, memoryClient

FAR = formatAddress(FAR_AP_ADDRESS)


class MemoryClientTests(SynchronousTestCase):
    """Each question, its answer, and how the client fails; over memory, on a driven clock."""

    def setUp(self):
        self.node = FakeNode()
        self.client, self.endpoint = memoryClient(self.node)

    def answer(self, d):
        """@return: the result of C{d} once the bytes have moved; every connection is closed by then."""
        self.endpoint.flush()
        result = self.successResultOf(d)
        self.assertEqual(self.endpoint.open(), 0)
        return result

    def refusal(self, d):
        """@return: the message of the L{ControlError} C{d} fails with once the bytes have moved."""
        self.endpoint.flush()
        message = str(self.failureResultOf(d, ControlError).value)
        self.assertEqual(self.endpoint.open(), 0)
        return message

    def test_status(self):
        """C{status}: the node's state, its peers as plain dicts."""
        self.node.links = (2, 1)
        self.node.linked = [{"nodeId": OTHER_ID, "address": "127.0.0.5:7402", "inbound": 0, "outbound": 2}]
        status = self.answer(self.client.status())
        self.assertEqual((status["node_id"], status["links"], status["connections"]), (NODE_ID.hex(), 2, 1))
        self.assertEqual(status["peers"], [{"node_id": OTHER_ID.hex(), "address": "127.0.0.5:7402", "inbound": 0, "outbound": 2}])
        self.assertIs(type(status["peers"][0]), dict)

    def test_peers(self):
        """C{peers}: contacts and buckets as plain dicts, and the counts."""
        self.node.table.append(contact(THIRD_ID))
        self.node.table.buckets.append({"index": 1, "size": 1, "replacements": 0, "lastTouched": 0.0})
        self.node.lookups = (2, 9)
        peers = self.answer(self.client.peers())
        self.assertEqual([c["node_id"] for c in peers["contacts"]], [THIRD_ID.hex()])
        self.assertEqual(peers["buckets"], [{"index": 1, "size": 1, "replacements": 0, "idle": 0.0}])
        self.assertEqual((peers["lookups"], peers["lookup_requests"], peers["stored"]), (2, 9, 0))

    def test_dhtPutGet(self):
        """C{dhtPut} stores through the node and answers the replicas; C{dhtGet} finds the value, or C{None}."""
        key = b"k" * 32
        self.assertEqual(self.answer(self.client.dhtPut(key, b"value", ttl=60, replication=5)), 3)
        self.assertEqual(self.node.puts, [(key, b"value", 60, 5)])
        self.assertEqual(self.answer(self.client.dhtGet(key)), b"value")
        self.assertIsNone(self.answer(self.client.dhtGet(b"x" * 32)))

    def test_pathBuild(self):
        """C{pathBuild} asks for the kind and shape; the phases come back by name."""
        self.node.built = fakePath(phases={"plan": 0.5, "link": 0.25})
        built = self.answer(self.client.pathBuild("entry", 2, 3))
        self.assertEqual(self.node.builds, [(PathKind.ENTRY, PathShape(2, 3))])
        self.assertEqual(built["phases"], {"plan": 0.5, "link": 0.25})
        self.assertEqual((built["kind"], built["ap_address"], built["seconds"]), ("entry", formatAddress(AP_ADDRESS), 0.75))

    def test_pathBuildFailed(self):
        """A build that fails says why; a shape the layout rules refuse is not even tried."""
        self.node.built = PathFailed("no entry path after 3 attempts: too few nodes")
        self.assertEqual(self.refusal(self.client.pathBuild("entry", 2, 3)), "the node could not: no entry path after 3 attempts: too few nodes")
        self.assertIn("the node could not:", self.refusal(self.client.pathBuild("exit", 1, 0)))
        self.assertEqual(len(self.node.builds), 1)

    def test_badKind(self):
        """A kind that is neither exit nor entry is refused, and the node still answers after it."""
        self.assertIn("sideways", self.refusal(self.client.pathBuild("sideways", 2, 3)))
        self.assertEqual(self.node.builds, [])
        self.assertEqual(self.answer(self.client.status())["node_id"], NODE_ID.hex())

    def test_pathList(self):
        """C{pathList}: the paths as plain dicts."""
        self.node.paths = [fakePath()]
        [path] = self.answer(self.client.pathList())
        self.assertEqual((path["kind"], path["x0"], path["length"]), ("entry", "127.0.0.5:7402", 2))

    def test_routeLookup(self):
        """C{routeLookup} parses the AP-address on the node and answers its entry, or none."""
        self.node.routes[FAR_AP_ADDRESS] = type("Record", (), {"sequence": 2, "expires": 99, "entryNodes": [contact(OTHER_ID)]})
        route = self.answer(self.client.routeLookup(FAR))
        self.assertEqual(route, {"found": True, "sequence": 2, "expires": 99, "entry_nodes": [{"node_id": OTHER_ID.hex(), "address": "127.0.0.5:7402"}]})
        self.assertFalse(self.answer(self.client.routeLookup(formatAddress(AP_ADDRESS)))["found"])
        self.assertEqual(self.node.lookedUp, [FAR_AP_ADDRESS, AP_ADDRESS])

    def test_routeLookupBadAddress(self):
        """Text that is no IPv6 address is refused with the reason, and nothing is looked up."""
        self.assertIn("not an IPv6 address", self.refusal(self.client.routeLookup("nonsense")))
        self.assertEqual(self.node.lookedUp, [])

    def test_tunnelOpen(self):
        """
        C{tunnelOpen}: the node opens a tunnel, times a 1 KiB echo through it on its clock, and
        closes it.
        """
        d = self.client.tunnelOpen(FAR)
        self.endpoint.flush()
        self.node.reactor.advance(self.node.openSeconds)
        self.node.reactor.advance(self.node.echoSeconds)
        opened = self.answer(d)
        self.assertEqual(opened, {"ap_address": FAR, "peer": FAR, "open_seconds": 0.5, "rtt_seconds": 0.25})
        self.assertEqual(self.node.opened, [FAR_AP_ADDRESS])

    def test_tunnelOpenNoEcho(self):
        """When nothing comes back through the tunnel, the round trip is -1."""
        self.node.echo = False
        d = self.client.tunnelOpen(FAR)
        self.endpoint.flush()
        self.node.reactor.advance(self.node.openSeconds)
        self.node.reactor.advance(PROBE_TIMEOUT)
        self.assertEqual(self.answer(d)["rtt_seconds"], -1.0)

    def test_tunnelOpenFailed(self):
        """A tunnel that cannot be opened says why."""
        self.node.tunnelError = TunnelFailed("the exit node closed it")
        self.assertEqual(self.refusal(self.client.tunnelOpen(FAR)), "the node could not: the exit node closed it")

    def test_tunnelList(self):
        """C{tunnelList}: the tunnels as plain dicts."""
        self.node.tunnels = [fakeTunnel(sent=5)]
        listed = self.answer(self.client.tunnelList())
        self.assertEqual((listed["ap_address"], listed["carried"]), (formatAddress(AP_ADDRESS), 0))
        self.assertEqual([(t["direction"], t["peer"], t["sent"]) for t in listed["tunnels"]], [("out", FAR, 5)])

    def test_tunStatus(self):
        """C{tunStatus}: the counts by event."""
        self.node.device = type("Device", (), {"name": "phantom0"})
        self.node.router = type("Router", (), {"tunnels": {}, "counts": {"to device": 3}})
        self.assertEqual(self.answer(self.client.tunStatus())["counts"], {"to device": 3})

    def test_timeout(self):
        """A node that does not answer in time: the client gives up, says so, and hangs up."""
        self.node.openSeconds = 20
        d = self.client.tunnelOpen(FAR, timeout=10)
        self.endpoint.flush()
        self.node.reactor.advance(9.5)
        self.assertNoResult(d)
        self.node.reactor.advance(0.5)
        self.assertEqual(self.refusal(d), "the node at memory did not answer")

    def test_defaultTimeout(self):
        """Questions other than builds and tunnels wait L{TIMEOUT} seconds by default."""
        self.node.findRoute = lambda apAddress: Deferred()
        d = self.client.routeLookup(FAR)
        self.endpoint.flush()
        self.node.reactor.advance(TIMEOUT - 0.5)
        self.assertNoResult(d)
        self.node.reactor.advance(0.5)
        self.assertIn("did not answer", self.refusal(d))

    def test_noNode(self):
        """Nobody listening: no node answers."""
        self.endpoint.refuse = True
        self.assertEqual(self.refusal(self.client.status()), "no node answers at memory (ConnectionRefusedError)")


class UnixSocketTests(TestCase):
    """The client and the control service over a real unix socket in a temporary directory."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="ph-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_status(self):
        """The client finds the node's socket in its data directory and asks it."""
        node = FakeNode(reactor)
        service = ControlService(node, self.directory, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        status = await ControlClient.forNode(reactor, self.directory).status()
        self.assertEqual(status["node_id"], NODE_ID.hex())

    async def test_noNode(self):
        """No socket in the directory: no node answers, and the message names the socket."""
        with self.assertRaises(ControlError) as raised:
            await ControlClient.forNode(reactor, self.directory).status()
        path = os.path.join(self.directory, CONTROL_SOCKET)
        self.assertEqual(str(raised.exception), f"no node answers at {path} (No such file or directory)")


class BadInputTests(SynchronousTestCase):
    """What the control socket does with bytes that are not a question it knows."""

    def setUp(self):
        self.node = FakeNode()
        self.client, self.endpoint = memoryClient(self.node)

    def test_garbage(self):
        """
        Bytes that are no AMP box close that connection, with the reason logged; the next
        connection is answered.
        """
        raw = Protocol()
        self.successResultOf(self.endpoint.connect(Factory.forProtocol(lambda: raw)))
        with capturedLogs() as events:
            raw.transport.write(b"\xff\xff" + b"x" * 300)
            self.endpoint.flush()
        self.assertTrue(self.endpoint.pumps[0].serverIO.disconnecting)
        warnings = [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]
        self.assertEqual(warnings, ["control socket: a key of 65535 bytes is no AMP box; closing the connection"])
        d = self.client.status()
        self.endpoint.flush()
        self.assertEqual(self.successResultOf(d)["node_id"], NODE_ID.hex())

    def test_unknownCommand(self):
        """A command the node does not know is refused, and the connection still answers."""
        protocol = amp.AMP()
        self.successResultOf(self.endpoint.connect(Factory.forProtocol(lambda: protocol)))
        refused = []
        protocol.callRemoteString(b"Reboot").addErrback(refused.append)
        known = protocol.callRemote(Status)
        self.endpoint.flush()
        [failure] = refused
        self.assertTrue(failure.check(amp.UnhandledCommand))
        self.assertEqual(self.successResultOf(known)["node_id"], NODE_ID.hex())


class RawBoxes(Protocol):
    """Sends AMP boxes as they are given, and keeps every box the node answers."""

    def __init__(self):
        self.answers = amp.BinaryBoxProtocol(self)
        self.boxes = []

    def connectionMade(self):
        self.answers.makeConnection(self.transport)

    def dataReceived(self, data):
        self.answers.dataReceived(data)

    def ampBoxReceived(self, box):
        self.boxes.append(box)

    def startReceivingBoxes(self, sender):
        pass

    def stopReceivingBoxes(self, reason):
        pass

    def send(self, **keys):
        self.transport.write(amp.AmpBox(**keys).serialize())


class BadArgumentTests(SynchronousTestCase):
    """
    Boxes that are AMP but no question the node can parse are refused with an error code and a
    logged warning: no traceback, the connection still answers.
    """

    def setUp(self):
        self.node = FakeNode()
        self.client, self.endpoint = memoryClient(self.node)
        self.raw = RawBoxes()
        self.successResultOf(self.endpoint.connect(Factory.forProtocol(lambda: self.raw)))

    def exchange(self, **keys):
        """@return: the warnings logged and the boxes answered after sending one box, then a Status."""
        del self.raw.boxes[:]
        with capturedLogs() as events:
            self.raw.send(**keys)
            self.raw.send(_command=b"Status", _ask=b"status")
            self.endpoint.flush()
        self.assertEqual([event for event in events if event.get("log_failure")], [])
        self.assertEqual([event for event in events if event["log_level"] >= LogLevel.error], [])
        self.assertFalse(self.endpoint.pumps[0].serverIO.disconnecting)
        self.assertEqual(self.raw.boxes[-1][b"_answer"], b"status")
        warnings = [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]
        return warnings, self.raw.boxes[:-1]

    def assertRefused(self, answers, code):
        [answer] = answers
        self.assertEqual((answer[b"_error"], answer[b"_error_code"]), (b"1", code))
        return answer[b"_error_description"].decode()

    def test_noCommandName(self):
        """A question without C{_command} is answered C{NO_COMMAND}."""
        warnings, answers = self.exchange(_ask=b"1", key=b"x")
        self.assertIn("naming no command", self.assertRefused(answers, NO_COMMAND))
        self.assertEqual(warnings, ["control socket: a question naming no command (keys _ask, key); refused"])

    def test_asksNothing(self):
        """An answer to a question the node never asked, or an empty box, is logged and ignored."""
        for keys in ({"_answer": b"7", "x": b"1"}, {"_error": b"7"}, {"x": b"1"}):
            warnings, answers = self.exchange(**keys)
            self.assertEqual(answers, [])
            self.assertEqual(len(warnings), 1)
            self.assertIn("a box that asks nothing", warnings[0])

    def test_nonNumericTtl(self):
        """A C{DhtPut} whose C{ttl} is no number is answered C{BAD_ARGUMENTS}; nothing is stored."""
        warnings, answers = self.exchange(_command=b"DhtPut", _ask=b"1", key=b"k", value=b"v", ttl=b"soon", replication=b"3")
        self.assertIn("bad arguments to DhtPut: ValueError", self.assertRefused(answers, BAD_ARGUMENTS))
        self.assertEqual(self.node.puts, [])
        self.assertEqual(len(warnings), 1)

    def test_nonUtf8Address(self):
        """An C{ap_address} that is no UTF-8 is answered C{BAD_ARGUMENTS}."""
        for command in (b"RouteLookup", b"TunnelOpen"):
            warnings, answers = self.exchange(_command=command, _ask=b"1", ap_address=b"\xfd\xff::1")
            self.assertIn("UnicodeDecodeError", self.assertRefused(answers, BAD_ARGUMENTS))

    def test_missingArgument(self):
        """A known command missing an argument is answered C{BAD_ARGUMENTS}."""
        warnings, answers = self.exchange(_command=b"DhtGet", _ask=b"1")
        self.assertIn("KeyError", self.assertRefused(answers, BAD_ARGUMENTS))

    def test_noQuestionTag(self):
        """Bad arguments, or an unknown command, that want no answer are logged; nothing is sent."""
        for keys in ({"_command": b"DhtPut", "key": b"k", "value": b"v", "ttl": b"x", "replication": b"3"}, {"_command": b"Reboot"}):
            warnings, answers = self.exchange(**keys)
            self.assertEqual(answers, [])
            self.assertEqual(len(warnings), 1)

    @settings(max_examples=200, deadline=None)
    @given(
        command=st.sampled_from(sorted(COMMANDS) + [None, b"", b"Reboot"]),
        keys=st.dictionaries(st.sampled_from([b"key", b"value", b"ttl", b"replication", b"kind", b"x", b"y", b"ap_address", b"_ask", b"_answer", b"_error", b"zz"]), st.binary(max_size=20)),
    )
    def test_anyBox(self, command, keys):
        """Any box at all: no traceback, the connection stays open, a Status on it is answered."""
        if command is not None:
            keys[b"_command"] = command
        self.exchange(**{key.decode(): value for key, value in keys.items() if (key, value) != (b"_ask", b"status")})
