"""
The vocabulary of addresses every room shares: contacts, ``host:port``, the 16-byte address form
of the wire and the AP-addresses, and the TCP endpoint of an IPv4 or IPv6 host.

Nothing here does I/O; the endpoint helpers only choose the endpoint type.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, TCP6ClientEndpoint, TCP6ServerEndpoint

IPV4_MAPPED = bytes(10) + b"\xff\xff"
"""The prefix of an IPv4 address mapped into IPv6 (C{::ffff:0:0/96})."""


class AddressError(ValueError):
    """Text or bytes that are not the address they should be; the message says why."""


def isIPv6(host):
    """Whether C{host}, an IP address as text, is an IPv6 address."""
    return ":" in host


def formatHostPort(host, port):
    """C{host:port}, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if isIPv6(host) else f"{host}:{port}"


HOST_NAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
"""A DNS host name: dot-separated labels of letters, digits and inner hyphens."""


def isIPAddress(host):
    """Whether C{host} is an IPv4 or IPv6 address as text (not a host name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parseHostPort(text, names=False):
    """
    Parse ``a.b.c.d:port`` or ``[v6]:port``; with C{names}, also ``name:port``.

    @param names: whether the host may be a DNS host name (resolved later, by the caller).
    @return: (host, port)
    @raise AddressError: not an IP address (or, with C{names}, a host name) and port.
    """
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not isIPAddress(host) and not (names and ":" not in host and HOST_NAME.match(host) and not host.replace(".", "").isdigit()):
        what = "an IP address or host name" if names else "an IP address"
        raise AddressError(f"{text!r}: {host!r} is not {what}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AddressError(f"{text!r}: {port!r} is not a port number")
    return host, int(port)


@dataclass(frozen=True)
class Contact:
    """A node to connect to: its address and, when known, its node id (the pin)."""

    host: str
    port: int
    nodeId: bytes | None = None

    def __str__(self):
        prefix = f"{self.nodeId.hex()}@" if self.nodeId else ""
        return f"{prefix}{formatHostPort(self.host, self.port)}"


def parseContact(text, names=False):
    """
    Parse ``HOST:PORT`` or ``NODEID@HOST:PORT`` (node id as 64 hex digits).

    @param names: whether HOST may be a DNS host name (see L{parseHostPort}).
    @raise AddressError: malformed.
    """
    text = text.strip()
    nodeId = None
    if "@" in text:
        hexId, _, text = text.partition("@")
        try:
            nodeId = bytes.fromhex(hexId)
        except ValueError:
            nodeId = b""
        if len(nodeId) != 32:
            raise AddressError(f"{hexId!r} is not a node id (64 hex digits)")
    host, port = parseHostPort(text, names)
    return Contact(host, port, nodeId)


def parseContacts(text, names=False):
    """
    Parse a comma-separated list of contacts; empty items are skipped.

    @param names: whether hosts may be DNS host names (see L{parseHostPort}).
    @raise AddressError: one is malformed.
    """
    return tuple(parseContact(item, names) for item in text.split(",") if item.strip())


def addressBytes(host):
    """
    The 16-byte form of an IP address: IPv6, or IPv4 mapped into C{::ffff:0:0/96}.

    @raise AddressError: C{host} is not an IP address.
    """
    try:
        if isIPv6(host):
            return socket.inet_pton(socket.AF_INET6, host)
        return IPV4_MAPPED + socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError):
        raise AddressError(f"{host!r} is not an IP address") from None


def hostOf(packed):
    """The text form of a 16-byte address; IPv4-mapped addresses come back as IPv4."""
    if packed[:12] == IPV4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed)


def formatAddress(packed):
    """The text form of a 16-byte IPv6 address such as an AP-address."""
    return socket.inet_ntop(socket.AF_INET6, packed)


def parseAddress(text):
    """
    The 16 bytes of an IPv6 address given as text.

    @raise AddressError: not an IPv6 address.
    """
    try:
        return socket.inet_pton(socket.AF_INET6, text.strip())
    except (OSError, ValueError):
        raise AddressError(f"{text!r} is not an IPv6 address") from None


def clientEndpoint(reactor, host, port, **options):
    """A TCP client endpoint to C{host:port}, IPv4 or IPv6 by the host's form; C{options} as Twisted's."""
    return (TCP6ClientEndpoint if isIPv6(host) else TCP4ClientEndpoint)(reactor, host, port, **options)


def serverEndpoint(reactor, host, port, **options):
    """A TCP server endpoint on C{host:port}, IPv4 or IPv6 by the host's form; C{options} as Twisted's."""
    return (TCP6ServerEndpoint if isIPv6(host) else TCP4ServerEndpoint)(reactor, port, interface=host, **options)


def unmapped(address):
    """
    An C{IAddress} as the peer meant it: an IPv4 peer of a socket listening on every IPv6 and
    IPv4 address shows as C{::ffff:a.b.c.d}, which comes back as the IPv4 address it is.
    """
    if isinstance(address, IPv6Address) and address.host.lower().startswith("::ffff:") and "." in address.host:
        return IPv4Address(address.type, address.host[7:], address.port)
    return address


def describePeer(address):
    """C{host:port} of an C{IAddress}, or a placeholder before there is one."""
    return formatHostPort(address.host, address.port) if address is not None else "unknown peer"


def tcpAddress(host, port):
    """Twisted's C{IAddress} of C{host:port} over TCP, IPv4 or IPv6 by the host's form."""
    return (IPv6Address if isIPv6(host) else IPv4Address)("TCP", host, port)
