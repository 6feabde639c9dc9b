"""A whole Phantom node: identity, link layer, network database, module API and control socket as one service."""

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import describePeer, formatAddress, formatHostPort, parseAddress, serverEndpoint
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
from phantom.path.interfaces import IPathFrameReceiver
from phantom.path.plan import PathShape
from phantom.path.service import PathService
from phantom.tunnel.endpoint import EchoProbe, EndToEnd, OneProtocolFactory, TunnelClientEndpoint
from phantom.tunnel.ports import TunnelPorts
from phantom.tunnel.service import TunnelService
from phantom.wire.dht import Table
from phantom.wire.link import Purpose


@implementer(IPathFrameReceiver)
class PhantomNode(MultiService):
    """
    A node, ready to be started by twistd or by a test.

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
        self.paths = PathService(self.identity, self.links, self.dht, reactor, config.path, frameReceiver=self)
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
        return TunnelClientEndpoint(self.tunnels, self.endToEnd, apAddress).connect(OneProtocolFactory(protocol))

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

    def status(self):
        """The node's state, as the control socket's C{Status} command returns it."""
        return {
            "node_id": self.nodeId.hex(),
            "listening": self.address or "",
            "api": self.apiAddress or "",
            "uptime": self.reactor.seconds() - self.startedAt if self.startedAt is not None else 0.0,
            "links": len(self.links.links),
            "connections": len(self.links.connections),
            "peers": self.peers(),
        }

    def routingSummary(self):
        """The routing table as the control socket's C{Peers} command returns it."""
        now = self.reactor.seconds()
        return {
            "contacts": self.peers(),
            "buckets": [
                {"index": b["index"], "size": b["size"], "replacements": b["replacements"], "idle": now - b["lastTouched"]}
                for b in self.dht.table.summary()
            ],
            "lookups": self.dht.stats.lookups,
            "lookup_requests": self.dht.stats.requests,
            "stored": len(self.dht.store),
        }

    async def _build(self, kind, x, y):
        path = await self.paths.build(kind, PathShape(x, y))
        return {
            "kind": path.kind,
            "ap_address": formatAddress(path.apAddress) if path.apAddress != bytes(16) else "",
            "nodes": [record.nodeId.hex() for record in path.nodes],
            "phases": [{"name": name, "seconds": seconds} for name, seconds in path.phases.items()],
            "seconds": sum(path.phases.values()),
        }

    def buildPath(self, kind, x, y):
        """Build a path, as the control socket's C{PathBuild} command answers."""
        return Deferred.fromCoroutine(self._build(kind, x, y))

    def pathList(self):
        """The paths this node owns, as the control socket's C{PathList} command answers."""
        now = self.reactor.seconds()
        return [
            {
                "kind": path.kind,
                "ap_address": formatAddress(path.apAddress) if path.apAddress != bytes(16) else "",
                "x0": describePeer(path.link.peer),
                "age": now - path.builtAt,
                "length": len(path.nodes),
            }
            for path in self.paths.paths
        ]

    async def _lookupRoute(self, apText):
        record = await self.dht.findRecord(Table.ROUTE, routeKey(parseAddress(apText)))
        if record is None:
            return {"found": False, "sequence": 0, "expires": 0, "entry_nodes": []}
        return {
            "found": True,
            "sequence": record.sequence,
            "expires": record.expires,
            "entry_nodes": [{"node_id": n.nodeId.hex(), "address": formatHostPort(n.host, n.port)} for n in record.entryNodes],
        }

    def lookupRoute(self, apText):
        """The verified routing entry of an AP-address, as the control socket's C{RouteLookup} answers."""
        return Deferred.fromCoroutine(self._lookupRoute(apText))

    def openTunnel(self, apText, probeTimeout=5.0):
        """
        Open a tunnel to an AP-address with end-to-end TLS, time a 1 KiB echo through it, close
        it; as the control socket's C{TunnelOpen} answers.
        """
        return Deferred.fromCoroutine(self._openTunnel(parseAddress(apText), probeTimeout))

    async def _openTunnel(self, apAddress, probeTimeout):
        started = self.reactor.seconds()
        probe = await TunnelClientEndpoint(self.tunnels, self.endToEnd, apAddress).connect(Factory.forProtocol(EchoProbe))
        opened = self.reactor.seconds()
        try:
            rtt = await probe.measure(self.reactor, probeTimeout)
        finally:
            probe.transport.loseConnection()
        return {
            "ap_address": formatAddress(apAddress),
            "peer": formatAddress(probe.transport.getPeer().apAddress),
            "open_seconds": opened - started,
            "rtt_seconds": rtt,
        }

    def tunnelList(self):
        """The tunnels this node owns an end of, and how many it carries; as C{TunnelList} answers."""
        now = self.reactor.seconds()
        return {
            "ap_address": formatAddress(self.apAddress),
            "tunnels": [
                {
                    "direction": "out" if tunnel.outbound else "in",
                    "peer": formatAddress(tunnel.getPeer().apAddress) if tunnel.getPeer().apAddress else "",
                    "age": now - tunnel.openedAt,
                    "sent": tunnel.bytesSent,
                    "received": tunnel.bytesReceived,
                }
                for tunnel in self.tunnels.tunnels
            ],
            "carried": len(self.tunnels.carried),
        }

    def tunStatus(self):
        """The tun device's state and counts, as the control socket's C{TunStatus} answers."""
        if self.router is None:
            return {"device": "", "ap_address": formatAddress(self.apAddress), "tunnels": 0, "counts": []}
        return {
            "device": self.device.name,
            "ap_address": formatAddress(self.apAddress),
            "tunnels": len(self.router.tunnels),
            "counts": [{"event": event, "packets": count} for event, count in sorted(self.router.counts.items())],
        }

    def peers(self):
        """
        The nodes this node knows: the contacts of its routing table and the nodes it has links
        with, each with its address and open links in each direction.
        """
        known = {
            contact.nodeId: {"node_id": contact.nodeId.hex(), "address": formatHostPort(contact.host, contact.port), "inbound": 0, "outbound": 0}
            for contact in self.dht.table
        }
        for peer in self.links.peers():
            entry = known.setdefault(peer["nodeId"], {"node_id": peer["nodeId"].hex(), "address": peer["address"]})
            entry.update(inbound=peer["inbound"], outbound=peer["outbound"])
        return [known[nodeId] for nodeId in sorted(known)]
