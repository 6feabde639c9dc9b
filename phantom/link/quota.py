"""
Caps on what many connections from one place may take: a count per source address (the /32 of
an IPv4 address, the /64 of an IPv6 one) and a count in total, and a summary log of what was
refused. No I/O: the listening factories ask L{ConnectionQuota.admit} before they build a
protocol, and give the slot back when the connection is gone.
"""

import functools
import ipaddress
import resource
from collections import OrderedDict

from twisted.logger import Logger

DESCRIPTOR_RESERVE = 64
"""Descriptors kept out of reach of inbound connections unless configured otherwise."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between the summary lines of refused connections."""


def _ipAddress(host):
    """C{host} as an C{ipaddress} address, an IPv4-mapped one as IPv4; C{None} if it is no IP address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0] if isinstance(host, str) else host)
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


@functools.lru_cache(maxsize=4096)
def addressPrefix(host):
    """
    The part of C{host} one peer is assumed to hold: the address itself for IPv4, its /64 for
    IPv6 (an IPv4-mapped IPv6 address counts as its IPv4 address); C{host} unchanged if it is
    no IP address (a unix socket's path, a test's name).
    """
    address = _ipAddress(host)
    if address is None:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@functools.lru_cache(maxsize=4096)
def exactAddress(host):
    """
    C{host} in one form of its many: an IPv4-mapped IPv6 address as its IPv4 address; C{host}
    unchanged if it is no IP address.
    """
    address = _ipAddress(host)
    return host if address is None else str(address)


def descriptorLimit():
    """The process's soft limit of open file descriptors, or C{None} if it has none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def descriptorShare(configured, share, reserve, limit=None):
    """
    C{configured}, lowered if need be to C{share} of the descriptors left once C{reserve} are
    kept back from the process's limit (L{descriptorLimit} unless C{limit} is given); at least 1.
    """
    limit = descriptorLimit() if limit is None else limit
    if limit is None:
        return configured
    return max(1, min(configured, int((limit - reserve) * share)))


class ConnectionQuota:
    """
    At most C{total} slots taken at once, at most C{perAddress} of them by one L{addressPrefix}.

    @param what: what a slot is, for the refusal reasons ("inbound connections").
    """

    def __init__(self, total, perAddress, what):
        self.total = int(total)
        self.perAddress = int(perAddress)
        self._what = what
        self._byPrefix = {}
        self._count = 0

    @property
    def count(self):
        """How many slots are taken."""
        return self._count

    def countFor(self, host):
        """How many slots C{host}'s prefix holds."""
        return self._byPrefix.get(addressPrefix(host), 0)

    def refusal(self, host):
        """
        @return: why C{host} may take no slot now, or C{None} if it may.
        """
        if self._count >= self.total:
            return f"{self.total} {self._what} in total"
        if self._byPrefix.get(addressPrefix(host), 0) >= self.perAddress:
            return f"{self.perAddress} {self._what} from one address"
        return None

    def givesWayTo(self, host):
        """
        @return: the prefix one of whose slots should give way to C{host}, or C{None}: when all
            slots are taken and C{host}'s prefix is within its share, the prefix holding the
            most, if it holds more than C{host}'s would with one more (as
            L{phantom.quota.Shares} has the peer holding the most give way).
        """
        held = self._byPrefix.get(addressPrefix(host), 0)
        if self._count < self.total or held >= self.perAddress or not self._byPrefix:
            return None
        prefix, most = max(self._byPrefix.items(), key=lambda item: item[1])
        return prefix if most > held + 1 else None

    def admit(self, host):
        """
        Take a slot for C{host} if it may have one.

        @return: C{None} when the slot is taken, else why not (see L{refusal}).
        """
        why = self.refusal(host)
        if why is None:
            prefix = addressPrefix(host)
            self._byPrefix[prefix] = self._byPrefix.get(prefix, 0) + 1
            self._count += 1
        return why

    def release(self, host):
        """Give back a slot L{admit} gave C{host}."""
        prefix = addressPrefix(host)
        held = self._byPrefix.get(prefix, 0)
        if held <= 0:
            raise RuntimeError(f"{host} holds no slot of {self._what}")
        if held == 1:
            del self._byPrefix[prefix]
        else:
            self._byPrefix[prefix] = held - 1
        self._count -= 1


FLOODERS_PER_PREFIX = 4
"""Addresses of one IPv6 /64 that must have flooded before the whole /64 is cooled down."""


class CoolDown:
    """
    Addresses refused for a while: the address of a peer whose link was closed for flooding is
    refused at accept for C{seconds}, so that reconnecting costs it a refused TCP connection and
    the node no TLS handshake and no more of its flood. An IPv6 /64 is refused whole once
    C{perPrefix} of its addresses have flooded within that time, not at its first: a provider
    may give each customer one address of a shared /64, and a flooder there would otherwise cut
    its neighbours off every node it floods. At most C{maxAddresses} addresses and /64s are
    remembered; beyond that the one whose cool-down ends soonest is forgotten.

    @param clock: C{IReactorTime}.
    @param seconds: how long an address is refused; 0 refuses none.
    """

    def __init__(self, clock, seconds, maxAddresses=4096, perPrefix=FLOODERS_PER_PREFIX):
        self._clock = clock
        self.seconds = seconds
        self._maxAddresses = maxAddresses
        self._perPrefix = perPrefix
        self._until = OrderedDict()
        """When the cool-down of each address, or /64 (by L{addressPrefix}), ends."""
        self._flooders = OrderedDict()
        """The addresses of each /64 that flooded lately, with when their cool-down ends."""

    def __len__(self):
        return len(self._until)

    def punish(self, host):
        """Refuse C{host} for the next C{seconds}, and its /64 too if enough of it flooded."""
        if self.seconds <= 0:
            return
        now = self._clock.seconds()
        until = now + self.seconds
        address, prefix = exactAddress(host), addressPrefix(host)
        self._remember(self._until, address, until)
        if prefix == address:
            return
        flooders = self._flooders.pop(prefix, None) or {}
        flooders = {flooder: end for flooder, end in flooders.items() if end > now and flooder != address}
        flooders[address] = until
        for flooder in list(flooders)[: -self._perPrefix]:
            del flooders[flooder]
        self._remember(self._flooders, prefix, flooders)
        if len(flooders) >= self._perPrefix:
            self._remember(self._until, prefix, until)

    def _remember(self, table, key, value):
        table.pop(key, None)
        table[key] = value
        while len(table) > self._maxAddresses:
            table.popitem(last=False)

    def refusal(self, host):
        """
        @return: why C{host} may not connect now, or C{None} if it may.
        """
        now = self._clock.seconds()
        address, prefix = exactAddress(host), addressPrefix(host)
        for key in (address, prefix):
            until = self._until.get(key)
            if until is not None and now >= until:
                del self._until[key]
            elif until is not None and key == address:
                return f"its address flooded a link within the last {self.seconds:g} s"
            elif until is not None:
                return f"{self._perPrefix} addresses of its /64 flooded a link within the last {self.seconds:g} s"
        return None


class RefusalLog:
    """
    Counts refused connections and logs them without letting a flood write a line each: the
    first refusal is logged at once, the rest as one summary line per C{interval} with their
    count per reason.

    @param clock: C{IReactorTime}.
    @param what: what is refused, for the log lines ("inbound link").
    """

    log = Logger()

    def __init__(self, clock, what, interval=REFUSAL_LOG_INTERVAL):
        self._clock = clock
        self._what = what
        self._interval = interval
        self._counts = {}
        self._summary = None
        self.total = 0
        """Refusals since the start."""

    def refused(self, host, reason):
        """Note one connection from C{host} refused for C{reason}."""
        self.total += 1
        if self._summary is None:
            self.log.warn("{what} from {host} refused: {why}", what=self._what, host=host, why=reason)
            self._summary = self._clock.callLater(self._interval, self._flush)
            return
        self._counts[reason] = self._counts.get(reason, 0) + 1

    def _flush(self):
        counts, self._counts = self._counts, {}
        self._summary = None
        if counts:
            parts = "; ".join(f"{count} for {reason}" for reason, count in sorted(counts.items()))
            self.log.warn(
                "{count} more {what}s refused in {interval:g} s: {parts}",
                count=sum(counts.values()), what=self._what, interval=self._interval, parts=parts,
            )
            self._summary = self._clock.callLater(self._interval, self._flush)

    def stop(self):
        """Log what is counted and stop the summary timer."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
            self._summary = None
            counts, self._counts = self._counts, {}
            if counts:
                self.log.warn("{count} more {what}s refused", count=sum(counts.values()), what=self._what)
