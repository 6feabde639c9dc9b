"""
Where a node's inbound links go: to whoever awaits them, parked a while if they came early,
or to their purpose's handler. No I/O: the link service (and the in-memory one of
L{phantom.link.testing}) hands it each freshly opened inbound link.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from phantom.errors import LinkFailed, LinkTimeout
from phantom.link.quota import ConnectionQuota, addressPrefix
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

    def expectLink(self, linkId, fromHost, purpose, timeout, nodeId=None):
        """
        Wait for a link with C{linkId} and C{purpose} to arrive from C{fromHost}, or take it if
        it arrived early and was parked.

        @param nodeId: the node id the link must come from (its pin), or C{None} for any. A
            link from another node id, at that host and with that link id, is aborted and the
            wait goes on: knowing a link id and sharing a host is no way in.
        @return: a Deferred that fires with the L{ILink}, or fails with L{LinkTimeout}.
        """
        key = (linkId, fromHost)
        parked = self._parked.get(key, {})
        for fromNode in [n for n in parked if nodeId is None or n == nodeId][:1]:
            link, call = self._unparked(key, fromNode)
            call.cancel()
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
        self._awaited[key] = (Purpose(purpose), deferred, self._clock.callLater(timeout, expire), nodeId)
        return deferred

    def dispatch(self, link):
        """Hand a freshly opened inbound link to whoever awaits it or to its purpose's handler."""
        key = (link.linkId, link.peer.host)
        awaited = self._awaited.get(key)
        if awaited is not None:
            purpose, deferred, call, nodeId = awaited
            if nodeId is not None and link.nodeId != nodeId:
                self.log.warn(
                    "refused link {linkId} from {host}: node {got}, not the awaited {pinned}",
                    linkId=link.linkId.hex(), host=link.peer.host, got=link.nodeId.hex()[:16], pinned=nodeId.hex()[:16],
                )
                return link.abort(f"link {link.linkId.hex()} came from another node than the one awaited")
            if purpose != link.purpose:
                return link.abort(f"link {link.linkId.hex()} opened as {link.purpose.name}, {purpose.name} awaited")
            del self._awaited[key]
            call.cancel()
            deferred.callback(link)
            return
        if link.purpose in self._parkable:
            # Parked by node id too, so that a link from another node cannot take the place.
            parked = self._parked.setdefault(key, {})
            if link.nodeId not in parked:
                self._makeRoom(link.peer.host)
                full = self._parking.admit(link.peer.host)
                if full is not None:
                    if not parked:
                        del self._parked[key]
                    return link.abort(f"an early {link.purpose.name} link, and {full} are held")
                parked[link.nodeId] = (link, self._clock.callLater(self._parkable[link.purpose], self._unpark, key, link.nodeId))
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

    def _makeRoom(self, host):
        """If every place is taken, an early link of the address holding the most gives way to C{host}'s, holding fewer."""
        heaviest = self._parking.givesWayTo(host)
        if heaviest is None:
            return
        for key, parked in self._parked.items():
            if parked and addressPrefix(key[1]) == heaviest:
                link, call = self._unparked(key, next(iter(parked)))
                call.cancel()
                return link.abort("its parking place went to an early link from an address holding fewer")

    def _unparked(self, key, nodeId):
        parked = self._parked[key]
        taken = parked.pop(nodeId)
        if not parked:
            del self._parked[key]
        self._parking.release(key[1])
        return taken

    def _unpark(self, key, nodeId):
        link, _ = self._unparked(key, nodeId)
        link.abort(f"nobody awaited link {key[0].hex()}")

    def stop(self):
        """Fail every wait and drop every parked link's timer: the node is stopping."""
        for (_, host), parked in self._parked.items():
            for link, call in parked.values():
                call.cancel()
                self._parking.release(host)
        self._parked.clear()
        for key in list(self._awaited):
            _, deferred, call, _ = self._awaited.pop(key)
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
