"""
The Kademlia routing table, sans-io: contacts in, "ping this contact" and closest contacts out.

Ids are 256-bit and the distance between two ids is their XOR read as an unsigned integer. The
table keeps one k-bucket per length of the prefix an id shares with our own id: bucket M{i}
holds the contacts at a distance in M{[2^(255-i), 2^(256-i))}. This is the table of section 2.2 of
the Kademlia paper; its splitting-bucket tree (section 4.2) ends up with the same far buckets and
merges the near ones, which this table keeps apart: no splitting code, a contact's bucket is one
C{bit_length}, and the near buckets, the ones lookups end in, hold more contacts, not fewer.

Buckets are kept least-recently-seen first. A newcomer for a full bucket evicts nobody: the
table asks the caller to ping the oldest contact and keeps the newcomer in a bounded replacement
cache; a contact that fails the ping, or fails C{failureThreshold} requests in a row, gives its
place to the freshest replacement.
"""

import random
from collections import OrderedDict
from itertools import repeat
from operator import itemgetter

from phantom.netdb import ID_BITS, K

ID_BYTES = ID_BITS // 8

FAILURE_THRESHOLD = 3
"""Consecutive failed requests after which a contact is dropped."""

QUESTIONABLE_AFTER = 900.0
"""
Seconds of silence after which a contact is worth a ping before a newcomer may replace it
(15 minutes, as BitTorrent's DHT, BEP 5); fresher contacts keep their place without one.
"""

REFRESH_INTERVAL = 3600.0
"""Seconds after which a bucket nobody touched is refreshed (the Kademlia paper's hour)."""


def idAsInt(nodeId):
    """
    Read a node id or key as an integer, checking its size.

    @param nodeId: 32 bytes.
    @return: the id as an unsigned big-endian integer.
    @raise ValueError: C{nodeId} is not 32 bytes.
    """
    if not isinstance(nodeId, bytes) or len(nodeId) != ID_BYTES:
        raise ValueError(f"a node id is {ID_BYTES} bytes, not {nodeId!r}")
    return int.from_bytes(nodeId, "big")


_first = itemgetter(0)


def distance(a, b):
    """
    The Kademlia distance between two ids.

    @param a: a 32-byte id.
    @param b: a 32-byte id.
    @return: C{a XOR b} as an unsigned integer.
    @raise ValueError: an id is not 32 bytes.
    """
    return idAsInt(a) ^ idAsInt(b)


class KBucket:
    """
    The contacts at one range of distance from our id.

    A table makes a bucket when it first needs it: of the 256 ranges, a network of a
    million nodes fills about 20.

    @ivar contacts: L{Contact}s by node id, least recently seen first.
    @ivar replacements: L{Contact}s waiting for a place, by node id, most recently seen last.
    @ivar lastTouched: when a contact in this range was last seen or looked up, in seconds.
    @ivar pinging: the node id of the contact the table asked the caller to ping, or C{None}.
    @ivar lastSeen: when each contact was last seen, by node id.
    """

    __slots__ = ("contacts", "replacements", "lastTouched", "pinging", "lastSeen")

    def __init__(self, lastTouched):
        self.contacts = OrderedDict()
        self.replacements = OrderedDict()
        self.lastTouched = lastTouched
        self.pinging = None
        self.lastSeen = {}

    def oldest(self):
        """The least recently seen contact."""
        return next(iter(self.contacts.values()))


class RoutingTable:
    """
    The contacts a node knows, in k-buckets by distance from its own id.

    Inputs are L{seen} (any message from a contact, including the answer to a ping the table
    asked for), L{failed} (a request to a contact timed out or went wrong) and L{lookedUp} (a
    lookup started); outputs are the return value of L{seen}, L{closest} and L{refreshTargets}.

    @ivar ownId: our 32-byte node id; never stored.
    @ivar k: the most contacts a bucket holds.
    """

    def __init__(
        self,
        ownId,
        clock,
        rng=None,
        k=K,
        replacementSize=K,
        failureThreshold=FAILURE_THRESHOLD,
        questionableAfter=QUESTIONABLE_AFTER,
    ):
        """
        @param ownId: our 32-byte node id.
        @param clock: tells the time with C{seconds()}, like L{twisted.internet.task.Clock}.
        @param rng: a L{random.Random}-like source for refresh targets.
        @param k: the most contacts a bucket holds.
        @param replacementSize: the most replacements a bucket keeps.
        @param failureThreshold: consecutive failures after which a contact is dropped.
        @param questionableAfter: seconds of silence after which a full bucket's oldest contact
            is pinged before a newcomer may take its place.
        """
        self._own = idAsInt(ownId)
        self.ownId = ownId
        self._clock = clock
        self._rng = random.Random() if rng is None else rng
        self.k = k
        self._replacementSize = replacementSize
        self._failureThreshold = failureThreshold
        self.questionableAfter = questionableAfter
        self._failures = {}
        self._created = clock.seconds()
        self._buckets = {}
        """The buckets made so far, by index; a bucket not made was last touched at C{_created}."""

    def _indexOf(self, number):
        """
        The bucket index of an id: the length of the prefix it shares with ours.

        @param number: an id as an integer.
        @return: 0 to 255, or 256 for our own id.
        """
        return ID_BITS - (number ^ self._own).bit_length()

    def _bucketAt(self, index):
        """The bucket of C{index} (below L{ID_BITS}), made if it was not yet."""
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = KBucket(self._created)
        return bucket

    def _bucketOf(self, contact, make=True):
        """
        Find the bucket a contact belongs in.

        @param make: whether to make the bucket if it was not yet.
        @return: C{(nodeId, bucket)}; the bucket is C{None} for our own id (and for a bucket not
            made, unless C{make}).
        @raise ValueError: the contact has no 32-byte node id.
        """
        index = self._indexOf(idAsInt(contact.nodeId))
        if index >= ID_BITS:
            return contact.nodeId, None
        return contact.nodeId, (self._bucketAt(index) if make else self._buckets.get(index))

    def seen(self, contact):
        """
        Record that a contact sent us something: a request, a reply, the answer to a ping.

        A known contact moves to the tail of its bucket, with its new address if it changed.
        A new contact enters its bucket if there is room; otherwise it becomes a replacement,
        and unless a ping for that bucket is pending or even its oldest contact was heard from
        within L{QUESTIONABLE_AFTER} seconds, the table asks for that oldest contact to be pinged. The caller reports the outcome: L{seen} if it answers (it stays;
        the newcomer stays a replacement), L{failed} if not (it is evicted; the freshest
        replacement takes its place). Our own id is ignored.

        @param contact: a L{Contact} with its node id.
        @return: the L{Contact} to ping, or C{None}.
        @raise ValueError: the contact has no 32-byte node id.
        """
        # _bucketOf, inline: every request and reply a node handles comes here.
        nodeId = contact.nodeId
        if type(nodeId) is not bytes or len(nodeId) != ID_BYTES:
            idAsInt(nodeId)  # raises the ValueError that says why
        index = ID_BITS - (int.from_bytes(nodeId, "big") ^ self._own).bit_length()
        if index >= ID_BITS:
            return None
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._bucketAt(index)
        now = self._clock.seconds()
        bucket.lastTouched = now
        self._failures.pop(nodeId, None)
        if nodeId in bucket.contacts:
            bucket.contacts[nodeId] = contact
            bucket.contacts.move_to_end(nodeId)
            bucket.lastSeen[nodeId] = now
            if bucket.pinging == nodeId:
                bucket.pinging = None
            return None
        if len(bucket.contacts) < self.k:
            bucket.replacements.pop(nodeId, None)
            bucket.contacts[nodeId] = contact
            bucket.lastSeen[nodeId] = now
            return None
        bucket.replacements[nodeId] = contact
        bucket.replacements.move_to_end(nodeId)
        if len(bucket.replacements) > self._replacementSize:
            bucket.replacements.popitem(last=False)
        if bucket.pinging is not None:
            return None
        oldest = bucket.oldest()
        if now - bucket.lastSeen[oldest.nodeId] < self.questionableAfter:
            return None
        bucket.pinging = oldest.nodeId
        return oldest

    def failed(self, contact):
        """
        Record that a request to a contact timed out or failed.

        A contact that fails the ping L{seen} asked for is evicted at once; any other contact
        is evicted after C{failureThreshold} failures in a row (an answer resets the count).
        The freshest replacement takes an evicted contact's place. A replacement that fails is
        forgotten; unknown contacts are ignored.

        @param contact: a L{Contact} with its node id.
        @raise ValueError: the contact has no 32-byte node id.
        """
        nodeId, bucket = self._bucketOf(contact, make=False)
        if bucket is None:
            return
        if nodeId not in bucket.contacts:
            bucket.replacements.pop(nodeId, None)
            return
        if bucket.pinging != nodeId:
            failures = self._failures.get(nodeId, 0) + 1
            if failures < self._failureThreshold:
                self._failures[nodeId] = failures
                return
        self._evict(bucket, nodeId)

    def _evict(self, bucket, nodeId):
        """Remove a contact from its bucket and promote the freshest replacement."""
        del bucket.contacts[nodeId]
        del bucket.lastSeen[nodeId]
        self._failures.pop(nodeId, None)
        if bucket.pinging == nodeId:
            bucket.pinging = None
        if bucket.replacements:
            replacementId, replacement = bucket.replacements.popitem(last=True)
            bucket.contacts[replacementId] = replacement
            bucket.lastSeen[replacementId] = self._clock.seconds()

    def lookedUp(self, target):
        """
        Record that a lookup for C{target} started: its bucket need not be refreshed.

        @param target: a 32-byte id; our own id touches no bucket.
        @raise ValueError: C{target} is not 32 bytes.
        """
        index = self._indexOf(idAsInt(target))
        if index < ID_BITS:
            self._bucketAt(index).lastTouched = self._clock.seconds()

    def closest(self, target, count=K, exclude=(), replacements=False):
        """
        The known contacts closest to an id.

        Buckets are visited in order of distance from C{target}: its own bucket, then, unless
        that one gave enough, all the nearer buckets (their contacts share C{target}'s distance
        from us in its first bit), then the farther buckets one by one. Only the buckets needed
        are sorted.

        @param target: a 32-byte id.
        @param count: how many contacts at most.
        @param exclude: node ids to leave out.
        @param replacements: whether to count the replacements too (live nodes heard from
            lately that found their bucket full): a lookup starts from the closest of all.
        @return: a list of up to C{count} L{Contact}s, the closest first.
        @raise ValueError: C{target} is not 32 bytes.
        """
        return [contact for _, contact in self.closestMeasured(target, count, exclude, replacements)]

    def closestMeasured(self, target, count=K, exclude=(), replacements=False):
        """
        L{closest}, each contact with its distance from C{target}.

        @return: a list of up to C{count} C{(distance, contact)}, the closest first.
        @raise ValueError: C{target} is not 32 bytes.
        """
        number = idAsInt(target)
        index = self._indexOf(number)
        buckets = self._buckets
        ids, contacts = [], []
        wanted = count + len(exclude)
        own = buckets.get(index)
        chosen = [] if own is None else [own]
        if own is None or len(own.contacts) + (len(own.replacements) if replacements else 0) < wanted:
            chosen.extend([bucket for bucketIndex, bucket in buckets.items() if bucketIndex > index])
        farther = min(index, ID_BITS) - 1
        while True:
            for bucket in chosen:
                ids.extend(bucket.contacts)
                contacts.extend(bucket.contacts.values())
                if replacements:
                    ids.extend(bucket.replacements)
                    contacts.extend(bucket.replacements.values())
            chosen = []
            while not chosen and farther >= 0 and len(ids) < wanted:
                bucket = buckets.get(farther)
                farther -= 1
                if bucket is not None:
                    chosen.append(bucket)
            if not chosen:
                break
        # All in C: ids in the table were checked on the way in, and distinct ids are at
        # distinct distances, so the sort never compares two contacts.
        found = sorted(zip(map(number.__xor__, map(int.from_bytes, ids, repeat("big"))), contacts), key=_first)
        if exclude:
            excluded = set(exclude)
            found = [pair for pair in found if pair[1].nodeId not in excluded]
        return found[:count]

    def refreshTargets(self, now, interval=REFRESH_INTERVAL):
        """
        Ids to look up so that buckets nobody touched for C{interval} seconds learn fresh
        contacts: one random id in each such bucket, up to the nearest bucket that holds a
        contact (nearer buckets are covered by lookups of our own neighbourhood).

        @param now: the time in seconds.
        @param interval: how long a bucket may stay untouched.
        @return: a list of 32-byte ids, farthest bucket first.
        """
        nearest = max((index for index, bucket in self._buckets.items() if bucket.contacts), default=-1)
        return [
            self._randomIdIn(index)
            for index in range(nearest + 1)
            if now - self._lastTouched(index) >= interval
        ]

    def _lastTouched(self, index):
        bucket = self._buckets.get(index)
        return self._created if bucket is None else bucket.lastTouched

    def _randomIdIn(self, index):
        """A random id sharing exactly C{index} leading bits with ours."""
        free = ID_BITS - 1 - index
        prefix = (self._own ^ (1 << free)) >> free << free
        return (prefix | self._rng.getrandbits(free)).to_bytes(ID_BYTES, "big")

    def summary(self):
        """
        What C{phantomctl peers} shows: the buckets that hold contacts or replacements.

        @return: a list of dicts with C{index} (shared prefix length), C{size} (contacts),
            C{replacements} and C{lastTouched} (seconds).
        """
        return [
            {
                "index": index,
                "size": len(bucket.contacts),
                "replacements": len(bucket.replacements),
                "lastTouched": bucket.lastTouched,
            }
            for index, bucket in sorted(self._buckets.items())
            if bucket.contacts or bucket.replacements
        ]

    def __len__(self):
        """The number of contacts, replacements not counted."""
        return sum(len(bucket.contacts) for bucket in self._buckets.values())

    def __iter__(self):
        """The contacts, farthest bucket first, least recently seen first within a bucket."""
        for _, bucket in sorted(self._buckets.items()):
            yield from bucket.contacts.values()
