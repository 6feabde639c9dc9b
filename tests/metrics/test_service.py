"""A node's metrics scraped over HTTP: real nodes in this process, real sockets on loopback."""

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from phantom.address import describePeer
from phantom.config import resolveConfig
from phantom.metrics.service import MetricsService
from phantom.node import PhantomNode
from tests.control.test_control import startNode
from tests.link.helpers import LogCollector, RawClient, connectRaw, freePort, freshLoopbackAddress, until


def startMeasuredNode(testCase, bootstrap=None):
    """A node on a fresh loopback address serving its metrics on a free port there."""
    address = freshLoopbackAddress()
    return startNode(testCase, address, bootstrap, metricsAddress=f"{address}:{freePort(address)}")


def scrape(node):
    """@return: the samples C{node} serves, by name and labels, and the response's content type."""
    return scrapeService(node.metrics)


async def scrapeService(service, fromHost=None):
    """L{scrape} of a L{MetricsService}, from C{fromHost} if given."""
    url = f"http://{describePeer(service.listeningAddress)}/metrics"
    agent = Agent(reactor, bindAddress=(fromHost, 0) if fromHost else None)
    response = await agent.request(b"GET", url.encode())
    body = await readBody(response)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    return samples, response.headers.getRawHeaders(b"content-type")[0].decode()


class ScrapeTests(TestCase):
    async def test_scrape(self):
        """Two nodes in one process each serve their own metrics; a link opened shows at the next scrape."""
        first = startMeasuredNode(self)
        before, contentType = await scrape(first)
        self.assertTrue(contentType.startswith("text/plain; version=0.0.4"))
        self.assertEqual(before[("phantom_links", ())], 0)
        self.assertEqual(before[("phantom_owned_paths", (("kind", "exit"),))], 0)
        self.assertIn(("phantom_uptime_seconds", ()), before)
        self.assertIn(("phantom_dht_lookups_total", ()), before)
        second = startMeasuredNode(self, bootstrap=first.address)
        await second.dht.joined
        after, _ = await scrape(first)
        self.assertEqual(after[("phantom_links", ())], 1)
        self.assertEqual(after[("phantom_routing_table_contacts", ())], 1)
        theirs, _ = await scrape(second)
        self.assertGreater(theirs[("phantom_dht_lookups_total", ())], 0)
        self.assertEqual(theirs[("phantom_dht_lookup_seconds_count", ())], theirs[("phantom_dht_lookups_total", ())])
        self.assertGreater(theirs[("phantom_dht_rpcs_total", (("kind", "FIND_NODE"), ("outcome", "answered")))], 0)

    def test_off(self):
        """Without a metrics address, nothing serves metrics."""
        config = resolveConfig(dataDir=self.mktemp(), port="0", listenAddress="127.0.0.1")
        self.assertIsNone(PhantomNode(config, reactor).metrics)


class ConnectionCapTests(TestCase):
    """
    A flood of idle connections to the metrics port is capped per address and in total, and a
    scraper from another address is still served.
    """

    def startMetrics(self, total, perAddress):
        registry = CollectorRegistry()
        Gauge("phantom_test_gauge", "a value to scrape", registry=registry).set(7)
        address = freshLoopbackAddress()
        service = MetricsService(registry, (address, 0), reactor, maxConnections=(total, perAddress))
        service.startService()
        self.addCleanup(service.stopService)
        self.addCleanup(until, lambda: len(service.connections) == 0)
        return service

    def flood(self, service, count, fromHost):
        """C{count} idle connections from C{fromHost}: their clients and C{closed} Deferreds."""
        clients = [RawClient() for _ in range(count)]
        address = service.listeningAddress
        closed = [connectRaw(address.port, client, host=address.host, tls=False, fromHost=fromHost) for client in clients]

        async def hangUp():
            for client in clients:
                if client.transport is not None and not client.closed.called:
                    client.transport.abortConnection()
            await gatherResults(closed)

        self.addCleanup(hangUp)
        return clients, closed

    async def test_floodFromOneAddress(self):
        """
        Ten idle connections from one address: two are held, eight closed at accept with one
        log line; a scrape from another address is answered.
        """
        service = self.startMetrics(total=4, perAddress=2)
        logs = LogCollector(self, "phantom")
        _, closed = self.flood(service, 10, freshLoopbackAddress())
        await until(lambda: sum(d.called for d in closed) == 8)
        self.assertEqual(len(service.connections), 2)
        samples, _ = await scrapeService(service, fromHost=freshLoopbackAddress())
        self.assertEqual(samples[("phantom_test_gauge", ())], 7)
        self.assertEqual(service.connections.refusals.total, 8)
        lines = [line for line in logs.lines if "refused" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("2 metrics connections from one address", lines[0])

    async def test_totalTakenScraperStillServed(self):
        """
        With every connection of the total held by two flooding addresses, a scraper from a
        third is served: the oldest connection of an address holding the most gives way.
        """
        service = self.startMetrics(total=4, perAddress=2)
        closed = []
        for _ in range(2):
            closed += self.flood(service, 2, freshLoopbackAddress())[1]
        await until(lambda: len(service.connections) == 4)
        samples, _ = await scrapeService(service, fromHost=freshLoopbackAddress())
        self.assertEqual(samples[("phantom_test_gauge", ())], 7)
        self.assertEqual(sum(d.called for d in closed), 1)
        self.assertEqual(service.connections.refusals.total, 0)
