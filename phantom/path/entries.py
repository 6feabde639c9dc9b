"""
Routing entries that do not date their path, sans-io: what an owner writes in an entry path's
routing entry, when the entry node publishes it, and when the owner renews the path.

A Y-node next to the owner sees the owner's address and the moment of the build; anyone can
fetch the entry of an AP-address and watch when a new one appears. Were the entry dated (a
sequence or an expiry taken from the clock at the build) or published as the path came up,
matching the two over a few rebuilds would link owner and AP-address. So nothing an observer
of the network database sees places a build in less than L{GRID} seconds:

  - the sequence is the expiry: a count of the entries made would skip a number for each
    attempt that failed, and a hostile x0, which sees the owner's address and is kept for the
    attempts after a failed one, could fail a build and watch which AP-address skips;
  - the expiry is coarse and jittered (L{coarseExpiry}): the L{GRID} point at least
    L{MARGIN} after the start of the build, or the one after, chosen at random, plus
    L{GRID} + L{VALIDITY};
  - the entry node publishes it at a uniformly random moment of the L{GRID} seconds that end
    L{VALIDITY} before its expiry (L{publicationDelay}): a moment the entry alone decides,
    so the publication tells nothing the expiry does not;
  - the owner renews the path at a random moment of a L{GRID}-long window set by that expiry,
    so that its successor's entry is out a full L{GRID} before this one expires
    (L{renewalTime}), and keeps the old path up until its entry expires.

Given the expiry, the build began in one of two L{GRID}-long cells, and every other observable
is a function of the expiry and of randomness: the build is placed in no interval shorter than
2 * L{GRID}. The price: an entry path lives about an hour, is published 2 to 24 minutes after
it is up (a path lost is replaced, but its successor's entry comes out that much later), and
an owner holds two or three entry paths at a time.

An entry whose publication window starts more than L{HORIZON} ahead, or has ended, is published
at once: an owner that does not coarsen its entries (C{coarse_entries = no}, for testnets)
names its expiry as C{now + lifetime}.
"""

import math
import os

from twisted.logger import Logger

from phantom.statefiles import writeAtomically

GRID = 600
"""Seconds: nothing in an entry dates its path more finely."""
VALIDITY = 2400
"""Seconds an entry is valid, at least, after the end of its publication window."""
MARGIN = 120
"""Seconds a build may take before its entry's publication window can open."""
HORIZON = MARGIN + 2 * GRID
"""The furthest ahead a coarse entry's publication window starts from its build."""


def coarseExpiry(now, random):
    """
    The expiry of an entry path's routing entry planned at C{now}.

    @param random: a C{random.Random}-like source.
    @return: an integer time, a multiple of L{GRID}.
    """
    window = (math.ceil((now + MARGIN) / GRID) + random.randint(0, 1)) * GRID
    return window + GRID + VALIDITY


def publicationWindow(expires):
    """@return: C{(start, end)}, the moments between which the entry node publishes the entry."""
    return expires - VALIDITY - GRID, expires - VALIDITY


def publicationDelay(expires, now, random):
    """
    How long the entry node waits before it publishes an entry that expires at C{expires}: until
    a uniformly random moment of its publication window; at once if that has passed or starts
    more than L{HORIZON} ahead.

    @return: seconds, C{0} for at once.
    """
    start, end = publicationWindow(expires)
    if start > now + HORIZON:
        return 0.0
    return max(0.0, random.uniform(start, end) - now)


def renewalTime(expires, random):
    """
    When the owner builds the successor of an entry path whose entry expires at C{expires}: a
    uniformly random moment of the L{GRID} seconds that end L{MARGIN} + 3 L{GRID} before it, so
    that the successor's entry (L{coarseExpiry}) is published at least L{GRID} before this one
    expires.
    """
    latest = expires - MARGIN - 3 * GRID
    return random.uniform(latest - GRID, latest)


class EntryFloor:
    """
    The highest sequence (the expiry) of the routing entries this node has signed, kept in a
    file: a later entry never has a lower one, not even after a restart. Lookups take the
    entry of the highest sequence for the owner's newest and keep only the entry nodes it names
    (L{phantom.netdb.records.RouteSet}); were a later entry lower (its coarse expiry drew the
    earlier of its two grid points), an earlier one still out, of an attempt that failed or of
    the paths before a restart, would leave the later path's entry node out of lookups until it
    expired.

    @param path: the file, or C{None} to keep it in memory only. A file that holds no number
        is logged and taken as none.
    """

    log = Logger()

    def __init__(self, path=None):
        self._path = path
        self.highest = 0
        if path is not None and os.path.exists(path):
            with open(path, "rb") as f:
                text = f.read(64)
            try:
                self.highest = max(0, int(text.strip() or b"0"))
            except ValueError:
                self.log.warn("{path} holds no entry sequence ({text!r}): taken as none", path=path, text=text[:20])

    def raiseTo(self, sequence):
        """
        @return: C{sequence}, raised to the highest signed before; kept (and written to the file
            before it is handed out) as the highest from now on.
        """
        if sequence > self.highest:
            self.highest = sequence
            if self._path is not None:
                writeAtomically(self._path, b"%d\n" % sequence)
        return self.highest
