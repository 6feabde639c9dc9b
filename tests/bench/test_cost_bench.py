"""
The cost benchmark at a small scale, holding what a unit of work may cost a node in memory
(issue 16): bytes and descriptors counted, never a time.

Before the link changes of that issue a tunnel cost a relay 131 KiB of RSS idle (at 100 tunnels)
and 207 KiB after traffic: OpenSSL kept each TLS connection's record buffers while it was idle,
and its receive buffer kept room for the largest read from the socket (64 KiB).
"""

import json

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from bench import BENCHMARKS, cost
from tests.bench.helpers import runBench

KIB = 1024


class UnitTests(SynchronousTestCase):
    """What the units measured in this process cost."""

    def test_registered(self):
        """The benchmark is on the command line as C{cost}."""
        self.assertEqual(BENCHMARKS["cost"], "bench.cost")

    def test_counts(self):
        """C{--counts} is a comma-separated list of positive numbers, taken in order."""
        self.assertEqual(cost.parseCounts("100,1, 10"), [1, 10, 100])
        self.assertRaises(ValueError, cost.parseCounts, "0,5")
        self.assertRaises(ValueError, cost.parseCounts, "")

    def test_participation(self):
        """A path participation costs an X-node at most 16 KiB of heap, besides its links."""
        perParticipation, _, cpu = cost.participationHeap(30)
        self.assertGreater(cpu, 0)
        self.assertLessEqual(perParticipation, cost.PARTICIPATION_GOAL)

    def test_records(self):
        """A stored record takes no more memory than the store's budget charges for it."""
        for kind, (grown, charged, _) in cost.recordHeap(200).items():
            self.assertLessEqual(grown, charged, kind)

    def test_tlsConnection(self):
        """
        An idle TLS connection of a link costs OpenSSL at most 40 KiB (35 KiB measured with
        OpenSSL 4.0 and X25519MLKEM768; 59 KiB without C{SSL_MODE_RELEASE_BUFFERS}), a
        handshaken one more than one just made.
        """
        idle, fresh, group = cost.tlsConnectionHeap(50)
        self.assertLessEqual(idle, 40 * KIB, group)
        self.assertGreater(idle, fresh)
        self.assertGreater(fresh, 0)

    def test_contact(self):
        """A contact in the routing table costs at most 160 bytes of heap."""
        self.assertLessEqual(cost.contactHeap(400)[0], 160)


class RelayTests(TestCase):
    """Tunnels through a relay process on loopback, with real TLS links."""

    timeout = 240

    async def test_tunnelMemory(self):
        """
        At 100 tunnels a relay holds at most 100 KiB of RSS per tunnel idle, and 160 KiB once
        they have carried traffic; one descriptor a link; and the CPU figures are there.
        """
        figures = await cost.measureTunnels(reactor, [100], mib=2, rounds=1)
        self.assertLessEqual(figures["tunnel_rss_bytes_at_100"], 100 * KIB, figures)
        self.assertLessEqual(figures["tunnel_rss_bytes_after_traffic"], 160 * KIB, figures)
        self.assertEqual(figures["link_descriptors_at_100"], 1.0)
        # OpenSSL's two connections and the larger Python objects, within what RSS shows.
        self.assertLessEqual(figures["tunnel_c_heap_bytes_at_100"], figures["tunnel_rss_bytes_at_100"] + 8 * KIB, figures)
        self.assertGreater(figures["tunnel_c_heap_bytes_after_traffic"], figures["tunnel_c_heap_bytes_at_100"], figures)
        for name in ("relay_cpu_ms_per_mib_at_1", "relay_cpu_ms_per_mib_at_100", "relay_cpu_ms_per_mib_at_100_cell_each"):
            self.assertGreater(figures[name], 0, name)

    async def test_tunnelHeap(self):
        """At 50 tunnels a relay's Python heap holds at most 24 KiB per tunnel."""
        figures, notes = await cost.measureTunnelHeap(reactor, [50], top=3)
        self.assertLessEqual(figures["tunnel_heap_bytes_at_50"], 24 * KIB, figures)
        self.assertEqual(len(notes), 4)


class CommandLineTests(TestCase):
    timeout = 300

    async def test_json(self):
        """C{python -m bench cost --json} prints one object with every figure and its baseline."""
        out, err, status = await runBench(
            self,
            "cost", "--json", "--counts", "1,4", "--mib", "1", "--paths", "4", "--records", "20", "--contacts", "40"
        )
        self.assertEqual(status, 0, err)
        result = json.loads(out)
        self.assertEqual(result["name"], "cost")
        expected = {
            "tunnel_rss_bytes_at_1", "tunnel_rss_bytes_at_4", "tunnel_heap_bytes_at_1", "tunnel_heap_bytes_at_4",
            "tunnel_rss_bytes_after_traffic", "tunnel_rss_bytes_after_traffic_trimmed",
            "link_descriptors_at_1", "link_descriptors_at_4",
            "tunnel_c_heap_bytes_at_1", "tunnel_c_heap_bytes_at_4", "tunnel_c_heap_bytes_after_traffic",
            "tls_connection_c_heap_bytes", "tls_connection_c_heap_bytes_fresh",
            "relay_cpu_ms_per_mib_at_1", "relay_cpu_ms_per_mib_at_4", "relay_cpu_ms_per_mib_at_4_cell_each",
            "participation_heap_bytes", "record_heap_bytes_value", "record_heap_bytes_node", "contact_heap_bytes",
            "participation_cpu_ms", "record_cpu_us_value", "record_cpu_us_node", "contact_cpu_us",
        }
        self.assertEqual(set(result["figures"]), expected)
        self.assertEqual(result["baseline"]["tunnel_rss_bytes_at_4"], cost.TUNNEL_GOAL)
