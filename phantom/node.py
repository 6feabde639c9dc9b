"""
A whole Phantom node: identity, link layer, network database, paths, tunnels, tun frontend,
module API and control socket as one service; the composition root, wiring only.
"""

import os
import random

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import Contact, describePeer, formatAddress, formatHostPort, isIPAddress, serverEndpoint
from phantom.addressing import EveryAddressEndpoint, resolveContacts, sourceAddressTo
from phantom.config import LISTEN_BACKLOG
from phantom.control.interfaces import IControlledNode
from phantom.control.server import ControlService
from phantom.crypto import apAddressOf
from phantom.frontend.device import TunDevice
from phantom.frontend.router import PacketRouter, PacketTunnel
from phantom.identity import loadOrCreateIdentity
from phantom.link.echo import EchoHandler
from phantom.link.service import LinkService
from phantom.logs import keepOwnAddress
from phantom.metrics.collector import nodeRegistry
from phantom.metrics.interfaces import IMeasuredNode
from phantom.metrics.service import MetricsService
from phantom.netdb.api import ApiService
from phantom.netdb.records import routeKey
from phantom.netdb.service import DhtNode
from phantom.path.entries import EntryFloor
from phantom.path.interfaces import IPathFrameReceiver, PathKind
from phantom.path.keeper import PathKeeper
from phantom.path.service import PathService
from phantom.startup import StartupError, explainListenError
from phantom.tunnel.endpoint import EndToEnd, OneProtocolFactory, TunnelClientEndpoint
from phantom.tunnel.ports import TunnelPorts
from phantom.tunnel.service import TunnelService
from phantom.upkeep import Upkeep
from phantom.wire.dht import Table
from phantom.wire.link import Purpose


LEARN_INTERVAL = 2.0
"""Seconds between two tries to learn the address to publish, until it is known."""


def keptPaths(config):
    """
    How many paths of each kind a node of C{config} keeps built: entry paths where it takes
    inbound tunnels (and is not its own entry node), exit paths where it has a tun device or
    forwards ports (and does not open tunnels without them).

    @return: a dict from L{PathKind} to a count.
    """
    serves = config.tunnel.serve != "none" or config.tun is not None
    connects = config.tun is not None or bool(config.tunnel.forward)
    return {
        PathKind.ENTRY: config.path.entryPaths if serves and not config.tunnel.ownEntry else 0,
        PathKind.EXIT: config.path.exitPaths if connects and not config.tunnel.ownExit else 0,
    }


@implementer(IPathFrameReceiver, IControlledNode, IMeasuredNode)
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
        if config.listenEverywhere:
            listening = EveryAddressEndpoint(reactor, int(config.listenEndpoint.split(":")[1]), LISTEN_BACKLOG)
        else:
            listening = serverFromString(reactor, config.listenEndpoint)
        self.links = LinkService(
            self.identity,
            listening,
            config.link,
            reactor,
            bindAddress=config.listenAddress,
        )
        self.links.registerPurpose(Purpose.ECHO, EchoHandler)
        self.links.setServiceParent(self)
        self.dht = DhtNode(
            self.identity,
            self.links,
            reactor,
            config.dht,
            bootstrap=config.bootstrap,
            dataDir=config.dataDir,
            resolve=lambda contacts: resolveContacts(reactor.nameResolver, contacts),
        )
        self.dht.setServiceParent(self)
        self.paths = PathService(
            self.identity, self.links, self.dht, reactor, config.path, frameReceiver=self,
            entryFloor=EntryFloor(os.path.join(config.dataDir, "entry-floor")),
        )
        self.paths.setServiceParent(self)
        self.keeper = PathKeeper(
            self.paths, keptPaths(config), reactor, lambda: len(self.dht.table), random.SystemRandom(), ready=self.dht.joined
        )
        self.keeper.setServiceParent(self)
        self.apAddress = apAddressOf(self.identity.routingKey.public_key())
        keepOwnAddress(formatAddress(self.apAddress))
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
            self.router = PacketRouter(self.apAddress, self._connectPackets, exits=self.tunnels.exits)
            self.device = TunDevice(config.tun, self.router, reactor, exits=self.tunnels.exits)
            self.device.setServiceParent(self)
        inbound = Factory.forProtocol(lambda: PacketTunnel(self.router)) if self.router is not None else None
        self.tunnelPorts = TunnelPorts(self.tunnels, self.endToEnd, config.tunnel, reactor, inbound=inbound)
        self.tunnelPorts.setServiceParent(self)
        self.api = None
        if config.apiAddress is not None:
            apiEndpoint = serverEndpoint(reactor, *config.apiAddress)
            self.api = ApiService(self.dht, apiEndpoint, reactor, config.dht)
            self.api.setServiceParent(self)
        self.control = ControlService(self, config.dataDir, reactor)
        self.control.setServiceParent(self)
        self.metrics = None
        if config.metricsAddress is not None:
            registry, recorder = nodeRegistry(self)
            self.paths.onBuildFinished(recorder.buildFinished)
            self.dht.stats.onLookup(recorder.lookupFinished)
            self.metrics = MetricsService(registry, config.metricsAddress, reactor)
            self.metrics.setServiceParent(self)

    def pathFrameReceived(self, path, side, payload):
        """
        As the path service's L{IPathFrameReceiver}: a PATH link's frames are tunnel setup
        blocks, for the tunnel service (made after the path service, which it uses).
        """
        self.tunnels.pathFrameReceived(path, side, payload)

    def _connectPackets(self, source, apAddress, protocol):
        return TunnelClientEndpoint(self.tunnels, apAddress, source).connect(OneProtocolFactory(protocol))

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
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            # Logged here, where a daemon's log file has it; twistd then ends the program.
            error = StartupError(explainListenError(e, self.config))
            self.log.critical("phantom: {why}", why=str(error))
            error.logged = True
            raise error from None
        advertised = self.config.advertiseAddress
        if advertised is not None and isIPAddress(advertised[0]):
            self._publishAddress(advertised[0], advertised[1] or self.links.listeningAddress.port, "given")
        elif advertised is None and self.config.listenAddress is not None:
            self.dht.reachableAt(self.config.listenAddress, self.links.listeningAddress.port)

    def startService(self):
        self.startedAt = self.reactor.seconds()
        super().startService()
        if self.dht.address is None:
            learn = lambda: Deferred.fromCoroutine(self._learnAddress())  # noqa: E731
            self._learning = Upkeep(LEARN_INTERVAL, learn, self.reactor, "learning the address to publish")
            self._learning.setServiceParent(self)
        # Announced once the reactor runs, so signal handlers are in place: whoever waits for
        # this line may stop the node with SIGTERM at once and get a clean shutdown.
        self.reactor.callWhenRunning(self._announce)

    def _publishAddress(self, host, port, how):
        """Tell other nodes to reach this node at C{host:port} from now on."""
        self.links.advertiseAt(host, port)
        self.dht.reachableAt(host, port)
        self.log.info("other nodes reach this node at {address} ({how})", address=formatHostPort(host, port), how=how)

    async def _learnAddress(self):
        """
        Find the address to publish: the host name of --advertise-address resolved, or else the
        source address this node reaches a peer from (what the peer sees, unless a NAT lies
        between); then publish this node's record at it.
        """
        if self.dht.address is not None:
            self._learning.disownServiceParent()
            return
        port = self.links.listeningAddress.port
        advertised = self.config.advertiseAddress
        if advertised is not None:
            resolved = await resolveContacts(self.reactor.nameResolver, [Contact(advertised[0], advertised[1] or port)])
            if not resolved:
                return
            contact = resolved[0]
            self._publishAddress(contact.host, contact.port, f"{advertised[0]} resolved")
        else:
            peers = list(self.config.bootstrap) + list(self.dht.table)
            peers = [peer for peer in peers if isIPAddress(peer.host)] or await resolveContacts(self.reactor.nameResolver, peers)
            source = next(filter(None, (sourceAddressTo(peer.host) for peer in peers)), None)
            if source is None:
                return
            self._publishAddress(source, port, "the address peers see this node at")
        if self.dht.joined.called:
            await self.dht.publishNodeRecord()

    @property
    def apiAddress(self):
        """C{host:port} of the DHT module API, once listening."""
        bound = self.api.listeningAddress if self.api is not None else None
        return describePeer(bound) if bound is not None else None

    def _announce(self):
        if self.running:
            if self.api is not None:
                self.log.info("DHT module API listening on {address}", address=self.apiAddress)
            if self.metrics is not None:
                self.log.info("metrics served on http://{address}/", address=describePeer(self.metrics.listeningAddress))
            self.log.info(
                "phantom node {nodeId} listening on {address} with AP-address {apAddress}",
                nodeId=self.nodeId.hex(),
                address=self.address,
                apAddress=formatAddress(self.apAddress),
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

    def pathStates(self):
        return self.keeper.states()

    def connectTunnel(self, apAddress, factory):
        return TunnelClientEndpoint(self.tunnels, apAddress).connect(factory)

    def exitAddresses(self):
        return self.tunnels.exits.addresses

    def ownedTunnels(self):
        return self.tunnels.tunnels

    def carriedCount(self):
        return len(self.tunnels.carried)

    # IMeasuredNode: what the metrics ask besides

    def relayedCount(self):
        return len(self.paths.relaying)

    def participationCount(self):
        return self.paths.helping

    def storedBytes(self):
        return self.dht.store.size

    def rpcCounts(self):
        return dict(self.dht.stats.rpcs)
