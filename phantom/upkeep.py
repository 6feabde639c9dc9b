"""Periodic upkeep that cannot die: a step that fails is logged, and runs again next round."""

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger


class Upkeep(TimerService):
    """
    Runs C{step()} at once and then every C{interval} seconds of C{clock} while the service
    runs. A step that raises, or whose Deferred fails, is logged as a failure of C{what}; the
    next round runs all the same. A step's Deferred is not waited for, so a step that hangs
    does not hold the next round back.

    @param interval: seconds between rounds.
    @param step: the callable run each round.
    @param clock: C{IReactorTime}.
    @param what: what the step does, for the log (C{"renewing paths"}).
    """

    log = Logger()

    def __init__(self, interval, step, clock, what):
        super().__init__(interval, self._round)
        self.clock = clock
        self._step = step
        self._what = what
        self.failures = 0
        """How many rounds have failed so far."""

    def _round(self):
        try:
            result = self._step()
        except Exception:
            self._failed(None)
            return
        if isinstance(result, Deferred):
            result.addErrback(self._failed)

    def _failed(self, failure):
        self.failures += 1
        self.log.failure(
            "{what} failed; it runs again in {interval:g} s", failure, what=self._what, interval=self.step
        )
