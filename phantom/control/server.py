"""The control socket: a unix socket in the node's data directory, answering AMP commands."""

import os

from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from phantom.control import CONTROL_SOCKET
from phantom.control.commands import DhtGet, DhtPut, PathBuild, PathList, Peers, RouteLookup, Status, TunnelList, TunnelOpen, TunStatus
from phantom.link.listening import ListeningService

MAX_UNIX_PATH = 107


class ControlProtocol(amp.AMP):
    """Answers control commands from the node's status and, later, its other modules."""

    def __init__(self, node):
        super().__init__()
        self._node = node

    @Status.responder
    def status(self):
        return self._node.status()

    @DhtPut.responder
    def dhtPut(self, key, value, ttl, replication):
        return self._node.dht.put(key, value, ttl, replication).addCallback(lambda replicas: {"replicas": replicas})

    @DhtGet.responder
    def dhtGet(self, key):
        d = self._node.dht.get(key)
        d.addCallback(lambda value: {"found": value is not None, "value": value or b""})
        return d

    @Peers.responder
    def peers(self):
        return self._node.routingSummary()

    @PathBuild.responder
    def pathBuild(self, kind, x, y):
        return self._node.buildPath(kind, x, y)

    @PathList.responder
    def pathList(self):
        return {"paths": self._node.pathList()}

    @RouteLookup.responder
    def routeLookup(self, ap_address):
        return self._node.lookupRoute(ap_address)

    @TunnelOpen.responder
    def tunnelOpen(self, ap_address):
        return self._node.openTunnel(ap_address)

    @TunnelList.responder
    def tunnelList(self):
        return self._node.tunnelList()

    @TunStatus.responder
    def tunStatus(self):
        return self._node.tunStatus()


class ControlService(ListeningService):
    """
    Listens on C{dataDir}/control.sock, readable and writable by the owner only.

    @param node: answers C{status()} with the fields of L{Status}'s response.
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
