"""
The VoidPhone DHT module API, server side: local programs PUT and GET opaque values over
plain TCP (message types 650 to 653, see L{phantom.wire.api}).

L{ApiDecoder} is the sans-io core: bytes in, messages out, L{ProtocolError} on anything
malformed. L{ApiProtocol} drives it for one connection and serves an
L{phantom.netdb.interfaces.IValueStore}:

    - a PUT is handed to the store and gets no answer;
    - every GET gets exactly one SUCCESS or FAILURE on its connection within C{getTimeout}
      seconds, in the order the answers complete (each carries its key); an answer that comes
      after the deadline, or after the connection closed, is dropped;
    - at most C{apiMaxOutstanding} GETs per connection, and C{apiMaxOutstandingTotal} over all
      connections, wait for an answer; beyond that, and while the client does not read its
      answers, the connection is not read from;
    - a message whose first byte arrived must be whole within C{apiHeaderTimeout} seconds (more
      bytes do not extend it), and a connection on which nothing arrives and no GET waits is
      closed after C{apiIdleTimeout} seconds;
    - malformed input closes that connection, with one log line naming the peer and the reason.

L{ApiFactory} refuses connections beyond C{apiMaxConnections} in total and
C{apiMaxConnectionsPerAddress} from one address at accept; the refusals are counted and logged
once per interval, not once each.

Where a connection is (reading, handling what it read, paused, closing, closed) is its
L{ApiState}; L{NEXT_API_STATES} lists every move.

L{ApiService} listens for such connections.
"""

from dataclasses import replace
from enum import Enum

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import formatHostPort
from phantom.config import DhtSettings
from phantom.link.listening import ListeningService
from phantom.link.quota import DESCRIPTOR_RESERVE, ConnectionQuota, RefusalLog, descriptorShare
from phantom.wire import ProtocolError
from phantom.wire.api import (
    HEADER,
    HEADER_SIZE,
    REQUESTS,
    DhtFailure,
    DhtPut,
    DhtSuccess,
    checkHeader,
    decodeMessage,
    encodeMessage,
)

DEFAULT_GET_TIMEOUT = DhtSettings.getTimeout
"""Seconds within which every GET is answered; the official client waits forever."""

DEFAULT_MAX_OUTSTANDING = DhtSettings.apiMaxOutstanding
"""GETs one connection may have waiting for an answer before it is no longer read from."""


class ApiDecoder:
    """
    Splits a stream of module-API messages into messages.

    A message's header is judged as soon as its 4 bytes are there, so a wrong size or type
    is refused without waiting for the body it announces.

    @param accepted: the L{phantom.wire.api.MessageType}s this side may receive:
        L{phantom.wire.api.REQUESTS} on the node, L{phantom.wire.api.REPLIES} in a client.
    """

    def __init__(self, accepted):
        self._accepted = frozenset(accepted)
        self._buffer = bytearray()
        self._offset = 0

    @property
    def pending(self):
        """How many received bytes are not yet decoded."""
        return len(self._buffer) - self._offset

    def receive(self, data):
        """Take the next bytes of the stream, to be decoded by L{nextMessage}."""
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def nextMessage(self):
        """
        Decode the next message received.

        @return: a L{phantom.wire.api.DhtPut}, L{phantom.wire.api.DhtGet},
            L{phantom.wire.api.DhtSuccess} or L{phantom.wire.api.DhtFailure}, or C{None} until
            the whole of the next message has been received.
        @raise ProtocolError: the next message is malformed or of a type not accepted; the
            stream is then unusable.
        """
        available = len(self._buffer) - self._offset
        if available < HEADER_SIZE:
            return None
        size, number = HEADER.unpack_from(self._buffer, self._offset)
        kind = checkHeader(size, number)
        if kind not in self._accepted:
            raise ProtocolError(f"DHT {kind.name} ({int(kind)}) is not a message this side receives")
        if available < size:
            return None
        start = self._offset
        self._offset += size
        return decodeMessage(bytes(self._buffer[start : self._offset]))

    def feed(self, data):
        """
        Take the next bytes of the stream and decode every message they complete.

        @return: the list of messages (see L{nextMessage}).
        @raise ProtocolError: see L{nextMessage}.
        """
        self.receive(data)
        messages = []
        message = self.nextMessage()
        while message is not None:
            messages.append(message)
            message = self.nextMessage()
        return messages


class ApiState(Enum):
    """Where a module-API connection is."""

    READING = "reading"
    """Waiting for requests; every complete request received has been taken."""
    HANDLING = "handling"
    """Taking the requests received, one after the other."""
    PAUSED = "paused"
    """Not reading: the client does not read its answers, or C{maxOutstanding} GETs wait."""
    CLOSING = "closing"
    """This side aborted the connection; it is not gone yet."""
    CLOSED = "closed"


NEXT_API_STATES = {
    ApiState.READING: {ApiState.HANDLING, ApiState.PAUSED, ApiState.CLOSING, ApiState.CLOSED},
    ApiState.HANDLING: {ApiState.READING, ApiState.PAUSED, ApiState.CLOSING, ApiState.CLOSED},
    ApiState.PAUSED: {ApiState.HANDLING, ApiState.CLOSING, ApiState.CLOSED},
    ApiState.CLOSING: {ApiState.CLOSED},
    ApiState.CLOSED: set(),
}
"""The states a connection may move to from each state: received bytes (or room for more
answers) lead to HANDLING, which ends in READING or PAUSED; malformed input, or the service
stopping, leads to CLOSING; the connection's loss, from anywhere, to CLOSED."""

_API_ENDED = (ApiState.CLOSING, ApiState.CLOSED)


class OutstandingBudget:
    """
    The GETs all connections of one API service have waiting, against a total: a connection
    that finds it spent stops reading and is woken when an answer frees room. A connection
    with none waiting may still ask one, so the count stays below the total plus the number of
    connections.
    """

    def __init__(self, limit):
        self.limit = limit
        self.count = 0
        self._waiting = set()

    @property
    def spent(self):
        return self.count >= self.limit

    def wait(self, protocol):
        self._waiting.add(protocol)

    def taken(self):
        self.count += 1

    def returned(self, protocol):
        self.count -= 1
        if self._waiting and not self.spent:
            waiting, self._waiting = self._waiting, set()
            for other in waiting:
                if other is not protocol:
                    other.roomFreed()


class _PendingGet:
    """A GET waiting for its answer: its key and its deadline."""

    def __init__(self, key):
        self.key = key
        self.deadline = None


@implementer(IPushProducer)
class ApiProtocol(Protocol):
    """
    One module-API connection.

    It is also the push producer of its own answers: when the transport's write buffer is
    full it pauses the protocol, which then stops reading requests until the client has
    read its answers.

    @param store: the L{phantom.netdb.interfaces.IValueStore} served.
    @param clock: an C{IReactorTime} for the answer deadlines.
    @param getTimeout: seconds within which every GET is answered (FAILURE when the store
        has not answered by then).
    @param maxOutstanding: how many GETs may wait for an answer at once.
    @param headerTimeout: seconds within which a message whose first byte arrived must be whole.
    @param idleTimeout: seconds after which a connection on which nothing arrived and no GET
        waited is closed.
    @param budget: the L{OutstandingBudget} this connection's GETs count against with those of
        the other connections; none when not given.

    @ivar state: the L{ApiState}.
    """

    log = Logger()

    def __init__(
        self, store, clock, getTimeout=DEFAULT_GET_TIMEOUT, maxOutstanding=DEFAULT_MAX_OUTSTANDING,
        headerTimeout=DhtSettings.apiHeaderTimeout, idleTimeout=DhtSettings.apiIdleTimeout, budget=None,
    ):
        self._store = store
        self._clock = clock
        self._getTimeout = getTimeout
        self._maxOutstanding = maxOutstanding
        self._headerTimeout = headerTimeout
        self._idleTimeout = idleTimeout
        self._budget = budget if budget is not None else OutstandingBudget(float("inf"))
        self._messageTimer = None
        self._idleTimer = None
        self._lastActive = 0.0
        self._decoder = ApiDecoder(REQUESTS)
        self._outstanding = set()
        self.state = ApiState.READING
        self._writeBlocked = False
        self._waitingForClose = []
        self.peer = None

    @property
    def outstanding(self):
        """How many GETs wait for their answer."""
        return len(self._outstanding)

    @property
    def buffered(self):
        """How many received bytes wait to be handled."""
        return self._decoder.pending

    def _moveTo(self, state):
        if state not in NEXT_API_STATES[self.state]:
            raise RuntimeError(f"a module-API connection {self.state.value} cannot become {state.value}")
        self.state = state

    # Connection lifecycle

    def connectionMade(self):
        self.peer = self.transport.getPeer()
        self.transport.registerProducer(self, True)
        self._lastActive = self._clock.seconds()
        self._idleTimer = self._clock.callLater(self._idleTimeout, self._idleCheck)

    def dataReceived(self, data):
        if self.state in _API_ENDED:
            return
        self._lastActive = self._clock.seconds()
        self._decoder.receive(data)
        self._handleReceived()

    def _idleCheck(self):
        self._idleTimer = None
        if self.state in _API_ENDED:
            return
        now = self._clock.seconds()
        if self._outstanding:
            self._lastActive = now
        idle = now - self._lastActive
        if idle >= self._idleTimeout:
            return self.abort(f"idle for {self._idleTimeout:g} s")
        self._idleTimer = self._clock.callLater(self._idleTimeout - idle, self._idleCheck)

    def _watchMessage(self, decoded):
        """
        Time the message now arriving: from its first byte (one that follows a decoded message
        in the same read starts a new one), not from the last byte; none while paused.
        """
        if self._decoder.pending and self.state is ApiState.READING:
            if self._messageTimer is None or decoded:
                self._stopMessageTimer()
                self._messageTimer = self._clock.callLater(self._headerTimeout, self._messageExpired)
        else:
            self._stopMessageTimer()

    def _messageExpired(self):
        self._messageTimer = None
        self.abort(f"a message not completed within {self._headerTimeout:g} s ({self._decoder.pending} bytes of it)")

    def _stopMessageTimer(self):
        if self._messageTimer is not None and self._messageTimer.active():
            self._messageTimer.cancel()
        self._messageTimer = None

    def connectionLost(self, reason):
        self._moveTo(ApiState.CLOSED)
        self._stopMessageTimer()
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = None
        for pending in self._outstanding:
            if pending.deadline.active():
                pending.deadline.cancel()
            self._budget.returned(self)
        self._outstanding.clear()
        self.log.debug("DHT API client {peer} gone: {why}", peer=self._describePeer(), why=reason.getErrorMessage())
        waiting, self._waitingForClose = self._waitingForClose, []
        for deferred in waiting:
            deferred.callback(None)

    def whenClosed(self):
        """
        @return: a Deferred that fires with C{None} once the connection is closed.
        """
        closed = Deferred()
        if self.state is ApiState.CLOSED:
            closed.callback(None)
        else:
            self._waitingForClose.append(closed)
        return closed

    def abort(self, reason):
        """Close the connection at once, with one log line naming the peer and C{reason}."""
        if self.state not in _API_ENDED:
            self.log.warn("DHT API client {peer} closed: {why}", peer=self._describePeer(), why=reason)
            self.close()

    def close(self):
        """Close the connection at once; answers not yet sent are dropped."""
        if self.state not in _API_ENDED:
            self._moveTo(ApiState.CLOSING)
            self.transport.abortConnection()

    def _describePeer(self):
        return formatHostPort(self.peer.host, self.peer.port) if self.peer is not None else "unknown peer"

    # Requests

    def _handleReceived(self):
        """
        Take the requests received, as far as the limits allow; then read on, or pause.
        While HANDLING, an answer sent on the way changes nothing: the loop goes on.
        """
        if self.state not in (ApiState.READING, ApiState.PAUSED):
            return
        wasPaused = self.state is ApiState.PAUSED
        self._moveTo(ApiState.HANDLING)
        decoded = 0
        while self.state is ApiState.HANDLING and not self._mustPause():
            try:
                message = self._decoder.nextMessage()
            except ProtocolError as e:
                self.abort(str(e))
                return
            if message is None:
                break
            decoded += 1
            if isinstance(message, DhtPut):
                self._put(message)
            else:
                self._get(message.key)
        if self.state is ApiState.HANDLING:
            self._settle(wasPaused)
            self._watchMessage(decoded)

    def _mustPause(self):
        if self._outstanding and self._budget.spent:
            # A connection with no GET waiting may always ask one: a flood on other
            # connections cannot keep a client that asks one at a time from being served.
            self._budget.wait(self)
            return True
        return self._writeBlocked or len(self._outstanding) >= self._maxOutstanding

    def roomFreed(self):
        """The service-wide budget of waiting GETs has room again: read on, if paused for it."""
        if self.state is ApiState.PAUSED:
            self._handleReceived()

    def _settle(self, wasPaused):
        """After HANDLING: PAUSED if a limit holds, READING otherwise; the transport follows."""
        pause = self._mustPause()
        self._moveTo(ApiState.PAUSED if pause else ApiState.READING)
        if pause and not wasPaused:
            self.transport.pauseProducing()
        elif wasPaused and not pause:
            self.transport.resumeProducing()

    def _put(self, message):
        try:
            self._store.put(message.key, message.value, message.ttl, message.replication)
        except Exception:
            self.log.failure("the value store failed a PUT for {key}", key=message.key.hex())

    def _get(self, key):
        pending = _PendingGet(key)
        self._outstanding.add(pending)
        self._budget.taken()
        pending.deadline = self._clock.callLater(self._getTimeout, self._answer, None, pending)
        found = maybeDeferred(self._store.get, key)
        found.addCallbacks(self._answer, self._storeFailed, callbackArgs=(pending,), errbackArgs=(pending,))

    def _storeFailed(self, failure, pending):
        self.log.failure("the value store failed a GET for {key}", failure, key=pending.key.hex())
        self._answer(None, pending)

    def _answer(self, value, pending):
        """
        Send the one answer to C{pending}: SUCCESS with C{value}, or FAILURE for C{None}.
        Nothing is sent when it has been answered already or the connection is closing.
        """
        if pending not in self._outstanding:
            return
        self._outstanding.remove(pending)
        if pending.deadline.active():
            pending.deadline.cancel()
        self._budget.returned(self)
        if self.state in _API_ENDED:
            return
        self.transport.write(self._reply(pending.key, value))
        if self.state is ApiState.PAUSED:
            self._handleReceived()

    def _reply(self, key, value):
        if value is not None:
            try:
                return encodeMessage(DhtSuccess(key, value))
            except ValueError:
                self.log.error("the value store answered {key} with an invalid value", key=key.hex())
        return encodeMessage(DhtFailure(key))

    # Flow control

    def pauseProducing(self):
        """The client does not read its answers fast enough: stop taking requests."""
        self._writeBlocked = True
        if self.state is ApiState.READING:
            self._moveTo(ApiState.PAUSED)
            self.transport.pauseProducing()

    def resumeProducing(self):
        """The client has read its answers: take requests again."""
        self._writeBlocked = False
        self._handleReceived()

    def stopProducing(self):
        """The connection is going away; L{connectionLost} cleans up."""


class ApiFactory(Factory):
    """
    Makes an L{ApiProtocol} per connection it admits, and keeps track of the open ones.

    @param store: the L{phantom.netdb.interfaces.IValueStore} served.
    @param clock: an C{IReactorTime} for the deadlines.
    @param settings: the L{phantom.config.DhtSettings} whose C{getTimeout} and C{api*} fields
        apply.

    @ivar connections: the L{ApiProtocol}s whose connections are open.
    @ivar refusals: the L{phantom.link.quota.RefusalLog} of connections refused.
    """

    noisy = False

    def __init__(self, store, clock, settings=DhtSettings()):
        self._store = store
        self._clock = clock
        self.settings = settings
        self.budget = OutstandingBudget(settings.apiMaxOutstandingTotal)
        self.quota = ConnectionQuota(
            descriptorShare(settings.apiMaxConnections, 1 / 8, DESCRIPTOR_RESERVE),
            settings.apiMaxConnectionsPerAddress,
            "module-API connections",
        )
        self.refusals = RefusalLog(clock, "module-API connection")
        self.connections = set()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        why = self.quota.admit(host)
        if why is not None:
            self.refusals.refused(host, why)
            return None
        settings = self.settings
        protocol = ApiProtocol(
            self._store, self._clock, settings.getTimeout, settings.apiMaxOutstanding,
            settings.apiHeaderTimeout, settings.apiIdleTimeout, self.budget,
        )
        self.connections.add(protocol)

        def closed(_):
            self.connections.discard(protocol)
            self.quota.release(host)

        protocol.whenClosed().addCallback(closed)
        return protocol


class ApiService(ListeningService):
    """
    The DHT module API of a node: listens on C{endpoint} and serves C{store}.

    @param store: the L{phantom.netdb.interfaces.IValueStore} served.
    @param endpoint: the C{IStreamServerEndpoint} to listen on, e.g.
        C{TCP4ServerEndpoint(reactor, 7401, interface="127.0.0.1")}; plain TCP, no TLS, as
        the module API says.
    @param clock: an C{IReactorTime} for the deadlines.
    @param settings: the L{phantom.config.DhtSettings} whose C{getTimeout} and C{api*} fields apply.
    @param changes: fields of C{settings} to change (C{getTimeout=0.1}).
    """

    def __init__(self, store, endpoint, clock, settings=DhtSettings(), **changes):
        self._endpoint = endpoint
        self.factory = ApiFactory(store, clock, replace(settings, **changes))

    def listener(self):
        return self._endpoint, self.factory

    @property
    def listeningAddress(self):
        """The C{IAddress} the API port listens on, once listening."""
        return self.port.getHost() if self.port is not None else None

    def stopService(self):
        """Stop listening and close every open connection; fires when all are closed."""
        waits = [super().stopService()]
        self.factory.refusals.stop()
        for protocol in list(self.factory.connections):
            waits.append(protocol.whenClosed())
            protocol.close()
        return gatherResults(waits)
