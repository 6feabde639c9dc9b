"""
Where a node is, on a real network: host names of contacts resolved through Twisted's resolver,
a TLS port on every IPv6 and IPv4 address, and the address to publish when the node binds none.

A node given no listen address learns the address its peers see it at as the source address
the kernel chooses to reach them (L{sourceAddressTo}); behind a NAT or a port forward that is
not what they see, and C{--advertise-address} says what is.
"""

import errno
import socket

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IResolutionReceiver, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import Contact, isIPAddress

log = Logger()

MAX_ADDRESSES_PER_NAME = 4
"""The most addresses of one host name tried as contacts."""


@implementer(IResolutionReceiver)
class _Addresses:
    def __init__(self):
        self.hosts = []
        self.done = Deferred()

    def resolutionBegan(self, resolution):
        pass

    def addressResolved(self, address):
        if address.host not in self.hosts:
            self.hosts.append(address.host)

    def resolutionComplete(self):
        self.done.callback(self.hosts)


def resolveHost(resolver, name, port):
    """
    The addresses of a host name, through C{resolver} (an C{IHostnameResolver}, such as a
    reactor's C{nameResolver}).

    @return: a Deferred of a list of addresses as text, IPv4 and IPv6; empty when the name does
        not resolve.
    """
    receiver = _Addresses()
    resolver.resolveHostName(receiver, name, port)
    return receiver.done


async def resolveContacts(resolver, contacts):
    """
    C{contacts} with each host name replaced by the addresses it resolves to now (up to
    L{MAX_ADDRESSES_PER_NAME} each, in the resolver's order); a name that resolves to nothing is
    logged and left out. Contacts given by address are kept as they are.

    @param resolver: an C{IHostnameResolver}.
    @return: a list of L{Contact}s whose hosts are IP addresses.
    """
    resolved = []
    for contact in contacts:
        if isIPAddress(contact.host):
            resolved.append(contact)
            continue
        hosts = await resolveHost(resolver, contact.host, contact.port)
        if not hosts:
            log.warn("contact {name} does not resolve to an address; trying it again later", name=contact.host)
        for host in hosts[:MAX_ADDRESSES_PER_NAME]:
            resolved.append(Contact(host, contact.port, contact.nodeId))
    return resolved


def sourceAddressTo(host):
    """
    The local address the kernel sends from to reach C{host}: the address a peer there sees this
    node at, unless a NAT lies between. Nothing is sent.

    @param host: an IP address as text.
    @return: an IP address as text, or C{None} if there is no route to C{host}.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
        except OSError:
            return None
        return probe.getsockname()[0]


@implementer(IStreamServerEndpoint)
class EveryAddressEndpoint:
    """
    Listens on every address of the host, IPv6 and IPv4, on one port: one IPv6 socket on C{::}
    (which takes IPv4 connections as mapped addresses), or, where the host has no IPv6, one IPv4
    socket on C{0.0.0.0}.

    @param reactor: C{IReactorTCP}.
    @param port: the port; 0 for one the kernel chooses.
    @param backlog: the listen backlog.
    """

    def __init__(self, reactor, port, backlog=50):
        self._reactor = reactor
        self._port = port
        self._backlog = backlog

    async def _listen(self, factory):
        try:
            return await TCP6ServerEndpoint(self._reactor, self._port, backlog=self._backlog, interface="::").listen(factory)
        except CannotListenError as e:
            if getattr(e.socketError, "errno", None) not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                raise
            log.info("no IPv6 on this host: listening on every IPv4 address only")
        return await TCP4ServerEndpoint(self._reactor, self._port, backlog=self._backlog, interface="0.0.0.0").listen(factory)

    def listen(self, factory):
        return Deferred.fromCoroutine(self._listen(factory))
