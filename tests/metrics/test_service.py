"""A node's metrics scraped over HTTP: real nodes in this process, real sockets on loopback."""

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from phantom.address import describePeer
from phantom.config import resolveConfig
from phantom.node import PhantomNode
from tests.control.test_control import startNode
from tests.link.helpers import freePort, freshLoopbackAddress


def startMeasuredNode(testCase, bootstrap=None):
    """A node on a fresh loopback address serving its metrics on a free port there."""
    address = freshLoopbackAddress()
    return startNode(testCase, address, bootstrap, metricsAddress=f"{address}:{freePort(address)}")


async def scrape(node):
    """@return: the samples C{node} serves, by name and labels, and the response's content type."""
    url = f"http://{describePeer(node.metrics.listeningAddress)}/metrics"
    response = await Agent(reactor).request(b"GET", url.encode())
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
