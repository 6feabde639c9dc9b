"""
``phantomctl``: ask a running node what it is doing, through its control socket.

    phantomctl [--node DIR] status [--json]

Each subcommand is an C{Options} class with C{call(protocol)} (the AMP request) and
C{render(result)} (the human-readable text); C{--json} prints the result as JSON instead.
L{askNode} asks a node the same way from other programs (the testnet).
"""

import os

from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.defer import TimeoutError
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.protocols import amp
from twisted.python import usage

from phantom.control import CONTROL_SOCKET
from phantom.control.commands import Status
from phantom.control.runner import runCommandLine


class _Subcommand(usage.Options):
    optFlags = [["json", "j", "Print the result as one JSON object."]]

    async def run(self, reactor):
        """Ask the node; the result as JSON or as text, for L{runCommandLine} to print."""
        result = await askNode(reactor, self.parent["node"], self)
        return result if self["json"] else self.render(result)

    def call(self, protocol):
        """@return: a Deferred firing with the result as a JSON-ready dict."""
        raise NotImplementedError

    def render(self, result):
        """@return: the result as text for people."""
        raise NotImplementedError


def formatUptime(seconds):
    """C{1d 2h 3m 4s}-style uptime."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts)


class StatusOptions(_Subcommand):
    """``phantomctl status``: node id, addresses, uptime, open links and peers."""

    synopsis = "[--json]"

    def call(self, protocol):
        d = protocol.callRemote(Status)
        d.addCallback(lambda r: {**r, "uptime": round(r["uptime"], 3), "peers": [dict(p) for p in r["peers"]]})
        return d

    def render(self, result):
        lines = [
            f"node       {result['node_id']}",
            f"listening  {result['listening']}",
            f"uptime     {formatUptime(result['uptime'])}",
            f"links      {result['links']} open ({result['connections']} connections)",
            f"peers      {len(result['peers'])}",
        ]
        for peer in result["peers"]:
            lines.append(
                f"  {peer['node_id']}  {peer['address']}  in {peer['inbound']} out {peer['outbound']}"
            )
        return "\n".join(lines)


class Options(usage.Options):
    """The options of ``phantomctl``."""

    synopsis = "[--node DIR] COMMAND [--json]"
    optParameters = [
        [
            "node",
            "n",
            os.environ.get("PHANTOM_NODE", os.path.expanduser("~/.phantom")),
            "The node's data directory (its control socket is there) [default: $PHANTOM_NODE or ~/.phantom].",
        ]
    ]
    subCommands = [["status", None, StatusOptions, "Show the node's id, addresses, uptime, links and peers."]]

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("a command is needed")


class ControlError(Exception):
    """The node could not be asked: the message says why."""


async def askNode(reactor, dataDir, subcommand, timeout=5.0):
    """
    Ask the node whose data directory is C{dataDir} through its control socket.

    @param subcommand: a parsed subcommand's options (e.g. L{StatusOptions}).
    @param timeout: seconds to wait for the connection, and again for the answer.
    @return: the result as the subcommand's C{--json} prints it.
    @raise ControlError: no node answers, or it refused.
    """
    path = os.path.join(dataDir, CONTROL_SOCKET)
    try:
        protocol = await connectProtocol(UNIXClientEndpoint(reactor, path, timeout=timeout), amp.AMP())
    except ConnectError as e:
        reason = os.strerror(e.osError) if isinstance(e.osError, int) else e.osError or e.__class__.__name__
        raise ControlError(f"no node answers at {path} ({reason})") from e
    try:
        return await subcommand.call(protocol).addTimeout(timeout, reactor)
    except amp.RemoteAmpError as e:
        raise ControlError(f"the node refused: {e.description}") from e
    except (ConnectionClosed, TimeoutError) as e:
        raise ControlError(f"the node at {path} did not answer") from e
    finally:
        protocol.transport.loseConnection()


def main(argv=None):
    """Entry point of ``phantomctl``."""
    runCommandLine("phantomctl", Options(), argv, (ControlError,))
