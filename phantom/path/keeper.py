"""
Keeping a node's standing paths: the entry paths that make its AP-address reachable and the
exit paths that its first packet should not have to wait for, built at start and built again
whenever one is missing (a replacement that failed, a build that found too small a network).

The path service replaces a path that loses a hop or reaches the end of its lifetime; the
keeper covers what that leaves: the first build, and any build that failed. Failed builds are
tried again after a delay that doubles from C{retryMin} to C{retryMax} seconds and is reset by a
success, and cut short when the node comes to see more nodes than when the build failed (a
network still starting up). When the network the node sees is smaller than the configured shape
needs, the keeper says so once, with the numbers and what to set.
"""

from dataclasses import dataclass

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape, minimumY
from phantom.upkeep import Upkeep

SMALLEST_SHAPE = PathShape(2, minimumY(2))
"""The smallest path the owner accepts: 2 X-nodes (T is never the owner's neighbour)."""

TELL_AFTER = 5
"""Failed builds before a network too small is told: a node just started may not know them all yet."""


@dataclass
class KeptKind:
    """What the keeper knows of one kind of path: how many it wants, and how building them goes."""

    wanted: int
    building: int = 0
    built: int = 0
    """Paths of this kind the keeper has built since start."""
    failures: int = 0
    """Builds of this kind that failed since the last that succeeded."""
    lastError: str = ""
    retryAt: float = 0.0
    delay: float = 0.0
    seenAtFailure: int = 0
    """How many other nodes the node saw when the last build failed."""
    triedAt: float = 0.0


def tooSmallAdvice(shape, seen):
    """
    What to tell an operator whose network is too small for C{shape}.

    @param shape: the configured L{PathShape}.
    @param seen: how many other nodes this node sees.
    @return: one line: what the shape needs, what the node sees, and what to set.
    """
    line = (
        f"the network is too small for paths of {shape.x} X- and {shape.y} Y-nodes: they need {shape.size} "
        f"other nodes, and this node sees {seen}. "
    )
    fitting = fittingShape(seen)
    if fitting is not None:
        line += f"Set a smaller shape in the config file's [path] section (x = {fitting.x}, y = {fitting.y} needs {fitting.size})"
    else:
        line += f"No path fits fewer than {SMALLEST_SHAPE.size} other nodes"
    return line + ", or on a network of two machines give --own-exit and --own-entry (not anonymous)"


def fittingShape(others):
    """
    A shape for a network in which a node sees C{others} other nodes: the default (3, 12) where
    it fits with half the nodes spare, else the largest that leaves half the nodes spare (a
    build that fails tries again without the nodes it tried, and sampling the network database
    seldom finds every node of a small network), else the smallest, (2, 3), if it fits at all.

    @return: a L{PathShape}, or C{None} if not even the smallest fits.
    """
    usable = others - max(1, others // 2)
    x = 3 if usable >= 3 + minimumY(3) else 2
    y = min(usable - x, 12)
    if y >= minimumY(x):
        return PathShape(x, y)
    return SMALLEST_SHAPE if others >= SMALLEST_SHAPE.size else None


class PathKeeper(Service):
    """
    Keeps C{wanted[kind]} paths of each kind built, in the background.

    @param paths: the node's L{phantom.path.service.PathService}.
    @param wanted: L{PathKind} to how many paths of that kind to keep; 0 keeps none.
    @param clock: C{IReactorTime}.
    @param nodesSeen: C{nodesSeen() -> int}: how many other nodes this node knows of (for the
        message when the network is too small).
    @param random: the source of the jitter on retry delays.
    @param ready: a Deferred that fires once the node has joined the network (nothing is built
        before), or C{None} to start at once.
    @param interval: seconds between two looks at what is missing.
    @param retryMin: seconds before the first retry of a failed build.
    @param retryMax: the most seconds between two tries.
    """

    log = Logger()

    def __init__(self, paths, wanted, clock, nodesSeen, random, ready=None, interval=1.0, retryMin=1.0, retryMax=15.0):
        self._ready = ready
        self._paths = paths
        self._clock = clock
        self._nodesSeen = nodesSeen
        self._random = random
        self.retryMin, self.retryMax = retryMin, retryMax
        self.kinds = {PathKind(kind): KeptKind(count, delay=retryMin) for kind, count in wanted.items() if count > 0}
        self._told = False
        self._loop = Upkeep(interval, self.keep, clock, "keeping this node's paths built")

    def startService(self):
        super().startService()
        self._loop.startService()

    def stopService(self):
        super().stopService()
        if self._loop.running:
            return self._loop.stopService()

    def owned(self, kind):
        """@return: how many finished paths of C{kind} the node has."""
        return sum(1 for path in self._paths.paths if path.kind == kind)

    def keep(self):
        """Start a build for every missing path whose retry time has come."""
        if self._ready is not None and not self._ready.called:
            return
        now = self._clock.seconds()
        for kind, kept in self.kinds.items():
            replacing = 1 if kind in self._paths.replacing else 0
            missing = kept.wanted - self.owned(kind) - kept.building - replacing
            grown = kept.failures and self._nodesSeen() > kept.seenAtFailure and now - kept.triedAt >= self.retryMin
            if missing > 0 and (now >= kept.retryAt or grown):
                for _ in range(missing):
                    self._build(kind, kept)

    def _build(self, kind, kept):
        kept.building += 1
        kept.triedAt = self._clock.seconds()
        d = Deferred.fromCoroutine(self._paths.build(kind))
        d.addCallbacks(lambda path: self._built(kind, kept, path), lambda failure: self._failed(kind, kept, failure))

    def _built(self, kind, kept, path):
        kept.building -= 1
        kept.built += 1
        kept.failures, kept.lastError, kept.delay, kept.retryAt = 0, "", self.retryMin, 0.0
        self.log.info("kept an {kind} path: built in {seconds:.3f} s", kind=kind, seconds=sum(path.phases.values()))

    def _failed(self, kind, kept, failure):
        kept.building -= 1
        kept.failures += 1
        kept.lastError = failure.getErrorMessage()
        kept.retryAt = self._clock.seconds() + kept.delay * (0.5 + self._random.random())
        kept.delay = min(kept.delay * 2, self.retryMax)
        shape = PathShape(self._paths.settings.x, self._paths.settings.y)
        seen = kept.seenAtFailure = self._nodesSeen()
        if seen < shape.size:
            if kept.failures >= TELL_AFTER and not self._told:
                self._told = True
                self.log.warn("{advice}", advice=tooSmallAdvice(shape, seen))
        elif kept.failures == 1 or kept.failures % 10 == 0:
            self.log.warn(
                "no {kind} path yet ({failures} tries), trying again: {why}", kind=kind, failures=kept.failures, why=kept.lastError
            )

    def states(self):
        """
        @return: for each kind kept, a dict: C{kind}, C{wanted}, C{built} (finished paths the node
            has now), C{building}, C{failures} (since the last success) and C{last_error}.
        """
        return [
            {
                "kind": str(kind),
                "wanted": kept.wanted,
                "built": self.owned(kind),
                "building": kept.building + (1 if kind in self._paths.replacing else 0),
                "failures": kept.failures,
                "last_error": kept.lastError,
            }
            for kind, kept in self.kinds.items()
        ]
