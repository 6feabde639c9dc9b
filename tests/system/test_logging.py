"""The log a real ``twistd -n phantom`` writes: safe by default, quiet about the control socket, JSON lines."""

import json
import os
import sys

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from phantom.logs import SCRUBBED
from tests.control.test_control import shortDirectory
from tests.link.helpers import freePort, freshLoopbackAddress
from tests.system.test_node import TWISTD, NodeProcess

PHANTOMCTL = os.path.join(os.path.dirname(sys.executable), "phantomctl")
UNREACHABLE = "198.51.100.23"


class NodeLogTests(TestCase):
    """One node under twistd, its log on stdout and in a JSON lines file."""

    timeout = 60

    async def test_safeAndQuiet(self):
        """
        A peer's address is scrubbed from the text log and the JSON lines (the node's own is
        kept), and a phantomctl call writes nothing at the default level.
        """
        address = freshLoopbackAddress()
        dataDir = shortDirectory(self)
        config = os.path.join(dataDir, "phantom.ini")
        jsonLog = os.path.join(dataDir, "log.json")
        with open(config, "w") as f:
            f.write(f"[phantom]\nlog_json = {jsonLog}\n[dht]\nbootstrapper = {UNREACHABLE}:7402\n")
        node = NodeProcess()
        args = [
            TWISTD, "-n", "--pidfile=", "--logfile=-", "phantom", "--config", config, "--port", str(freePort(address)),
            "--listen-address", address, "--data-dir", dataDir,
        ]
        transport = reactor.spawnProcess(node, TWISTD, args, env=os.environ)

        def kill():
            if not node.ended.called:
                transport.signalProcess("KILL")
            return node.ended

        self.addCleanup(kill)
        await node.ready
        before = len(node.output)
        out, err, code = await getProcessOutputAndValue(PHANTOMCTL, ["--node", dataDir, "status"], env=os.environ)
        self.assertEqual(code, 0, err)
        transport.signalProcess("TERM")
        await node.ended
        text = node.output.decode()
        self.assertNotIn("ControlProtocol connection", text[before:])
        self.assertNotIn(UNREACHABLE, text)
        self.assertIn(f"contact {SCRUBBED}:7402 unreachable", text)
        self.assertIn(f"listening on {address}:", text)
        with open(jsonLog) as f:
            records = [json.loads(record) for record in f.read().split("\x1e") if record]
        self.assertTrue(records)
        self.assertNotIn(UNREACHABLE, json.dumps(records))
