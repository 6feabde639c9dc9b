"""The end of something long-lived (a link, a path, a tunnel), as Deferreds for whoever waits for it."""

from twisted.internet.defer import CancelledError, Deferred, succeed


class Ending:
    """
    Hands out Deferreds that fire, with C{None}, when the thing ends; each waiter gets its
    own, and cancelling one stops that wait only.
    """

    def __init__(self):
        self._waiting = []
        self.ended = False

    def whenEnded(self):
        """@return: a Deferred that fires when the thing ends (at once if it has)."""
        if self.ended:
            return succeed(None)

        def cancel(d):
            if d in self._waiting:
                self._waiting.remove(d)

        d = Deferred(cancel)
        self._waiting.append(d)
        return d

    def onEnd(self, f):
        """
        Call C{f()} when the thing ends.

        @return: a Deferred whose C{cancel()} takes the call back, quietly.
        """
        d = self.whenEnded()
        d.addCallback(lambda _: f())
        d.addErrback(lambda failure: failure.trap(CancelledError) and None)
        return d

    def end(self):
        """The thing has ended: fire every waiting Deferred, once."""
        if self.ended:
            return
        self.ended = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class Goes:
    """
    A mixin for things that go once (paths): L{gone}, L{whenGone} and L{onGone} from the
    L{Ending} in the C{ending} attribute.
    """

    @property
    def gone(self):
        """Whether the thing has gone."""
        return self.ending.ended

    def whenGone(self):
        """@return: a Deferred that fires when the thing goes."""
        return self.ending.whenEnded()

    def onGone(self, f):
        """Call C{f()} when the thing goes. @return: a Deferred whose C{cancel()} takes that back."""
        return self.ending.onEnd(f)
