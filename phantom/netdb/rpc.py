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
        self._waiting = OrderedDict()
        self._waking = False

    def __len__(self):
        return len(self._shares)

    def held(self, channel=None, peer=None):
        """@return: how many answers C{channel} (or the node id C{peer}) has under way."""
        return self._shares.held(path=channel) if channel is not None else self._shares.held(peer=peer)

    def admits(self, channel):
        """@return: whether C{channel} may have one more request answered now."""
        return self._shares.admits(channel.link.nodeId, channel)

    def begin(self, answer, channel):
        """Count C{answer} (with C{drop()}) under way for C{channel} (see L{admits})."""
        self._shares.admit(answer, channel.link.nodeId, channel)

    def end(self, answer):
        """C{answer} went out, failed or was dropped: its room goes to a waiting link."""
        if answer in self._shares:
            self._shares.release(answer)
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


_ID = struct.Struct(">Q")
_ID_MASK = 2 ** (8 * REQUEST_ID_SIZE) - 1


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
    """

    log = Logger()

    def __init__(self, link, responder, clock, timeout, onClosed, randomBytes=os.urandom, answering=None):
        self.link = link
        self._responder = responder
        self._clock = clock
        self._timeout = timeout
        self._onClosed = onClosed
        self._nextRequestId = int.from_bytes(randomBytes(REQUEST_ID_SIZE), "big")
        self._pending = {}
        """C{(kind, deferred, deadline)} of each request awaiting its reply, oldest first."""
        self._timer = None
        """The one timer of the requests' timeouts, due at the oldest one's deadline or before."""
        self._answering = Answering() if answering is None else answering
        self._answers = set()
        self._held = deque()
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
        """
        if self.closed:
            raise RpcFailed(f"the link to {describePeer(self.link.peer)} is closed")
        if type(kind) is not RpcKind:
            kind = RpcKind(kind)
        pending = self._pending
        requestId = self._newRequestId()
        while requestId in pending:  # only after 2**64 requests, with one still waiting
            requestId = self._newRequestId()
        deferred = Deferred()
        pending[requestId] = (kind, deferred, self._clock.seconds() + self._timeout)
        if self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._expireDue)
        self._send(kind, requestId, content)
        return deferred

    def _newRequestId(self):
        number = self._nextRequestId
        self._nextRequestId = (number + 1) & _ID_MASK
        return _ID.pack(number)

    def _send(self, kind, requestId, content):
        self.lastUsed = self._clock.seconds()
        self.link.sendFrame(encodeRpc(kind, requestId, content))

    def _expireDue(self):
        """
        Fail the requests whose deadline has come, oldest first, and set the timer for the
        next one. Requests all wait the same time, so the oldest is due first; a reply only
        takes its request out, and leaves the timer as it is.
        """
        self._timer = None
        now = self._clock.seconds()
        while self._pending:
            requestId, (kind, deferred, deadline) = next(iter(self._pending.items()))
            if deadline > now:
                if self._timer is None:  # an errback below may have asked again, and set it
                    self._timer = self._clock.callLater(deadline - now, self._expireDue)
                return
            del self._pending[requestId]
            deferred.errback(RpcFailed(f"no reply to {kind.name} from {describePeer(self.link.peer)} within {self._timeout:g} s"))

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
        requested, deferred, _ = pending
        if kind not in REPLIES[requested]:
            deferred.errback(RpcFailed(f"{kind.name} is no reply to {requested.name}"))
            return self.link.abort(f"{kind.name} in reply to {requested.name}")
        deferred.callback((kind, message.content))

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
        sender = Contact(self.link.peer.host, message.content.port, self.link.nodeId)
        try:
            answer = self._responder.respond(sender, kind, message.content)
        except Exception:
            self.log.failure("answering {kind} from {peer}", kind=kind.name, peer=describePeer(self.link.peer))
            return self.link.abort(f"its {kind.name} request could not be answered")
        requestId = message.request_id
        if not isinstance(answer, Deferred):
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for kind, deferred, _ in pending.values():
            deferred.errback(RpcFailed(f"the link to {describePeer(self.link.peer)} closed before the reply to {kind.name}"))
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
        links.registerPurpose(Purpose.DHT, self._accepted)

    def _channel(self, link):
        return RpcChannel(link, self._responder, self._clock, self.timeout, self._channelClosed, answering=self.answering)

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
