"""Shares of held items and rates of work per peer: what one hostile peer can make a node spend."""

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from phantom.quota import RateLimits, Shares


class SharesTests(SynchronousTestCase):
    def test_boundsPerPeerAndPath(self):
        """A peer holds at most its share, a path at most its own; releasing makes room again."""
        shares = Shares(100, perPeer=10, perPath=3)
        admitted = [shares.admit(index, "mallory", index % 5) for index in range(20)]
        self.assertEqual(sum(admitted), 10)
        self.assertEqual(shares.held("mallory"), 10)
        self.assertTrue(shares.admit("honest", "alice", 0))
        self.assertFalse(shares.admit("more", "bob", 0), "path 0 holds three")
        shares.release(0)
        self.assertTrue(shares.admit("more", "bob", 0))
        self.assertFalse(shares.admit("more", "bob", 1), "held already")

    def test_heaviestGivesWay(self):
        """All taken: the peer holding the most loses its oldest to one holding fewer, never to itself."""
        evicted = []
        shares = Shares(6, perPeer=6, perPath=6, onEvicted=evicted.append)
        for index in range(6):
            self.assertTrue(shares.admit(("m", index), "mallory", index))
        self.assertFalse(shares.admit(("m", 6), "mallory", 6))
        for index in range(3):
            self.assertTrue(shares.admit(("a", index), "alice", index))
        self.assertEqual(evicted, [("m", 0), ("m", 1), ("m", 2)])
        self.assertFalse(shares.admit(("a", 3), "alice", 3), "alice would hold more than mallory")
        self.assertEqual((shares.held("mallory"), shares.held("alice"), len(shares)), (3, 3, 6))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.integers(0, 3), st.integers(0, 3)), max_size=120))
    def test_neverBeyondAnyBound(self, steps):
        """Whatever is admitted and released, no bound is ever passed and the counts add up."""
        shares = Shares(12, perPeer=5, perPath=7)
        for admit, item, peer, path in steps:
            if admit:
                shares.admit(item, peer, path)
            else:
                shares.release(item)
            self.assertLessEqual(len(shares), 12)
            self.assertEqual(sum(shares.held(peer) for peer in range(4)), len(shares))
            self.assertTrue(all(shares.held(peer) <= 5 for peer in range(4)))
            self.assertTrue(all(shares.held(path=path) <= 7 for path in range(4)))


class RateLimitsTests(SynchronousTestCase):
    def test_burstThenRate(self):
        """A peer spends its burst at once, then its rate; other peers are not touched."""
        clock = Clock()
        limits = RateLimits(rate=2, burst=5, seconds=clock.seconds)
        self.assertEqual(sum(limits.allow("mallory") for _ in range(50)), 5)
        self.assertTrue(limits.allow("alice"))
        clock.advance(1)
        self.assertEqual(sum(limits.allow("mallory") for _ in range(50)), 2)
        clock.advance(100)
        self.assertEqual(sum(limits.allow("mallory") for _ in range(50)), 5)

    def test_boundedPeers(self):
        """At most C{maxPeers} buckets: a new peer waits until one fills up again."""
        clock = Clock()
        limits = RateLimits(rate=1, burst=2, seconds=clock.seconds, maxPeers=3)
        for peer in range(3):
            self.assertTrue(limits.allow(peer))
        self.assertFalse(limits.allow("new"))
        clock.advance(1)
        self.assertTrue(limits.allow("new"))
