"""
A pool of node records sampled ahead of time, from which path builds draw their candidates.

Sampling is half the time of a build, and the lookups it makes are visible to the nodes asked
(paper §10, the open problem of anonymous node selection). Sampling in the background, on its
own schedule and for no build in particular, takes that time off every build and keeps the
lookups from lining up in time with the path they are for. Every build draws its candidates at
random from the whole pool; the pool is replaced by a fresh sample every C{refreshInterval}
seconds, and nodes that failed a build leave it at once.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from phantom.upkeep import Upkeep


class NodePool:
    """
    Node records sampled in the background.

    @param sample: C{sample(count, exclude) -> awaitable list of NodeRecord} (the network
        database's C{sampleNodes}).
    @param clock: C{IReactorTime}.
    @param random: the secure source of the draws.
    @param size: how many records the pool aims to hold.
    @param refreshInterval: seconds between fresh samples.
    """

    log = Logger()

    def __init__(self, sample, clock, random, size=64, refreshInterval=300.0):
        self._sample = sample
        self._clock = clock
        self._random = random
        self.size = size
        self.refreshInterval = refreshInterval
        self.records = {}
        self._waiting = []
        self._loop = None

    def start(self):
        """Sample now and every C{refreshInterval} seconds."""
        self._loop = Upkeep(self.refreshInterval, self.refresh, self._clock, "refreshing the node pool")
        self._loop.startService()

    def stop(self):
        """Stop sampling; the records drawn so far stay usable."""
        if self._loop is not None and self._loop.running:
            self._loop.stopService()

    def refresh(self):
        """
        Replace the pool by a fresh sample; a refresh asked for while one runs joins it.

        @return: a Deferred that fires with the number of records held afterwards.
        """
        d = Deferred()
        self._waiting.append(d)
        if len(self._waiting) == 1:
            Deferred.fromCoroutine(self._refill())
        return d

    async def _refill(self):
        try:
            fresh = await self._sample(self.size, ())
        except Exception as e:
            self.log.warn("sampling nodes for the pool failed: {why}", why=str(e))
        else:
            if fresh:
                self.records = {record.nodeId: record for record in fresh}
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(len(self.records))

    def discard(self, nodeIds):
        """Drop C{nodeIds} from the pool (they failed a build)."""
        for nodeId in nodeIds:
            self.records.pop(nodeId, None)

    async def draw(self, count, exclude=(), atLeast=None):
        """
        Up to C{count} distinct live records not in C{exclude}, drawn at random from the pool;
        if it holds fewer than C{atLeast} (default C{count}) such records, a fresh sample is
        awaited first.

        @return: a list of at most C{count} records (fewer than C{atLeast} only if the network
            has no more).
        """
        atLeast = count if atLeast is None else atLeast
        now = self._clock.seconds()
        for nodeId in [nodeId for nodeId, record in self.records.items() if record.expires <= now]:
            del self.records[nodeId]
        eligible = [record for nodeId, record in self.records.items() if nodeId not in exclude]
        if len(eligible) < atLeast:
            await self.refresh()
            eligible = [record for nodeId, record in self.records.items() if nodeId not in exclude]
        if len(eligible) <= count:
            self._random.shuffle(eligible)
            return eligible
        return self._random.sample(eligible, count)
