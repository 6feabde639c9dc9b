"""
DHT RPCs over links.

Each DHT link carries requests in both directions, matched to their replies by 8-byte request
ids, many in flight at once, each with a timeout. L{DhtLinks} keeps at most one link per peer,
opens links on demand (pinned to the peer's node id), and closes links that have carried
nothing for a while.
"""

import os
import struct
from collections import OrderedDict, deque

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from phantom.address import Contact, describePeer
from phantom.link.interfaces import ILinkHandler
from phantom.link.service import CloseAtOnce
from phantom.quota import Shares
from phantom.wire import ProtocolError
from phantom.wire.dht import REQUESTS, REQUEST_ID_SIZE, RpcKind, decodeRpc, encodeRpc
from phantom.wire.link import Purpose

REPLIES = {
    RpcKind.PING: {RpcKind.PONG},
    RpcKind.FIND_NODE: {RpcKind.NODES},
    RpcKind.FIND_VALUE: {RpcKind.VALUE, RpcKind.NODES},
    RpcKind.STORE: {RpcKind.STORED},
    RpcKind.SAMPLE: {RpcKind.VALUE, RpcKind.NODES},
}
"""The reply kinds each request may get."""


MAX_ANSWERING = 64
"""Requests of one link whose answers are still being worked out: beyond it the link is not read
from until answers have gone out, so a peer cannot pipeline work without bound."""

MAX_ANSWERING_PER_PEER = 64
"""The same over all the links of one node id: more links do not get a peer more work done."""

MAX_ANSWERING_TOTAL = 1024
"""The same over every peer."""


class Answering:
    """
    The requests of other nodes a node is answering, over all its DHT links: at most
    C{perLink} on one link, C{perPeer} for one node id over all its links (or links again after
    a reconnect), C{total} in all. A link whose request finds no room holds that request and is
    not read until room is made. When all are taken, the oldest answer of the peer that holds
    the most is dropped for a peer that holds fewer (its requester's request times out), so a
    peer with many node ids recycles only its own share.
    """

    def __init__(self, perLink=MAX_ANSWERING, perPeer=MAX_ANSWERING_PER_PEER, total=MAX_ANSWERING_TOTAL):
        self._shares = Shares(total, perPeer, perLink, onEvicted=lambda answer: answer.drop())
        self._held = 0
        """How many answers are under way: every request is admitted while there are none."""
        self._waiting = OrderedDict()
        self._waking = False

    def __len__(self):
        return self._held

    def held(self, channel=None, peer=None):
        """@return: how many answers C{channel} (or the node id C{peer}) has under way."""
        return self._shares.held(path=channel) if channel is not None else self._shares.held(peer=peer)

    def admits(self, channel):
        """@return: whether C{channel} may have one more request answered now."""
        return not self._held or self._shares.admits(channel.link.nodeId, channel)

    def begin(self, answer, channel):
        """Count C{answer} (with C{drop()}) under way for C{channel} (see L{admits})."""
        self._shares.admit(answer, channel.link.nodeId, channel)
        self._held = len(self._shares)

    def end(self, answer):
        """C{answer} went out, failed or was dropped: its room goes to a waiting link."""
        if answer in self._shares:
            self._shares.release(answer)
            self._held = len(self._shares)
            self._wake()

    def wait(self, channel, resume):
        """Call C{resume()} once L{admits} lets C{channel} go on."""
        self._waiting[channel] = resume

    def forget(self, channel):
        """C{channel} waits no more (its link is gone)."""
        self._waiting.pop(channel, None)

    def _wake(self):
        if self._waking:
            return
        self._waking = True
        try:
            woken = True
            while woken:
                woken = False
                for channel in list(self._waiting):
                    if channel in self._waiting and self.admits(channel):
                        self._waiting.pop(channel)()
                        woken = True
        finally:
            self._waking = False


class _Answer:
    """One request being answered: C{deferred}, the responder's answer, is cancelled if it is dropped."""

    def __init__(self):
        self.deferred = None
        self.dropped = False

    def drop(self):
        self.dropped = True
        if self.deferred is not None and not self.deferred.called:
            self.deferred.cancel()


class Deadlines:
    """
    The deadlines of many waits of one length (a node's requests, or its GETs), on one timer.

    Each wait is an entry C{(deadline, owner, key)}: once its deadline has come,
    C{owner.expire(key)} is called, unless C{owner.awaits(key)} says it is over (a reply came,
    the link closed). As every wait is the same length, entries come in the order of their
    deadlines, and the timer is due at the oldest one still waited for: one timer for all of a
    node's requests in flight instead of one per request (or per link), and none while nothing
    is waited for. Entries whose wait is over are dropped when the timer meets them. (A clock set
    back delays the expiries behind the oldest by as much; it never makes one early.)

    @param clock: C{IReactorTime}.
    @param timeout: how long each wait lasts, in seconds.
    """

    def __init__(self, clock, timeout):
        self._clock = clock
        self.timeout = timeout
        self._queue = deque()
        self._timer = None
        self._expiring = False

    def __len__(self):
        """How many entries are kept: waits under way and over ones not yet dropped."""
        return len(self._queue)

    def add(self, owner, key):
        """
        Start a wait of C{timeout} seconds for C{key} of C{owner}.

        @param owner: has C{awaits(key)}, whether the wait still goes on, and C{expire(key)}.
        @return: the deadline.
        """
        deadline = self._clock.seconds() + self.timeout
        self._queue.append((deadline, owner, key))
        if self._timer is None and not self._expiring:
            self._timer = self._clock.callLater(self.timeout, self._expire)
        return deadline

    def _expire(self):
        self._timer = None
        self._expiring = True
        queue = self._queue
        now = self._clock.seconds()
        try:
            while queue:
                deadline, owner, key = queue[0]
                if not owner.awaits(key):
                    queue.popleft()
                elif deadline <= now:
                    queue.popleft()
                    owner.expire(key)
                else:
                    break
        finally:
            self._expiring = False
            if queue:
                self._timer = self._clock.callLater(max(queue[0][0] - now, 0), self._expire)

    def prune(self):
        """Drop the oldest entries whose wait is over; with none left, stop the timer."""
        queue = self._queue
        while queue and not queue[0][1].awaits(queue[0][2]):
            queue.popleft()
        if not queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def expireAll(self):
        """End every wait now: each one still under way expires, and the timer stops."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, deque()
        for _, owner, key in queue:
            if owner.awaits(key):
                owner.expire(key)


_ID = struct.Struct(">Q")
_ID_MASK = 2 ** (8 * REQUEST_ID_SIZE) - 1


class _ToDeferred:
    """The receiver of L{RpcChannel.request}'s requests: the tag is the Deferred of the outcome."""

    @staticmethod
    def replied(deferred, kind, content):
        deferred.callback((kind, content))

    @staticmethod
    def failed(deferred, error):
        deferred.errback(error)


_TO_DEFERRED = _ToDeferred()


def deliverTo(deferred, receiver, tag):
    """
    Hand the outcome of a request made with a Deferred to C{receiver} as L{RpcChannel.ask}
    does: C{receiver.replied(tag, kind, content)}, or C{receiver.failed(tag, error)} with the
    L{RpcFailed}.
    """

    def failed(failure):
        failure.trap(RpcFailed)
        receiver.failed(tag, failure.value)

    deferred.addCallbacks(lambda reply: receiver.replied(tag, reply[0], reply[1]), failed)


class RpcFailed(Exception):
    """A request got no usable reply: timeout, lost link, refused link, or a broken reply."""


class Unreachable(RpcFailed):
    """A request could not be sent: no link to its node could be opened."""


@implementer(ILinkHandler)
class RpcChannel:
    """
    The RPCs of one DHT link.

    @param link: the L{phantom.link.interfaces.ILink}.
    @param responder: answers requests: C{respond(sender, kind, content)} returns the reply
        as C{(kind, content)} or a Deferred of it; C{sender} is the peer's L{Contact} (its
        listening port from the request; port 0 when it accepts no links).
    @param clock: C{IReactorTime} for timeouts.
    @param timeout: seconds a request waits for its reply.
    @param onClosed: called with this channel when the link is gone.
    @param answering: the L{Answering} this channel's answers count against, shared by every
        channel of a node; one of its own if not given.
    @param randomBytes: C{randomBytes(n)}: where the first request id comes from; the ids
        that follow count up from it (an id only has to be unique among this link's requests
        in flight: a peer that reads them is the one they are sent to).
    @param deadlines: the L{Deadlines} (of C{timeout} seconds) the requests' timeouts are kept
        in, shared by every channel of a node; its own if not given.
    """

    log = Logger()

    def __init__(self, link, responder, clock, timeout, onClosed, randomBytes=os.urandom, answering=None, deadlines=None):
        self.link = link
        self._responder = responder
        self._clock = clock
        self._timeout = timeout
        self._onClosed = onClosed
        self._nextRequestId = int.from_bytes(randomBytes(REQUEST_ID_SIZE), "big")
        self._pending = {}
        """C{(kind, receiver, tag)} of each request awaiting its reply, by request id."""
        self._deadlines = Deadlines(clock, timeout) if deadlines is None else deadlines
        self._answering = Answering() if answering is None else answering
        self._answers = set()
        self._held = deque()
        self._sender = None
        """The peer as a L{Contact}, at the listening port of its last request."""
        self.lastUsed = clock.seconds()
        self.closed = False

    @property
    def pendingCount(self):
        """How many of our requests await their reply."""
        return len(self._pending)

    def request(self, kind, content):
        """
        Send a request.

        @return: a Deferred firing with the reply as C{(RpcKind, content)}, or failing with L{RpcFailed}.
        @raise RpcFailed: the channel is closed.
        """
        deferred = Deferred()
        self.ask(kind, content, _TO_DEFERRED, deferred)
        return deferred

    def ask(self, kind, content, receiver, tag):
        """
        Send a request whose outcome is handed to C{receiver} directly, without a Deferred:
        C{receiver.replied(tag, replyKind, content)} once the reply comes, or
        C{receiver.failed(tag, error)} with an L{RpcFailed} (timeout, lost link, a reply of the
        wrong kind), exactly one of them, never before this returns.

        @raise RpcFailed: the channel is closed.
        """
        if self.closed:
            raise RpcFailed(f"the link to {describePeer(self.link.peer)} is closed")
        if type(kind) is not RpcKind:
            kind = RpcKind(kind)
        pending = self._pending
        requestId = self._newRequestId()
        while requestId in pending:  # only after 2**64 requests, with one still waiting
            requestId = self._newRequestId()
        pending[requestId] = (kind, receiver, tag)
        self._deadlines.add(self, requestId)
        self._send(kind, requestId, content)

    def _newRequestId(self):
        number = self._nextRequestId
        self._nextRequestId = (number + 1) & _ID_MASK
        return _ID.pack(number)

    def _send(self, kind, requestId, content):
        self.lastUsed = self._clock.seconds()
        self.link.sendFrame(encodeRpc(kind, requestId, content))

    def awaits(self, requestId):
        """L{Deadlines}: whether the request C{requestId} still awaits its reply."""
        return requestId in self._pending

    def expire(self, requestId):
        """L{Deadlines}: the request C{requestId} got no reply in time: it fails."""
        kind, receiver, tag = self._pending.pop(requestId)
        receiver.failed(tag, RpcFailed(f"no reply to {kind.name} from {describePeer(self.link.peer)} within {self._timeout:g} s"))

    def frameReceived(self, payload):
        try:
            message = decodeRpc(payload)
        except ProtocolError as e:
            return self.link.abort(str(e))
        self.lastUsed = self._clock.seconds()
        kind = message.kind
        if kind in REQUESTS:
            return self._answer(kind, message)
        pending = self._pending.pop(message.request_id, None)
        if pending is None:
            return  # a reply that came after its timeout
        requested, receiver, tag = pending
        if kind not in REPLIES[requested]:
            receiver.failed(tag, RpcFailed(f"{kind.name} is no reply to {requested.name}"))
            return self.link.abort(f"{kind.name} in reply to {requested.name}")
        receiver.replied(tag, kind, message.content)

    def _answer(self, kind, message):
        if self._held or not self._answering.admits(self):
            # No room for this peer (or link, or anyone): hold the request, read nothing more
            # (a link stops handling frames once paused: one request is held, at most a turn's).
            self._held.append((kind, message))
            if len(self._held) == 1:
                self.link.pauseProducing()
                self._answering.wait(self, self._resume)
            return
        self._answerNow(kind, message)

    def _answerNow(self, kind, message):
        port = message.content.port
        sender = self._sender
        if sender is None or sender.port != port:
            sender = self._sender = Contact(self.link.peer.host, port, self.link.nodeId)
        try:
            answer = self._responder.respond(sender, kind, message.content)
        except Exception:
            self.log.failure("answering {kind} from {peer}", kind=kind.name, peer=describePeer(self.link.peer))
            return self.link.abort(f"its {kind.name} request could not be answered")
        requestId = message.request_id
        if type(answer) is tuple or not isinstance(answer, Deferred):  # the type first: no ABC check
            if not self.closed:
                self._send(answer[0], requestId, answer[1])
            return
        self._answerLater(kind, requestId, answer)

    def _answerLater(self, kind, requestId, answer):
        """Send the reply to C{requestId} once the Deferred C{answer} has it."""
        under = _Answer()

        def send(reply):
            if not self.closed and not under.dropped:
                replyKind, content = reply
                self._send(replyKind, requestId, content)

        def failed(failure):
            if under.dropped and failure.check(CancelledError):
                return
            self.log.failure("answering {kind}", failure, kind=kind.name)
            if not self.closed:
                self.link.abort(f"its {kind.name} request could not be answered")

        def ended(_):
            self._answers.discard(under)
            self._answering.end(under)

        if not answer.called:
            under.deferred = answer
            self._answers.add(under)
            self._answering.begin(under, self)
            answer.addCallbacks(send, failed).addBoth(ended)
        else:
            answer.addCallbacks(send, failed)

    def _resume(self):
        held = self._held
        while held and not self.closed and self._answering.admits(self):
            self._answerNow(*held.popleft())
        if self.closed:
            return
        if held:
            self._answering.wait(self, self._resume)
        else:
            self.link.resumeProducing()

    @property
    def answeringCount(self):
        """How many of the peer's requests await their answer on this link."""
        return self._answering.held(self)

    def close(self):
        """Close the link; from now on the channel takes no requests."""
        self.closed = True
        self.link.close()

    def linkClosed(self, reason):
        self.closed = True
        self._held.clear()
        self._answering.forget(self)
        for under in list(self._answers):
            under.drop()
        pending, self._pending = self._pending, {}
        for kind, receiver, tag in pending.values():
            receiver.failed(tag, RpcFailed(f"the link to {describePeer(self.link.peer)} closed before the reply to {kind.name}"))
        self._deadlines.prune()
        self._onClosed(self)


class DhtLinks:
    """
    The DHT links of a node: one per peer, opened on demand, closed when idle.

    @param links: the node's L{phantom.link.service.LinkService}.
    @param responder: see L{RpcChannel}.
    @param clock: C{IReactorTime}.
    @param timeout: seconds a request waits for its reply.
    @param idleClose: a link that carried nothing for this long is closed by L{closeIdle}.
    """

    def __init__(self, links, responder, clock, timeout=5.0, idleClose=300.0):
        self._links = links
        self._responder = responder
        self._clock = clock
        self.timeout = timeout
        self.idleClose = idleClose
        self._channels = {}
        self._connecting = {}
        self.answering = Answering()
        """The L{Answering} every channel's answers count against."""
        self.deadlines = Deadlines(clock, timeout)
        """The L{Deadlines} of every channel's requests: one timer for all of them."""
        links.registerPurpose(Purpose.DHT, self._accepted)

    def _channel(self, link):
        return RpcChannel(
            link, self._responder, self._clock, self.timeout, self._channelClosed, answering=self.answering, deadlines=self.deadlines
        )

    def _accepted(self, link):
        channel = self._channel(link)
        self._channels.setdefault(link.nodeId, channel)
        return channel

    def _channelClosed(self, channel):
        if self._channels.get(channel.link.nodeId) is channel:
            del self._channels[channel.link.nodeId]

    def channelTo(self, contact):
        """
        @return: a Deferred firing with an open L{RpcChannel} to C{contact}, opening a link
            pinned to its node id if there is none; fails with L{RpcFailed}.
        """
        channel = self._channels.get(contact.nodeId)
        if channel is not None and not channel.closed:
            return succeed(channel)
        deferred = Deferred()
        waiting = self._connecting.get(contact.nodeId)
        if waiting is not None:
            waiting.append(deferred)
            return deferred
        # Registered before connecting: a connect may fail (or succeed) at once.
        self._connecting[contact.nodeId] = [deferred]
        d = self._links.connect(contact.host, contact.port, Purpose.DHT, nodeId=contact.nodeId)
        d.addCallbacks(self._connected, self._connectFailed, errbackArgs=(contact,))
        return deferred

    def channelToAddress(self, host, port, nodeId=None):
        """
        A channel to whoever listens at C{host:port}: pinned to C{nodeId} when given, otherwise
        the node is learned from its certificate (bootstrap contacts given by address only).

        @return: a Deferred firing with an open L{RpcChannel}; fails with L{RpcFailed}.
        """
        if nodeId is not None:
            return self.channelTo(Contact(host, port, nodeId))

        def failed(failure):
            raise RpcFailed(f"cannot reach {host}:{port}: {failure.getErrorMessage()}")

        d = self._links.connect(host, port, Purpose.DHT)
        d.addCallbacks(self._connected, failed)
        return d

    def _connected(self, link):
        channel = self._channels.get(link.nodeId)
        if channel is None or channel.closed:
            channel = self._channel(link)
            self._channels[link.nodeId] = channel
        link.attach(channel if channel.link is link else CloseAtOnce(link))
        for deferred in self._connecting.pop(link.nodeId, []):
            deferred.callback(channel)
        return channel

    def _connectFailed(self, failure, contact):
        error = Unreachable(f"cannot reach {contact}: {failure.getErrorMessage()}")
        for deferred in self._connecting.pop(contact.nodeId, []):
            deferred.errback(error)

    def call(self, contact, kind, content):
        """
        Send one request to C{contact}.

        @return: a Deferred firing with the reply C{(RpcKind, content)}, or failing with L{RpcFailed}.
        """
        channel = self._channels.get(contact.nodeId)
        if channel is not None and not channel.closed:
            return channel.request(kind, content)
        return self.channelTo(contact).addCallback(lambda channel: channel.request(kind, content))

    def ask(self, contact, kind, content, receiver, tag):
        """
        Send one request to C{contact}, its outcome handed to C{receiver} as
        L{RpcChannel.ask} does; a link that cannot be opened is an L{Unreachable} failure,
        which may be handed over before this returns.
        """
        channel = self._channels.get(contact.nodeId)
        if channel is not None and not channel.closed:
            return channel.ask(kind, content, receiver, tag)

        def opened(channel):
            return channel.request(kind, content)

        deliverTo(self.channelTo(contact).addCallback(opened), receiver, tag)

    def closeIdle(self):
        """Close links that carried nothing for C{idleClose} seconds and await no reply."""
        now = self._clock.seconds()
        for nodeId, channel in list(self._channels.items()):
            if not channel.pendingCount and now - channel.lastUsed >= self.idleClose:
                del self._channels[nodeId]
                channel.close()

    @property
    def channels(self):
        """The open channels by node id."""
        return dict(self._channels)
