"""
A whole Phantom node: identity, link layer, network database, paths, tunnels, tun frontend,
module API and control socket as one service; the composition root, wiring only.
"""

import os

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import describePeer, formatHostPort, serverEndpoint
from phantom.control.interfaces import IControlledNode
from phantom.control.server import ControlService
from phantom.crypto import apAddressOf
from phantom.frontend.device import TunDevice
from phantom.frontend.router import PacketRouter, PacketTunnel
from phantom.identity import loadOrCreateIdentity
from phantom.link.echo import EchoHandler
from phantom.link.service import LinkService
from phantom.netdb.api import ApiService
from phantom.netdb.records import routeKey
from phantom.netdb.service import DhtNode
from phantom.path.entries import EntrySequence
from phantom.path.interfaces import IPathFrameReceiver
from phantom.path.service import PathService
from phantom.tunnel.endpoint import EndToEnd, OneProtocolFactory, TunnelClientEndpoint
from phantom.tunnel.ports import TunnelPorts
from phantom.tunnel.service import TunnelService
from phantom.wire.dht import Table
from phantom.wire.link import Purpose


@implementer(IPathFrameReceiver, IControlledNode)
class PhantomNode(MultiService):
    """
    A node, ready to be started by twistd or by a test: its services, made and connected, and
    what its control socket asks of it (L{IControlledNode}).

    @param config: the node's L{phantom.config.NodeConfig}.
    @param reactor: the reactor every part of the node uses.
    @param identity: the node's keys; loaded from (or created in) the data directory if not given.
    """

    log = Logger()

    def __init__(self, config, reactor, identity=None):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.identity = identity or loadOrCreateIdentity(config.dataDir)
        self.startedAt = None
        self.links = LinkService(
            self.identity,
            serverFromString(reactor, config.listenEndpoint),
            config.link,
            reactor,
            bindAddress=config.listenAddress,
        )
        self.links.registerPurpose(Purpose.ECHO, EchoHandler)
        self.links.setServiceParent(self)
        self.dht = DhtNode(
            self.identity, self.links, reactor, config.dht, bootstrap=config.bootstrap, dataDir=config.dataDir
        )
        self.dht.setServiceParent(self)
        sequence = EntrySequence(os.path.join(config.dataDir, "entry-sequence"))
        self.paths = PathService(self.identity, self.links, self.dht, reactor, config.path, frameReceiver=self, sequence=sequence)
        self.paths.setServiceParent(self)
        self.apAddress = apAddressOf(self.identity.routingKey.public_key())
        self.tunnels = TunnelService(
            self.links,
            self.paths,
            self.dht,
            reactor,
            self.apAddress,
            idleTimeout=config.tunnel.idle,
            ownExit=config.tunnel.ownExit,
            ownEntry=self.identity.routingKey if config.tunnel.ownEntry else None,
            entryLifetime=config.path.lifetime,
        )
        self.tunnels.setServiceParent(self)
        self.endToEnd = EndToEnd(self.identity.routingKey)
        self.router = self.device = None
        if config.tun is not None:
            self.router = PacketRouter(self.apAddress, self._connectPackets)
            self.device = TunDevice(config.tun, self.router, reactor)
            self.device.setServiceParent(self)
        inbound = Factory.forProtocol(lambda: PacketTunnel(self.router)) if self.router is not None else None
        self.tunnelPorts = TunnelPorts(self.tunnels, self.endToEnd, config.tunnel, reactor, inbound=inbound)
        self.tunnelPorts.setServiceParent(self)
        apiHost, apiPort = config.apiAddress
        apiEndpoint = serverEndpoint(reactor, apiHost, apiPort)
        self.api = ApiService(self.dht, apiEndpoint, reactor, getTimeout=config.dht.getTimeout)
        self.api.setServiceParent(self)
        self.control = ControlService(self, config.dataDir, reactor)
        self.control.setServiceParent(self)

    def pathFrameReceived(self, path, side, payload):
        """
        As the path service's L{IPathFrameReceiver}: a PATH link's frames are tunnel setup
        blocks, for the tunnel service (made after the path service, which it uses).
        """
        self.tunnels.pathFrameReceived(path, side, payload)

    def _connectPackets(self, apAddress, protocol):
        return self.connectTunnel(apAddress, OneProtocolFactory(protocol))

    @property
    def nodeId(self):
        """This node's 32-byte id."""
        return self.identity.nodeId

    @property
    def address(self):
        """C{host:port} of the TLS port: the configured listen address, else what it is bound to."""
        bound = self.links.listeningAddress
        if bound is None:
            return None
        if self.config.listenAddress is not None:
            return formatHostPort(self.config.listenAddress, bound.port)
        return describePeer(bound)

    def privilegedStartService(self):
        super().privilegedStartService()
        if self.config.listenAddress is not None:
            self.dht.reachableAt(self.config.listenAddress, self.links.listeningAddress.port)
        else:
            self.log.warn(
                "listening on every address: other nodes cannot be told where to reach this node; "
                "give --listen-address to take part in the network database"
            )

    def startService(self):
        self.startedAt = self.reactor.seconds()
        super().startService()
        # Announced once the reactor runs, so signal handlers are in place: whoever waits for
        # this line may stop the node with SIGTERM at once and get a clean shutdown.
        self.reactor.callWhenRunning(self._announce)

    @property
    def apiAddress(self):
        """C{host:port} of the DHT module API, once listening."""
        bound = self.api.listeningAddress
        return describePeer(bound) if bound is not None else None

    def _announce(self):
        if self.running:
            self.log.info("DHT module API listening on {address}", address=self.apiAddress)
            self.log.info(
                "phantom node {nodeId} listening on {address}", nodeId=self.nodeId.hex(), address=self.address
            )

    # IControlledNode: what the control socket asks of the node

    def linkCounts(self):
        return len(self.links.links), len(self.links.connections)

    def linkedPeers(self):
        return self.links.peers()

    def routingTable(self):
        return self.dht.table

    def lookupCounts(self):
        return self.dht.stats.lookups, self.dht.stats.requests

    def storedCount(self):
        return len(self.dht.store)

    def put(self, key, value, ttl, replication):
        return self.dht.put(key, value, ttl, replication)

    def get(self, key):
        return self.dht.get(key)

    def findRoute(self, apAddress):
        return Deferred.fromCoroutine(self.dht.findRecord(Table.ROUTE, routeKey(apAddress)))

    def buildPath(self, kind, shape):
        return Deferred.fromCoroutine(self.paths.build(kind, shape))

    def ownedPaths(self):
        return self.paths.paths

    def connectTunnel(self, apAddress, factory):
        return TunnelClientEndpoint(self.tunnels, self.endToEnd, apAddress).connect(factory)

    def ownedTunnels(self):
        return self.tunnels.tunnels

    def carriedCount(self):
        return len(self.tunnels.carried)
