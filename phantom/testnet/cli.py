"""
``phantom-testnet``: bring many nodes up on this machine, see how they are, stop them.

    phantom-testnet up --nodes N --dir DIR [--port PORT] [--mode loopback|netns] [--timeout SECONDS] [--json]
    phantom-testnet status --dir DIR [--json]
    phantom-testnet down --dir DIR [--timeout SECONDS]
    phantom-testnet demo --dir DIR [--mib N] [--json]      (netns mode: ping6 and TCP between AP-addresses)

C{up} writes DIR/testnet.json, starts the nodes, waits until each has a peer and prints their
status; if anything fails it stops every node it started and exits 1. C{status} and C{down}
read DIR/testnet.json, so they work after a failed or interrupted C{up} too; C{down} may be run
any number of times. Progress and errors go to stderr, results to stdout.

Each subcommand is an C{Options} class with an async C{run(reactor)} that returns the text (or,
with C{--json}, the JSON-ready dict) to print.
"""

import sys

from twisted.internet.defer import CancelledError, Deferred
from twisted.python import usage

from phantom.config import DEFAULT_PORT
from phantom.control.runner import runCommandLine
from phantom.testnet.interfaces import DEFAULT_TIMEOUT
from phantom.testnet.loopback import MAX_NODES, LoopbackTestnet
from phantom.testnet.manifest import Manifest, TestnetError
from phantom.testnet.demo import renderDemo, runDemo
from phantom.testnet.netns import NetnsTestnet
from phantom.testnet.processes import STOP_TIMEOUT, cancelAndWait

MODES = {LoopbackTestnet.mode: LoopbackTestnet, NetnsTestnet.mode: NetnsTestnet}
"""Every mode's L{phantom.testnet.interfaces.ITestnet} class, by the name manifests record."""

PROGRAM = "phantom-testnet"


def openTestnet(reactor, directory):
    """
    @return: the testnet whose manifest is in C{directory}, as its mode's class.
    @raise TestnetError: there is no manifest, or its mode is unknown.
    """
    manifest = Manifest.read(directory)
    if manifest.mode not in MODES:
        raise TestnetError(f"{manifest.path}: unknown mode {manifest.mode!r}")
    return MODES[manifest.mode](manifest, reactor)


def progress(text):
    """Tell the person at the terminal what is happening, on stderr."""
    print(f"{PROGRAM}: {text}", file=sys.stderr, flush=True)


def statusJSON(manifest, states, describeNode=lambda node: {}):
    """
    @param manifest: the testnet's L{Manifest}.
    @param states: its L{phantom.testnet.processes.NodeState}s.
    @param describeNode: what the testnet's mode adds to each node (C{ITestnet.describeNode}).
    @return: the testnet's status as one JSON-ready dict, C{{"nodes": [...], ...}}.
    """
    return {
        "mode": manifest.mode,
        "directory": manifest.directory,
        "port": manifest.port,
        "alive": sum(state.alive for state in states),
        "nodes": [{**state.toJSON(), **describeNode(state.node)} for state in states],
    }


def renderStatus(manifest, states):
    """
    @return: the testnet's status as a table for people, one row per node, and a summary line.
    """
    header = ("NODE", "ADDRESS", "PID", "ALIVE", "PEERS", "NODE ID", "DATA DIR")
    rows = [
        (
            state.node.name,
            state.node.contact,
            "-" if state.pid is None else str(state.pid),
            "yes" if state.alive else "no",
            "-" if state.peers is None else str(state.peers),
            state.nodeId or "-",
            state.node.dataDir,
        )
        for state in states
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    alive = sum(state.alive for state in states)
    lines.append(f"{alive} of {len(states)} nodes alive ({manifest.mode}, {manifest.directory})")
    return "\n".join(lines)


async def describe(testnet, asJSON):
    """@return: the status of C{testnet}, as JSON or as a table."""
    states = await testnet.status()
    if asJSON:
        return statusJSON(testnet.manifest, states, testnet.describeNode)
    return renderStatus(testnet.manifest, states)


class _Command(usage.Options):
    optParameters = [["dir", "d", None, "The testnet directory (keep it short: control sockets live below it)."]]

    def postOptions(self):
        if not self["dir"]:
            raise usage.UsageError("--dir is needed")

    async def run(self, reactor):
        """@return: the text, or a JSON-ready dict, to print."""
        raise NotImplementedError


class UpOptions(_Command):
    """``phantom-testnet up``: start a testnet and wait until every node has a peer."""

    synopsis = "--nodes N --dir DIR [--port PORT] [--mode loopback|netns] [--timeout SECONDS] [--json]"
    optFlags = [["json", "j", "Print the status as one JSON object."]]
    optParameters = [
        ["nodes", "n", None, f"How many nodes to start (1 to {MAX_NODES}).", int],
        ["port", "p", DEFAULT_PORT, "The port every node listens on (its DHT API gets PORT - 1).", int],
        ["mode", "m", LoopbackTestnet.mode, f"How to run the nodes: {', '.join(MODES)}."],
        [
            "timeout", "t", DEFAULT_TIMEOUT,
            "Seconds to wait, in all, until every node has a peer (each node's start costs CPU: allow more for many nodes).",
            float,
        ],
    ]

    def postOptions(self):
        super().postOptions()
        if self["nodes"] is None:
            raise usage.UsageError("--nodes is needed")
        if self["mode"] not in MODES:
            raise usage.UsageError(f"--mode must be one of: {', '.join(MODES)}")
        if self["timeout"] <= 0:
            raise usage.UsageError("--timeout must be positive")

    async def run(self, reactor):
        testnet = MODES[self["mode"]].plan(reactor, self["dir"], self["nodes"], self["port"])
        starting = Deferred.fromCoroutine(testnet.up(self["timeout"], progress))
        # Ctrl-C while nodes start: cancelling up stops every node it started.
        reactor.addSystemEventTrigger("before", "shutdown", cancelAndWait, starting)
        await starting
        result = await describe(testnet, self["json"])
        if not self["json"]:
            result += f"\nstop it with: {PROGRAM} down --dir {testnet.manifest.directory}"
        return result


class StatusOptions(_Command):
    """``phantom-testnet status``: every node's id, address, pid, whether it runs, and its peers."""

    synopsis = "--dir DIR [--json]"
    optFlags = [["json", "j", "Print the status as one JSON object."]]

    async def run(self, reactor):
        return await describe(openTestnet(reactor, self["dir"]), self["json"])


class DownOptions(_Command):
    """``phantom-testnet down``: stop every node (SIGTERM, then SIGKILL); safe to repeat."""

    synopsis = "--dir DIR [--timeout SECONDS]"
    optParameters = [
        ["timeout", "t", STOP_TIMEOUT, "Seconds to wait after SIGTERM before SIGKILL.", float],
    ]

    async def run(self, reactor):
        testnet = openTestnet(reactor, self["dir"])
        stopped = await testnet.down(self["timeout"])
        where = testnet.manifest.directory
        if not stopped:
            return f"no node of the testnet in {where} was running"
        return f"stopped {stopped} node processes of the testnet in {where}; none is left"


class DemoOptions(_Command):
    """``phantom-testnet demo``: ping6 and a TCP transfer between two AP-addresses of a netns testnet."""

    synopsis = "--dir DIR [--mib N] [--json]"
    optFlags = [["json", "j", "Print the summary as one JSON object."]]
    optParameters = [["mib", None, 10.0, "MiB to transfer.", float]]

    async def run(self, reactor):
        result = await runDemo(reactor, Manifest.read(self["dir"]), self["mib"])
        if not result["transfer"]["checksum_matches"] or not result["ping"]["replies"]:
            raise TestnetError(renderDemo(result))
        return result if self["json"] else renderDemo(result)


class Options(usage.Options):
    """The options of ``phantom-testnet``."""

    subCommands = [
        ["up", None, UpOptions, "Start a testnet and wait until every node has a peer."],
        ["status", None, StatusOptions, "Show every node: id, address, pid, alive, peers."],
        ["down", None, DownOptions, "Stop every node of a testnet."],
        ["demo", None, DemoOptions, "On a netns testnet: ping6 and a TCP transfer between two AP-addresses."],
    ]

    def getSynopsis(self):
        """@return: how to call the program, or, once a command is chosen, the start of it."""
        if self.subCommand is None:
            return f"Usage: {PROGRAM} COMMAND --dir DIR [options]"
        return f"Usage: {PROGRAM}"

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("a command is needed")


def main(argv=None):
    """Entry point of ``phantom-testnet``; exits 0 on success, 1 on failure, 2 on bad usage."""

    def describe(failure):
        if failure.check(CancelledError):
            return "interrupted; the nodes it had started were stopped"
        return str(failure.value)

    runCommandLine(PROGRAM, Options(), argv, (TestnetError, CancelledError), describe)


if __name__ == "__main__":
    main()
