"""
Shares of what a hostile peer can make a node spend: items held at once, bounded in total, per
peer and per path, and work per second, bounded per peer. No I/O; time comes from a clock.

    pending = Shares(4096, perPeer=1024, perPath=256)
    if pending.admit(block, peer=nodeId, path=path):   # the heaviest peer gives way when full
        ...
    pending.release(block)

    arrays = RateLimits(rate=20, burst=40, seconds=clock.seconds)
    if not arrays.allow(nodeId):
        ...                                             # over this peer's share: refuse
"""

from collections import Counter, OrderedDict


class Shares:
    """
    Items held at once (pending setup blocks, say), each charged to a peer and a path: at most
    C{limit} in all, C{perPeer} for one peer and C{perPath} for one path. When all are taken,
    the oldest item of the peer holding the most gives way to a peer holding fewer, so a peer
    that floods recycles only its own share and never crowds out the others.

    @param onEvicted: C{onEvicted(item)}, told of each item that gave way.
    @param evict: C{False}: nobody gives way, a full total refuses (for items that must not be
        forgotten early).
    """

    def __init__(self, limit, perPeer, perPath, onEvicted=lambda item: None, evict=True):
        self._evict = evict
        self.limit = limit
        self.perPeer = perPeer
        self.perPath = perPath
        self._onEvicted = onEvicted
        self._items = OrderedDict()
        self._byPeer = Counter()
        self._byPath = Counter()

    def __len__(self):
        return len(self._items)

    def __contains__(self, item):
        return item in self._items

    def __iter__(self):
        return iter(self._items)

    def held(self, peer=None, path=None):
        """@return: how many items C{peer} (or C{path}) holds."""
        return self._byPeer[peer] if path is None else self._byPath[path]

    def heaviest(self):
        """@return: C{(peer, count)}: the peer holding the most items and how many; C{(None, 0)} if none."""
        return self._byPeer.most_common(1)[0] if self._byPeer else (None, 0)

    def admits(self, peer, path):
        """@return: whether an item of C{peer} on C{path} would be admitted now."""
        if self._byPeer[peer] >= self.perPeer or self._byPath[path] >= self.perPath:
            return False
        return len(self._items) < self.limit or (self._evict and self._heaviest(peer) is not None)

    def admit(self, item, peer, path):
        """
        Hold C{item} for C{peer} on C{path}, if their shares allow.

        @return: whether it is held.
        """
        if item in self._items or not self.admits(peer, path):
            return False
        if len(self._items) >= self.limit:
            heaviest = self._heaviest(peer)
            oldest = next(held for held, (owner, _) in self._items.items() if owner == heaviest)
            self.release(oldest)
            self._onEvicted(oldest)
        self._items[item] = (peer, path)
        self._byPeer[peer] += 1
        self._byPath[path] += 1
        return True

    def _heaviest(self, peer):
        """The peer holding the most, if it holds more than C{peer} would with one more item."""
        heaviest, count = self.heaviest()
        return heaviest if count > self._byPeer[peer] + 1 else None

    def release(self, item):
        """Stop holding C{item} (nothing if it is not held)."""
        held = self._items.pop(item, None)
        if held is None:
            return
        peer, path = held
        for counts, key in ((self._byPeer, peer), (self._byPath, path)):
            counts[key] -= 1
            if not counts[key]:
                del counts[key]


class RateLimits:
    """
    A token bucket per peer: C{rate} units a second, up to C{burst} saved. Buckets that have
    filled up again are forgotten, and at most C{maxPeers} are kept: a new peer beyond that is
    refused until some fill up.

    @param seconds: C{() -> float}, the clock.
    """

    def __init__(self, rate, burst, seconds, maxPeers=4096):
        self.rate = rate
        self.burst = burst
        self._seconds = seconds
        self._maxPeers = maxPeers
        self._buckets = {}

    def allow(self, peer, cost=1):
        """
        @return: whether C{peer} may spend C{cost} units now (they are taken if so).
        """
        now = self._seconds()
        tokens = self._tokens(peer, now)
        if peer not in self._buckets and len(self._buckets) >= self._maxPeers:
            self._forgetFull(now)
            if len(self._buckets) >= self._maxPeers:
                return False
        if tokens < cost:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - cost, now)
        return True

    def has(self, peer, amount):
        """@return: whether C{peer} has C{amount} units to spend now (none are taken)."""
        return self._tokens(peer, self._seconds()) >= amount

    def charge(self, peer, cost=1):
        """
        Take C{cost} units from C{peer} whatever it has left: work already done is paid for,
        and a peer in debt is refused until its bucket fills again.
        """
        now = self._seconds()
        self._buckets[peer] = (self._tokens(peer, now) - cost, now)

    def _tokens(self, peer, now):
        tokens, then = self._buckets.get(peer, (self.burst, now))
        return min(self.burst, tokens + (now - then) * self.rate)

    def _forgetFull(self, now):
        for peer in [peer for peer in self._buckets if self._tokens(peer, now) >= self.burst]:
            del self._buckets[peer]
