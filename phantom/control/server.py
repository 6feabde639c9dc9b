"""The control socket: a unix socket in the node's data directory, answering AMP commands."""

import os

from twisted.internet.defer import Deferred
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

    @Status.responder
    def status(self):
        return responses.status(self._node)

    @DhtPut.responder
    def dhtPut(self, key, value, ttl, replication):
        return self._node.put(key, value, ttl, replication).addCallback(lambda replicas: {"replicas": replicas})

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
