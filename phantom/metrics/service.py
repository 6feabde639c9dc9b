"""The HTTP port a node's metrics are scraped from."""

from prometheus_client import generate_latest
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

from phantom.address import serverEndpoint
from phantom.link.listening import ListeningService
from phantom.link.quota import RefusalLog, addressPrefix
from phantom.quota import Shares

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus server reads (the metrics' names need no newer one)."""
SCRAPE_TIMEOUT = 30
"""Seconds an HTTP connection to the metrics port may stay idle before it is closed."""
MAX_CONNECTIONS = 16
"""HTTP connections to the metrics port held at once (a Prometheus server keeps one)."""
MAX_CONNECTIONS_PER_ADDRESS = 4
"""The same from one address (its /32, or its /64 for IPv6)."""


class MetricsResource(Resource):
    """
    The Prometheus text exposition of one registry, at every path.

    @param registry: a C{CollectorRegistry}.
    """

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return generate_latest(self.registry)


class ConnectionCap(WrappingFactory):
    """
    Holds at most C{total} connections of C{wrappedFactory} at once, and C{perAddress} from one
    address (L{addressPrefix}); one beyond its address's share is closed at accept. When all are
    taken, the oldest connection of the address holding the most is aborted for an address
    holding fewer, so a flood from a few addresses cannot keep a scraper out.

    @param clock: C{IReactorTime}, for the summary log of refusals.
    @ivar refusals: the L{RefusalLog} of connections refused.
    """

    noisy = False

    def __init__(self, wrappedFactory, clock, total=MAX_CONNECTIONS, perAddress=MAX_CONNECTIONS_PER_ADDRESS):
        super().__init__(wrappedFactory)
        # One address is both the peer and the path of a connection.
        self._held = Shares(total, perAddress, perAddress, onEvicted=lambda protocol: protocol.transport.abortConnection())
        self.refusals = RefusalLog(clock, "metrics connection")

    def __len__(self):
        return len(self._held)

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        prefix = addressPrefix(host)
        if not self._held.admits(prefix, prefix):
            if self._held.held(prefix) >= self._held.perPeer:
                why = f"{self._held.perPeer} metrics connections from one address"
            else:
                why = f"{self._held.limit} metrics connections in total"
            self.refusals.refused(host, why)
            return None
        protocol = super().buildProtocol(addr)
        self._held.admit(protocol, prefix, prefix)
        return protocol

    def unregisterProtocol(self, protocol):
        super().unregisterProtocol(protocol)
        self._held.release(protocol)

    def doStop(self):
        self.refusals.stop()
        super().doStop()


class MetricsService(ListeningService):
    """
    Serves C{registry} over plain HTTP at C{address} on C{reactor}.

    @param registry: a C{CollectorRegistry}.
    @param address: C{(host, port)}; port 0 picks a free one (see L{listeningAddress}).
    @param reactor: the reactor it listens with.
    @param maxConnections: C{(total, per address)}: connections held at once (see L{ConnectionCap}).

    @ivar connections: the L{ConnectionCap} of the port.
    """

    def __init__(self, registry, address, reactor, maxConnections=(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS)):
        self._endpoint = serverEndpoint(reactor, *address)
        self.site = Site(MetricsResource(registry), timeout=SCRAPE_TIMEOUT)
        self.site.noisy = False
        self.connections = ConnectionCap(self.site, reactor, *maxConnections)

    def listener(self):
        return self._endpoint, self.connections

    @property
    def listeningAddress(self):
        """The C{IAddress} the metrics port listens on, once listening."""
        return self.port.getHost() if self.port is not None else None
