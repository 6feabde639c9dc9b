"""The HTTP port a node's metrics are scraped from."""

from prometheus_client import generate_latest
from twisted.web.resource import Resource
from twisted.web.server import Site

from phantom.address import serverEndpoint
from phantom.link.listening import ListeningService

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus server reads (the metrics' names need no newer one)."""
SCRAPE_TIMEOUT = 30
"""Seconds an HTTP connection to the metrics port may stay idle before it is closed."""


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


class MetricsService(ListeningService):
    """
    Serves C{registry} over plain HTTP at C{address} on C{reactor}.

    @param registry: a C{CollectorRegistry}.
    @param address: C{(host, port)}; port 0 picks a free one (see L{listeningAddress}).
    @param reactor: the reactor it listens with.
    """

    def __init__(self, registry, address, reactor):
        self._endpoint = serverEndpoint(reactor, *address)
        self.site = Site(MetricsResource(registry), timeout=SCRAPE_TIMEOUT)
        self.site.noisy = False

    def listener(self):
        return self._endpoint, self.site

    @property
    def listeningAddress(self):
        """The C{IAddress} the metrics port listens on, once listening."""
        return self.port.getHost() if self.port is not None else None
