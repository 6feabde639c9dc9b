"""
The link layer of a node: the one listening TLS port, outbound links, purpose dispatch and
the registry of awaited links.
"""

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import clientEndpoint, describePeer, formatHostPort, isIPv6
from phantom.errors import LinkFailed
from phantom.link.dispatch import LinkDispatcher
from phantom.link.interfaces import ILinkHandler
from phantom.link.listening import ListeningService
from phantom.link.protocol import LinkProtocol
from phantom.link.quota import ConnectionQuota, CoolDown, RefusalLog, addressPrefix, descriptorShare
from phantom.link.tls import RECORD_PLAINTEXT, ClientConnectionCreator, RecordTLSFactory, RecordTLSProtocol, ServerConnectionCreator, makeContext
from phantom.wire.link import NO_LINK_ID, Purpose


class OutboundRequest:
    """What an outbound link was opened for, and the Deferred waiting for it."""

    def __init__(self, purpose, linkId, deferred):
        self.purpose = Purpose(purpose)
        self.linkId = linkId
        self._deferred = deferred

    def succeeded(self, link):
        if not self._deferred.called:
            self._deferred.callback(link)

    def failed(self, error):
        if not self._deferred.called:
            self._deferred.errback(error)


def writeNow(tcp, data):
    """
    Write C{data} to a TCP transport: straight into its socket when the transport holds
    nothing unsent, else (and for whatever the socket does not take) into its buffer.

    A C{FileDescriptor} buffers every write until the reactor's next turn finds the socket
    writable; for a link's small records that costs two changes of the poller's interest,
    a turn and its bookkeeping per record, for a socket that nearly always has room. A
    transport that does not show its buffer as a TCP C{FileDescriptor} does, or whose
    connection is going, gets a plain C{write}.

    No public Twisted API tells whether a transport holds unsent bytes, so this reads the
    C{FileDescriptor}'s own buffer attributes; C{tests/link/test_writenow.py} fails, naming
    them, should a Twisted release move them or change what they mean.

    @param tcp: the transport under TLS.
    @param data: the bytes to write, or a memoryview (what the socket does not take is copied).
    """
    if (
        getattr(tcp, "connected", False)
        and not getattr(tcp, "disconnecting", True)
        and getattr(tcp, "_tempDataLen", None) == 0
        and getattr(tcp, "offset", None) == len(getattr(tcp, "dataBuffer", b"?"))
    ):
        data = memoryview(data)
        while True:
            # At most the transport's SEND_LIMIT (128 KiB) a call; an exception is a lost
            # connection, which the buffered write below lets the reactor find.
            sent = tcp.writeSomeData(data)
            if not (isinstance(sent, int) and sent > 0):
                break
            if sent == len(data):
                return
            data = data[sent:]
            if sent < getattr(tcp, "SEND_LIMIT", sent + 1):
                # The socket took less than it was offered: it is full.
                break
    tcp.write(bytes(data))


RECEIVE_PIECE = 5 + RECORD_PLAINTEXT + 1 + 16
"""
The most bytes read from the socket that go into OpenSSL's receive buffer at once: one full
TLS 1.3 record of application data (header, plaintext, content type, AEAD tag), a cell's.
(8 KiB until session 8: every cell's record then took two reads of TLS that found nothing.)
"""


class LinkTLSProtocol(RecordTLSProtocol):
    """
    TLS for one link: L{RecordTLSProtocol}, whose records leave through L{writeNow}, and whose
    receive buffer stays small: OpenSSL's memory BIOs keep, for as long as the connection
    lasts, room for the most bytes they ever held. A read from the socket (up to
    C{LinkLimits.maxWriteBuffer} bytes) is handed over in pieces of L{RECEIVE_PIECE} bytes,
    each decrypted before the next, so the receive buffer never holds more than a piece and a
    partial TLS record; a write goes in one record (L{RECORD_PLAINTEXT} bytes) at a time, each
    taken out before the next (docs/scale.md).

    After the handshake, the link hears when a socket read's records begin and end
    (L{phantom.link.protocol.LinkProtocol.readStarted}, C{readDone}), for its C{afterRead}.
    """

    def dataReceived(self, data):
        if not self._handshakeDone:
            for start in range(0, len(data), RECEIVE_PIECE):
                super().dataReceived(data[start : start + RECEIVE_PIECE])
            return
        link = self.wrappedProtocol
        link.readStarted()
        try:
            view = memoryview(data)
            for start in range(0, len(view), RECEIVE_PIECE):
                if not self._readRecordsIn(view[start : start + RECEIVE_PIECE]):
                    return
            # What reading made TLS send (a key update, an alert): rarely anything.
            self._flushSendBIO()
        finally:
            link.readDone()

    def _sendRecords(self, records):
        writeNow(self.transport, records)


class LinkTLSFactory(RecordTLSFactory):
    """
    TLS for links: every write goes into TLS at once, and out to the socket at once (see
    L{writeNow}). Twisted's default transport gathers small writes and sends them a reactor
    turn later; a link always writes whole frames, so that would only add a turn of latency to
    every message.
    """

    protocol = LinkTLSProtocol


@implementer(ILinkHandler)
class CloseAtOnce:
    """The handler of a link this node does not want (refused, or a second one to a peer): closes it."""

    def __init__(self, link):
        link.close()

    def frameReceived(self, payload):
        pass

    def linkClosed(self, reason):
        pass


_CARRYING = frozenset({Purpose.PATH, Purpose.TUNNEL, Purpose.ENTRY})
"""The purposes of links that carry paths and tunnels: on a full node they give way last."""


class InboundTLSFactory(LinkTLSFactory):
    """The TLS port's factory: a connection the service does not admit is closed at accept."""

    def __init__(self, service, contextFactory, wrappedFactory):
        super().__init__(contextFactory, False, wrappedFactory)
        self._service = service

    def buildProtocol(self, addr):
        if not self._service.admit(addr.host):
            return None
        return super().buildProtocol(addr)


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, service, outbound=None):
        self._service = service
        self._outbound = outbound

    def buildProtocol(self, addr):
        return LinkProtocol(self._service, self._outbound)


class LinkService(ListeningService):
    """
    Owns every link of a node.

    @param identity: the node's L{phantom.identity.Identity}.
    @param endpoint: the C{IStreamServerEndpoint} to listen on (plain TCP; TLS is added here).
    @param limits: the L{phantom.config.LinkLimits} every link enforces.
    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @param bindAddress: the address outbound connections leave from, or C{None} for any.
    @param clock: the C{IReactorTime} the links' timers run on, C{reactor} unless given.

    @ivar reactor: C{reactor}, whose turns the links take in turn (see C{LinkLimits.framesPerTurn}).
    """

    log = Logger()

    def __init__(self, identity, endpoint, limits, reactor, bindAddress=None, clock=None):
        self.nodeId = identity.nodeId
        self.limits = limits
        self.clock = reactor if clock is None else clock
        self.reactor = self._reactor = reactor
        self._endpoint = endpoint
        self._bindAddress = bindAddress
        self._advertised = None
        self._serverContext = makeContext(identity, server=True)
        self._clientContext = makeContext(identity, server=False)
        self._dispatcher = LinkDispatcher(self.clock, limits.maxParked, limits.maxParkedPerAddress)
        self._inbound = ConnectionQuota(
            descriptorShare(limits.maxInbound, 1 / 2, limits.descriptorReserve), limits.maxInboundPerAddress, "inbound connections"
        )
        self._handshakes = ConnectionQuota(limits.maxHandshakes, limits.maxHandshakesPerAddress, "inbound connections without their OPEN frame")
        self._admitted = {}
        self._admittedFrom = {}
        """The inbound connections of each address prefix, oldest first."""
        self._coolDown = CoolDown(self.clock, limits.floodCooldown)
        self.refusals = RefusalLog(self.clock, "inbound connection")
        self._connections = set()
        self._attempts = set()
        self._links = set()

    # Service

    def listener(self):
        return self._endpoint, InboundTLSFactory(self, ServerConnectionCreator(self._serverContext), _LinkFactory(self))

    def stopService(self):
        waits = [super().stopService()]
        self.refusals.stop()
        for attempt in list(self._attempts):
            attempt.cancel()
        self._dispatcher.stop()
        for connection in list(self._connections):
            waits.append(connection.ending.whenEnded())
            connection.abort("the node is stopping") if not connection.opened else connection.close()
        return DeferredList(waits)

    @property
    def listeningAddress(self):
        """The C{IAddress} the TLS port listens on, once listening."""
        return self.port.getHost() if self.port is not None else None

    @property
    def address(self):
        """
        C{(host, port)} other nodes reach this node at: what L{advertiseAt} said, else the bind
        address and the listening port; C{None} before the port listens, or when the node binds
        to no one address and has not been told one.
        """
        if self._advertised is not None:
            return self._advertised
        if self._bindAddress is None or self.port is None:
            return None
        return self._bindAddress, self.port.getHost().port

    def advertiseAt(self, host, port):
        """Make C{(host, port)} the L{address} other nodes reach this node at (NAT, port forwarding, a node bound to every address)."""
        self._advertised = (host, port)

    # Registration: see L{LinkDispatcher}

    def registerPurpose(self, purpose, handlerFactory):
        """See L{LinkDispatcher.registerPurpose}."""
        self._dispatcher.registerPurpose(purpose, handlerFactory)

    def parkEarlyLinks(self, purpose, timeout):
        """See L{LinkDispatcher.parkEarlyLinks}."""
        self._dispatcher.parkEarlyLinks(purpose, timeout)

    def expectLink(self, linkId, fromHost, purpose, timeout, nodeId=None):
        """See L{LinkDispatcher.expectLink}."""
        return self._dispatcher.expectLink(linkId, fromHost, purpose, timeout, nodeId)

    # Outbound

    def connect(self, host, port, purpose, linkId=NO_LINK_ID, nodeId=None):
        """
        Open a link to C{host:port} for C{purpose}.

        @param nodeId: the node id to pin, or C{None} to accept whoever answers.
        @return: a Deferred firing with the open L{ILink}, or failing with L{LinkFailed} or
            L{phantom.link.tls.PinMismatch}.
        """
        if not self.running:
            return fail(LinkFailed("the node is stopping"))
        deferred = Deferred()
        request = OutboundRequest(purpose, linkId, deferred)
        creator = ClientConnectionCreator(self._clientContext, nodeId)
        bind = None
        if self._bindAddress is not None and isIPv6(self._bindAddress) == isIPv6(host):
            bind = (self._bindAddress, 0)
        tcp = clientEndpoint(self._reactor, host, port, timeout=self.limits.connectTimeout, bindAddress=bind)
        target = formatHostPort(host, port)

        def tcpFailed(failure):
            request.failed(LinkFailed(f"cannot connect to {target}: {failure.getErrorMessage()}"))

        attempt = tcp.connect(LinkTLSFactory(creator, True, _LinkFactory(self, request)))
        self._attempts.add(attempt)

        def settled(result):
            self._attempts.discard(attempt)
            return result

        attempt.addBoth(settled).addErrback(tcpFailed)
        return deferred

    # Admission of inbound connections

    def admit(self, host):
        """
        Whether an inbound connection from C{host} may be accepted now: within the caps on
        inbound connections and on those without their OPEN frame, in total and per address,
        and not from an address cooling down after a flood (see L{flooded}). When all of a
        total are taken, the oldest connection of the address holding the most gives way to an
        address holding fewer, so that a few addresses cannot shut the node to everyone else.
        A refusal is counted (see L{RefusalLog}); the caller closes the connection.
        """
        why = self._coolDown.refusal(host) or self._room(self._inbound, host, False) or self._room(self._handshakes, host, True)
        if why is not None:
            self.refusals.refused(host, why)
            return False
        return True

    def _room(self, quota, host, handshaking):
        """
        Make room in C{quota} for C{host} if all of it is taken and another address holds more.

        @param handshaking: whether C{quota} counts the connections without their OPEN frame.
        @return: why C{host} may take no slot of C{quota}, or C{None} if it may now.
        """
        heaviest = quota.givesWayTo(host)
        if heaviest is not None:
            # Its oldest without an OPEN frame, else its oldest carrying no path, else its oldest.
            held = [
                (not self._admitted[link][1], link.purpose in _CARRYING, age, link)
                for age, link in enumerate(self._admittedFrom.get(heaviest, ()))
                if self._admitted[link][1] or not handshaking
            ]
            if held:
                self._giveWay(min(held, key=lambda rank: rank[:3])[3])
        return quota.refusal(host)

    def _giveWay(self, link):
        """Close C{link}, an inbound connection, for a connection from an address holding fewer; its slots are free at once."""
        self._forget(link)
        link.abort("its slot went to an address holding fewer")

    @property
    def inboundLimit(self):
        """The cap on inbound connections in force: C{maxInbound}, lowered to the descriptors' share."""
        return self._inbound.total

    @property
    def inboundCount(self):
        """How many inbound connections are held, and how many of them lack their OPEN frame."""
        return self._inbound.count, self._handshakes.count

    # Bookkeeping, called by LinkProtocol

    def connectionStarted(self, link):
        self._connections.add(link)
        if link.inbound:
            # Admitted by InboundTLSFactory a moment ago: it holds its slots until it is gone.
            host = link.peer.host
            self._inbound.admit(host)
            self._handshakes.admit(host)
            self._admitted[link] = [host, True]
            self._admittedFrom.setdefault(addressPrefix(host), {})[link] = None

    def _forget(self, link):
        """Stop counting inbound C{link} (if it is one, and still counted): its slots are free at once."""
        admitted = self._admitted.pop(link, None)
        if admitted is not None:
            host, handshaking = admitted
            prefix = addressPrefix(host)
            links = self._admittedFrom[prefix]
            del links[link]
            if not links:
                del self._admittedFrom[prefix]
            self._inbound.release(host)
            if handshaking:
                self._handshakes.release(host)

    def linkOpened(self, link):
        self._links.add(link)
        admitted = self._admitted.get(link)
        if admitted is not None and admitted[1]:
            admitted[1] = False
            self._handshakes.release(admitted[0])

    def connectionEnded(self, link):
        self._connections.discard(link)
        self._links.discard(link)
        self._forget(link)

    def flooded(self, link):
        """
        C{link} is being closed for more work than C{LinkLimits.maxFramesPerSecond}: its peer's
        address is refused at accept for C{LinkLimits.floodCooldown} seconds.
        """
        self._coolDown.punish(link.peer.host)

    def dispatch(self, link):
        """Hand a freshly opened inbound link to whoever awaits it or to its purpose's handler."""
        self._dispatcher.dispatch(link)

    # Views

    @property
    def connections(self):
        """Every connection of this node, open or still in its handshake."""
        return frozenset(self._connections)

    @property
    def links(self):
        """Every open link."""
        return frozenset(self._links)

    @property
    def awaitedCount(self):
        """How many links are awaited."""
        return self._dispatcher.awaitedCount

    def peers(self):
        """
        The nodes this node has open links with.

        @return: a list of dicts with C{nodeId} (bytes), C{address} (host:port of a link's far
            end, the listening port where this node opened a link), C{inbound} and C{outbound}
            (link counts), sorted by node id.
        """
        byNode = {}
        for link in self._links:
            entry = byNode.setdefault(link.nodeId, {"nodeId": link.nodeId, "address": None, "inbound": 0, "outbound": 0})
            entry["inbound" if link.inbound else "outbound"] += 1
            if entry["address"] is None or not link.inbound:
                entry["address"] = describePeer(link.peer)
        return [byNode[nodeId] for nodeId in sorted(byNode)]
