"""
Where a node's inbound links go: to whoever awaits them, parked a while if they came early,
or to their purpose's handler. No I/O: the link service (and the in-memory one of
L{phantom.link.testing}) hands it each freshly opened inbound link.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from phantom.errors import LinkFailed, LinkTimeout
from phantom.link.quota import ConnectionQuota
from phantom.wire.link import Purpose


class LinkDispatcher:
    """
    The registry of purposes, awaited links and parked early links of one node.

    @param clock: C{IReactorTime}, for the waits and the parking.
    @param maxParked: how many early links are held at once; more are closed.
    @param maxParkedPerAddress: how many early links from one address are held at once.
    """

    log = Logger()

    def __init__(self, clock, maxParked=256, maxParkedPerAddress=32):
        self._clock = clock
        self._parking = ConnectionQuota(maxParked, maxParkedPerAddress, "parked links")
        self._handlers = {}
        self._awaited = {}
        self._parkable = {}
        self._parked = {}

    def registerPurpose(self, purpose, handlerFactory):
        """
        Accept inbound links of C{purpose}: C{handlerFactory(link)} returns the L{ILinkHandler}
        of each.
        """
        self._handlers[Purpose(purpose)] = handlerFactory

    def parkEarlyLinks(self, purpose, timeout):
        """
        Hold links of C{purpose} that arrive before anyone awaits them, for up to C{timeout}
        seconds: a protocol step may announce a link that can arrive before the step that
        awaits it has run.
        """
        self._parkable[Purpose(purpose)] = timeout

    def expectLink(self, linkId, fromHost, purpose, timeout):
        """
        Wait for a link with C{linkId} and C{purpose} to arrive from C{fromHost}, or take it if
        it arrived early and was parked.

        @return: a Deferred that fires with the L{ILink}, or fails with L{LinkTimeout}.
        """
        key = (linkId, fromHost)
        parked = self._parked.pop(key, None)
        if parked is not None:
            link, call = parked
            call.cancel()
            self._parking.release(fromHost)
            if link.purpose == Purpose(purpose):
                return succeed(link)
            link.abort(f"link {linkId.hex()} opened as {link.purpose.name}, {Purpose(purpose).name} awaited")
        if key in self._awaited:
            raise ValueError(f"link {linkId.hex()} from {fromHost} is already awaited")

        def expire():
            del self._awaited[key]
            deferred.errback(LinkTimeout(f"no {Purpose(purpose).name} link {linkId.hex()} from {fromHost} within {timeout:g} s"))

        def cancel(_):
            entry = self._awaited.pop(key, None)
            if entry is not None:
                entry[2].cancel()

        deferred = Deferred(cancel)
        self._awaited[key] = (Purpose(purpose), deferred, self._clock.callLater(timeout, expire))
        return deferred

    def dispatch(self, link):
        """Hand a freshly opened inbound link to whoever awaits it or to its purpose's handler."""
        key = (link.linkId, link.peer.host)
        awaited = self._awaited.get(key)
        if awaited is not None:
            purpose, deferred, call = awaited
            if purpose != link.purpose:
                return link.abort(f"link {link.linkId.hex()} opened as {link.purpose.name}, {purpose.name} awaited")
            del self._awaited[key]
            call.cancel()
            deferred.callback(link)
            return
        if link.purpose in self._parkable and key not in self._parked:
            full = self._parking.admit(link.peer.host)
            if full is not None:
                return link.abort(f"an early {link.purpose.name} link, and {full} are held")
            call = self._clock.callLater(self._parkable[link.purpose], self._unpark, key)
            self._parked[key] = (link, call)
            return
        handlerFactory = self._handlers.get(link.purpose)
        if handlerFactory is None:
            return link.abort(f"no handler for {link.purpose.name} links")
        try:
            handler = handlerFactory(link)
        except Exception:
            self.log.failure("handler factory for {purpose} failed", purpose=link.purpose.name)
            return link.abort("its handler could not be made")
        link.attach(handler)

    def _unpark(self, key):
        link, _ = self._parked.pop(key)
        self._parking.release(key[1])
        link.abort(f"nobody awaited link {key[0].hex()}")

    def stop(self):
        """Fail every wait and drop every parked link's timer: the node is stopping."""
        for (_, host), (link, call) in self._parked.items():
            call.cancel()
            self._parking.release(host)
        self._parked.clear()
        for key in list(self._awaited):
            _, deferred, call = self._awaited.pop(key)
            call.cancel()
            deferred.errback(LinkFailed("the node is stopping"))

    @property
    def awaitedCount(self):
        """How many links are awaited."""
        return len(self._awaited)

    @property
    def parkedCount(self):
        """How many early links are held."""
        return len(self._parked)
