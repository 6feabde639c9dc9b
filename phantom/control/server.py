"""The control socket: a unix socket in the node's data directory, answering AMP commands."""

import os

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from phantom.address import formatAddress, parseAddress
from phantom.control import CONTROL_SOCKET, MAX_UNIX_PATH
from phantom.control import responses
from phantom.control.commands import DhtGet, DhtPut, PathBuild, PathList, Peers, RouteLookup, Status, TunnelList, TunnelOpen, TunStatus
from phantom.link.listening import ListeningService
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from phantom.tunnel.endpoint import EchoProbe

COMMANDS = {command.commandName: command for command in (DhtGet, DhtPut, PathBuild, PathList, Peers, RouteLookup, Status, TunnelList, TunnelOpen, TunStatus)}
"""The commands the control socket answers, by their AMP name."""

BAD_ARGUMENTS = b"BAD_ARGUMENTS"
"""The error code of a command whose arguments are missing or do not parse."""

NO_COMMAND = b"NO_COMMAND"
"""The error code of a box that asks something but names no command."""

PROBE_TIMEOUT = 5.0
"""Seconds C{TunnelOpen} waits for its 1 KiB echo to come back through the tunnel."""


async def probeTunnel(node, apAddress, timeout=PROBE_TIMEOUT):
    """
    Open a tunnel from C{node} to C{apAddress}, time a 1 KiB echo through it, close it.

    @return: the response of L{TunnelOpen}; C{rtt_seconds} is -1 when no echo came back
        within C{timeout} seconds.
    """
    clock = node.reactor
    started = clock.seconds()
    probe = await node.connectTunnel(apAddress, Factory.forProtocol(EchoProbe))
    opened = clock.seconds()
    try:
        rtt = await probe.measure(clock, timeout)
    finally:
        probe.transport.loseConnection()
    return {
        "ap_address": formatAddress(apAddress),
        "peer": formatAddress(probe.transport.getPeer().apAddress),
        "open_seconds": opened - started,
        "rtt_seconds": rtt,
    }


def _keys(box):
    return ", ".join(sorted(key.decode("ascii", "replace") for key in box))


class ControlProtocol(amp.AMP):
    """
    Answers control commands.

    @param node: provides L{IControlledNode<phantom.control.interfaces.IControlledNode>}.
    """

    log = Logger()

    def __init__(self, node):
        super().__init__()
        self._node = node

    def lengthLimitExceeded(self, length):
        """Bytes that are no AMP box: say so, and close this connection (AMP does)."""
        self.log.warn("control socket: a key of {length} bytes is no AMP box; closing the connection", length=length)
        super().lengthLimitExceeded(length)

    def ampBoxReceived(self, box):
        """
        Every box is a question: an answer or error (this side asks nothing) or a box with neither
        a command nor a question tag is logged and ignored, where AMP would log a traceback and
        drop the connection.
        """
        if amp.ANSWER in box or amp.ERROR in box or (amp.COMMAND not in box and amp.ASK not in box):
            self.log.warn("control socket: a box that asks nothing (keys {keys}); ignored", keys=_keys(box))
            return
        self._commandReceived(box)

    def dispatchCommand(self, box):
        """
        A question that names no command is refused with L{NO_COMMAND}; an unknown command, with
        AMP's C{UNHANDLED}; a known command's arguments that are missing or do not parse, with
        L{BAD_ARGUMENTS}. Each with a logged warning; no traceback, the connection stays open.
        """
        if amp.COMMAND not in box:
            return self._refuse(box, NO_COMMAND, f"a question naming no command (keys {_keys(box)})")
        command = COMMANDS.get(box[amp.COMMAND])
        if command is None:
            return self._refuse(box, amp.UNHANDLED_ERROR_CODE, f"an unknown command {box[amp.COMMAND]!r}")
        try:
            command.parseArguments(box, self)
        except (KeyError, ValueError) as e:
            name = box[amp.COMMAND].decode("ascii", "replace")
            return self._refuse(box, BAD_ARGUMENTS, f"bad arguments to {name}: {e.__class__.__name__}: {e}")
        return super().dispatchCommand(box)

    def _refuse(self, box, code, why):
        self.log.warn("control socket: {why}; refused", why=why)
        if amp.ASK not in box:
            return succeed(None)
        return fail(amp.RemoteAmpError(code, why.encode("utf-8", "replace")))

    @Status.responder
    def status(self):
        return responses.status(self._node)

    @DhtPut.responder
    def dhtPut(self, key, value, ttl, replication):
        return self._node.put(key, value, ttl, replication).addCallback(
            lambda replicas: {"replicas": int(replicas), "here": getattr(replicas, "here", True)}
        )

    @DhtGet.responder
    def dhtGet(self, key):
        return self._node.get(key).addCallback(lambda value: {"found": value is not None, "value": value or b""})

    @Peers.responder
    def peers(self):
        return responses.routing(self._node)

    @PathBuild.responder
    def pathBuild(self, kind, x, y):
        return self._node.buildPath(PathKind(kind), PathShape(x, y)).addCallback(responses.builtPath)

    @PathList.responder
    def pathList(self):
        return responses.pathList(self._node)

    @RouteLookup.responder
    def routeLookup(self, ap_address):
        return self._node.findRoute(parseAddress(ap_address)).addCallback(responses.route)

    @TunnelOpen.responder
    def tunnelOpen(self, ap_address):
        return Deferred.fromCoroutine(probeTunnel(self._node, parseAddress(ap_address)))

    @TunnelList.responder
    def tunnelList(self):
        return responses.tunnelList(self._node)

    @TunStatus.responder
    def tunStatus(self):
        return responses.tunStatus(self._node)


class ControlService(ListeningService):
    """
    Listens on C{dataDir}/control.sock, readable and writable by the owner only.

    @param node: provides L{IControlledNode<phantom.control.interfaces.IControlledNode>}.
    """

    def __init__(self, node, dataDir, reactor):
        self._node = node
        self._reactor = reactor
        self.path = os.path.join(os.path.abspath(dataDir), CONTROL_SOCKET)

    def listener(self):
        if len(self.path.encode()) > MAX_UNIX_PATH:
            raise OSError(f"control socket path {self.path} is longer than {MAX_UNIX_PATH} bytes; use a shorter --data-dir")
        endpoint = UNIXServerEndpoint(self._reactor, self.path, mode=0o600, wantPID=True)
        return endpoint, Factory.forProtocol(lambda: ControlProtocol(self._node))
