"""
The iterative Kademlia lookup, sans-io: answers in, the next contacts to ask out.

One L{Lookup} finds the k contacts closest to a target (FIND_NODE) or a value stored under it
(FIND_VALUE), as section 2.3 of the Kademlia paper describes. Rather than in rounds of alpha
requests, a new request leaves as soon as one returns (the paper allows it), always to the
closest contact not asked yet, and only while that contact is among the k closest known: a
contact that nearer ones have pushed out of the k closest is never asked.

The caller sends the requests L{Lookup.nextQueries} names, and reports each outcome with
L{Lookup.responded}, L{Lookup.found} or L{Lookup.failed}, until L{Lookup.done}.
"""

import enum

from phantom.netdb import ALPHA, K
from phantom.netdb.routing import ID_BYTES, idAsInt

MAX_LOOKUP_REQUESTS = 5 * K
"""
The most requests one lookup sends: an honest one in a large network sends about k and a few
more, while nodes that keep naming closer nodes (ids near a key are cheap to grind out of key
pairs) could otherwise keep it going without end.
"""


class Progress(enum.Enum):
    """How far a lookup got with one contact."""

    HEARD_OF = "heard of"
    ASKED = "asked"
    ANSWERED = "answered"
    HELD_VALUE = "held the value"
    FAILED = "failed"


_WAITING = (Progress.HEARD_OF, Progress.ASKED)
_HEARD_OF, _ASKED, _ANSWERED = Progress.HEARD_OF, Progress.ASKED, Progress.ANSWERED


class Lookup:
    """
    One FIND_NODE or FIND_VALUE lookup.

    It ends when each of the k closest contacts heard of (the failed ones left out) has answered,
    or when a contact returns the value, or when the last of L{MAX_LOOKUP_REQUESTS} requests
    has its outcome. Once it is done, further outcomes are ignored.

    @ivar target: the 32-byte id or key looked up.
    @ivar requests: how many requests L{nextQueries} has asked for so far.
    @ivar inFlight: how many of them have no outcome yet.
    @ivar value: the first value found (FIND_VALUE), or C{None}.
    @ivar valueSource: the L{Contact} that returned L{value}, or C{None}.
    @ivar values: C{(contact, value)} of every value found; more than one only when collecting.
    """

    def __init__(
        self, target, contacts, ownId, k=K, alpha=ALPHA, findValue=False, collect=False, maxRequests=MAX_LOOKUP_REQUESTS, measured=False
    ):
        """
        @param target: the 32-byte id or key to look up.
        @param contacts: the L{Contact}s to start from, usually the closest in our routing table.
        @param ownId: our node id, never asked and never in the result.
        @param k: how many closest contacts the lookup finds.
        @param alpha: how many requests may be in flight at once.
        @param findValue: C{True} for FIND_VALUE, C{False} for FIND_NODE.
        @param collect: for FIND_VALUE, do not stop at the first value: ask on until each of
            the k closest has answered, and keep every value in L{values} (so that a node
            near the key serving an old value cannot hide a newer one).
        @param maxRequests: the lookup asks no more once it has sent this many requests; it
            ends with what it has when they are answered.
        @param measured: C{contacts} are C{(distance from the target, contact)} pairs, as
            L{phantom.netdb.routing.RoutingTable.closestMeasured} gives them (their ids
            checked), not L{Contact}s.
        @raise ValueError: C{target} or a contact's node id is not 32 bytes.
        """
        self.target = target
        self._target = idAsInt(target)
        self._ownId = ownId
        self._k = k
        self._alpha = alpha
        self._findValue = findValue
        self._collect = collect
        self._maxRequests = maxRequests
        self.values = []
        """C{(contact, value)} of every value found, in the order found."""
        self._contacts = {}
        """The contacts heard of (the candidates), by node id."""
        self._progress = {}
        """The L{Progress} of each candidate, by node id."""
        self._ranked = []
        """C{(distance, nodeId)} of the candidates that did not fail, closest first."""
        self.requests = 0
        self.inFlight = 0
        self.value = None
        self.valueSource = None
        self._heardOf(contacts if measured else self._measure(contacts))

    def _measure(self, contacts):
        """
        Pair each contact with its distance from the target.

        @return: a list of C{(distance from the target, contact)}.
        @raise ValueError: a contact's node id is not 32 bytes.
        """
        target = self._target
        measured = []
        for contact in contacts:
            nodeId = contact.nodeId
            if type(nodeId) is not bytes or len(nodeId) != ID_BYTES:
                idAsInt(nodeId)  # raises the ValueError that says why
            measured.append((int.from_bytes(nodeId, "big") ^ target, contact))
        return measured

    def _heardOf(self, measured):
        """
        Add the contacts not heard of before, ours left out.

        @param measured: what L{_measure} returns.
        """
        contacts, progress, ownId, ranked = self._contacts, self._progress, self._ownId, self._ranked
        before = len(ranked)
        for contactDistance, contact in measured:
            nodeId = contact.nodeId
            if nodeId == ownId or nodeId in contacts:
                continue
            contacts[nodeId] = contact
            progress[nodeId] = _HEARD_OF
            ranked.append((contactDistance, nodeId))
        if len(ranked) > before:
            # Distinct ids are at distinct distances: the sort never compares two ids.
            ranked.sort()

    @property
    def done(self):
        """
        C{True} once the value is found, each of the k closest candidates has answered, or
        every request it may send has its outcome.
        """
        if self.valueSource is not None and not self._collect:
            return True
        if self.requests >= self._maxRequests and not self.inFlight:
            return True
        progress = self._progress
        for _, nodeId in self._ranked[: self._k]:
            if progress[nodeId] in _WAITING:
                return False
        return True

    def nextQueries(self):
        """
        The contacts to ask now: the closest not asked yet among the k closest known, as many
        as keep alpha requests in flight. Each is counted as asked and in flight.

        @return: a list of L{Contact}s, possibly empty.
        """
        if self.done:
            return []
        queries = []
        progress = self._progress
        for _, nodeId in self._ranked[: self._k]:
            if self.inFlight == self._alpha or self.requests >= self._maxRequests:
                break
            if progress[nodeId] is _HEARD_OF:
                progress[nodeId] = _ASKED
                self.inFlight += 1
                self.requests += 1
                queries.append(self._contacts[nodeId])
        return queries

    def _settle(self, contact, progress):
        """
        Record the outcome of the request to C{contact}.

        @return: C{False} if the lookup is done and ignores the outcome, else C{True}.
        @raise ValueError: C{contact} was not asked, or already has an outcome.
        """
        if self.done:
            return False
        nodeId = contact.nodeId
        if self._progress.get(nodeId) is not _ASKED:
            raise ValueError(f"{contact} has no request in flight")
        self._progress[nodeId] = progress
        self.inFlight -= 1
        return True

    def responded(self, contact, contacts):
        """
        A contact answered with the contacts it knows closest to the target.

        @param contact: the L{Contact} asked.
        @param contacts: the L{Contact}s it returned; duplicates and our own id are skipped.
        @raise ValueError: C{contact} has no request in flight, or a returned contact has no
            32-byte node id (then the answer is not recorded).
        """
        measured = self._measure(contacts)
        if self._settle(contact, Progress.ANSWERED):
            self._heardOf(measured)

    def found(self, contact, value):
        """
        A contact returned the value (FIND_VALUE); the lookup is done, unless it collects.

        Values must be checked before they are reported: a contact that returns an invalid
        value is reported with L{failed} instead, and the lookup goes on without it.

        @param contact: the L{Contact} asked.
        @param value: the value it returned, checked by the caller.
        @raise ValueError: C{contact} has no request in flight, or this is a FIND_NODE lookup.
        """
        if not self._findValue:
            raise ValueError("a FIND_NODE lookup finds no value")
        if self._settle(contact, Progress.HELD_VALUE):
            self.values.append((contact, value))
            if self.valueSource is None:
                self.value = value
                self.valueSource = contact

    def failed(self, contact):
        """
        A request timed out or went wrong, or the contact returned an invalid value: the contact
        is never asked again nor counted in the result.

        @param contact: the L{Contact} asked.
        @raise ValueError: C{contact} has no request in flight.
        """
        if self._settle(contact, Progress.FAILED):
            nodeId = contact.nodeId
            self._ranked.remove((int.from_bytes(nodeId, "big") ^ self._target, nodeId))

    @property
    def result(self):
        """The k closest contacts that answered, closest first."""
        answered = (Progress.ANSWERED, Progress.HELD_VALUE)
        progress = self._progress
        return [self._contacts[nodeId] for _, nodeId in self._ranked if progress[nodeId] in answered][: self._k]

    @property
    def closestWithoutValue(self):
        """
        The closest contact that answered without the value: where the Kademlia paper caches a
        value found by FIND_VALUE. C{None} if no contact answered without it.
        """
        for _, nodeId in self._ranked:
            if self._progress[nodeId] is _ANSWERED:
                return self._contacts[nodeId]
        return None
