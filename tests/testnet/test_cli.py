"""Tests of L{phantom.testnet.cli}: what the C{phantom-testnet} command line refuses, and how."""

import os

from twisted.python import usage
from twisted.trial.unittest import TestCase

from phantom.testnet.cli import Options
from tests.testnet.helpers import runCommand, shortTemporaryDirectory


class UsageTests(TestCase):
    """The command line refuses what it cannot do: exit code 2 for usage, 1 for failures."""

    def test_usage(self):
        """A missing --nodes, --dir or command, an unknown mode, or a bad timeout is a usage error."""
        for arguments in (
            ["up", "--dir", "/tmp/tn-never"],
            ["up", "--nodes", "3"],
            ["up", "--nodes", "three", "--dir", "/tmp/tn-never"],
            ["up", "--nodes", "3", "--dir", "/tmp/tn-never", "--mode", "vm"],
            ["up", "--nodes", "3", "--dir", "/tmp/tn-never", "--timeout", "0"],
            ["status"],
            ["down"],
            [],
        ):
            self.assertRaises(usage.UsageError, Options().parseOptions, arguments)

    async def test_usageExitCode(self):
        out, err, code = await runCommand("up", "--dir", "/tmp/tn-never")
        self.assertEqual(code, 2)
        self.assertIn("phantom-testnet: --nodes is needed", err)

    async def test_tooManyNodes(self):
        """Too many nodes is refused before anything is written."""
        out, err, code = await runCommand("up", "--nodes", "251", "--dir", "/tmp/tn-never")
        self.assertEqual((code, err.strip()), (1, "phantom-testnet: a loopback testnet has 1 to 250 nodes, not 251"))
        self.assertFalse(os.path.exists("/tmp/tn-never"))

    async def test_noTestnet(self):
        """C{status} and C{down} of a directory without a manifest say so and exit 1."""
        directory = shortTemporaryDirectory(self)
        for command in ("status", "down"):
            out, err, code = await runCommand(command, "--dir", directory)
            self.assertEqual(code, 1)
            self.assertIn(f"no testnet in {directory}", err)
