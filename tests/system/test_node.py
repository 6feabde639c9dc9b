"""A real ``twistd -n phantom`` process: its id line, its TLS port, its clean stop."""

import os
import re
import signal
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from phantom.identity import loadOrCreateIdentity
from phantom.wire.link import Purpose, dataHeader, encodeOpen
from tests.control.test_control import shortDirectory
from tests.link.helpers import RawClient, connectRaw, plainClientContext
from tests.link.helpers import freePort, freshLoopbackAddress, until

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
ID_LINE = re.compile(r"phantom node ([0-9a-f]{64}) listening on (\S+) with AP-address (fd[0-9a-f:]+)")


class NodeProcess(ProcessProtocol):
    """
    A node under twistd; C{ready} fires with its id line's match, C{ended} with how it ended:
    C{"exit N"} or C{"signal N"}. After a clean shutdown twistd re-raises the signal that
    stopped it, so a node stopped by SIGTERM ends with C{"signal 15"}.
    """

    def __init__(self):
        self.output = b""
        self.ready = Deferred()
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data
        match = ID_LINE.search(self.output.decode(errors="replace"))
        if match and not self.ready.called:
            self.ready.callback(match)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"node exited before listening:\n{self.output.decode(errors='replace')}"))
        status = reason.value
        self.ended.callback(f"signal {status.signal}" if status.signal is not None else f"exit {status.exitCode}")


def startNodeProcess(testCase, dataDir, port, address, extra=()):
    node = NodeProcess()
    args = [
        TWISTD, "-n", "--pidfile=", "--logfile=-", "phantom", "--port", str(port), "--listen-address", address,
        "--api-address", f"{address}:{freePort(address)}", "--data-dir", dataDir, *extra,
    ]
    transport = reactor.spawnProcess(node, TWISTD, args, env=os.environ)

    def stop():
        if not node.ended.called:
            transport.signalProcess("KILL")
            return node.ended

    testCase.addCleanup(stop)
    node.transport = transport
    return node


class NodeProcessTests(TestCase):
    """``twistd -n phantom --port P --listen-address A --data-dir D``."""

    timeout = 60

    async def test_serveAndStop(self):
        """
        The node logs exactly one id line, accepts a TLS 1.3 client with any certificate,
        closes on a client without one, and stops cleanly on SIGTERM.
        """
        dataDir = shortDirectory(self)
        address = freshLoopbackAddress()
        port = freePort(address)
        node = startNodeProcess(self, dataDir, port, address)
        match = await node.ready
        nodeId = loadOrCreateIdentity(dataDir).nodeId
        self.assertEqual(match.group(1), nodeId.hex())
        self.assertEqual(match.group(2), f"{address}:{port}")

        anyone = RawClient(encodeOpen(Purpose.ECHO) + dataHeader(5) + b"hello")
        anyoneClosed = connectRaw(port, anyone, host=address)
        await anyone.whenReceived(dataHeader(5) + b"hello")
        anyone.transport.loseConnection()
        await anyoneClosed

        nobody = RawClient(encodeOpen(Purpose.ECHO) + dataHeader(5) + b"hello")
        await connectRaw(port, nobody, host=address, context=plainClientContext())
        self.assertNotIn(b"hello", nobody.received)
        # The node reads the refused handshake's end in a turn of its own: a SIGTERM arriving in
        # the same turn could be handled first, and the link closed as "the node is stopping".
        await until(lambda: b"closed: TLS handshake failed" in node.output)

        node.transport.signalProcess("TERM")
        self.assertEqual(await node.ended, f"signal {signal.SIGTERM}")
        output = node.output.decode()
        self.assertEqual(len(ID_LINE.findall(output)), 1)
        self.assertIn("closed: TLS handshake failed", output)
        self.assertIn("Server Shut Down", output)
        self.assertNotIn("Traceback", output)

    async def test_restartKeepsIdentity(self):
        """A restarted node reuses the identity in its data directory, and so its AP-address, which its startup line names."""
        dataDir = shortDirectory(self)
        address = freshLoopbackAddress()
        port = freePort(address)
        first = startNodeProcess(self, dataDir, port, address)
        firstLine = await first.ready
        firstId = firstLine.group(1)
        first.transport.signalProcess("TERM")
        await first.ended
        second = startNodeProcess(self, dataDir, port, address)
        secondLine = await second.ready
        self.assertEqual((secondLine.group(1), secondLine.group(3)), (firstId, firstLine.group(3)))
        second.transport.signalProcess("TERM")
        self.assertEqual(await second.ended, f"signal {signal.SIGTERM}")
        self.assertIn("Server Shut Down", second.output.decode())

    async def test_portInUse(self):
        """A node whose port is taken exits with an error instead of running half-started."""
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        address = freshLoopbackAddress()
        taken.bind((address, 0))
        taken.listen()
        self.addCleanup(taken.close)
        node = startNodeProcess(self, shortDirectory(self), taken.getsockname()[1], address)
        with self.assertRaises(RuntimeError):
            await node.ready
        self.assertEqual(await node.ended, "exit 1")
        self.assertIn("Address already in use", node.output.decode())

