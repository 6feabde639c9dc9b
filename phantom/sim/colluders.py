"""
Colluders and path choice: how often both ends of a built path (x0, which sees the owner, and
T, which sees the traffic) are colluders, when a share of the nodes collude.

Honest colluders take part in every build like anyone; aborting colluders give up every build
whose ends are not both theirs (selective denial of service), which they can tell by comparing
notes (an upper bound on what they learn: here they are told). An attempt they give up fails as
any failed attempt does, and the owner retries as its path service does: the node pool, the
planning and the retry rule (L{phantom.path.retry.Retries}) are the node's own. What is left
out is the setup itself (its arrays and crypto, simulated in L{phantom.sim.paths}): here an
attempt's outcome is decided by who is in its circle, which makes thousands of builds cheap.
"""

from dataclasses import dataclass

from twisted.internet.defer import Deferred

from phantom.config import PathSettings
from phantom.path.plan import EXIT, NotEnoughNodes, PathShape, planPath
from phantom.path.pool import NodePool
from phantom.path.retry import Retries
from phantom.wire.dht import Table


@dataclass(frozen=True)
class ColluderResult:
    """
    @ivar share: the share of built paths whose x0 and T are both colluders.
    @ivar expected: the share uniform choice gives: the colluders' share of nodes, squared.
    @ivar built: how many paths were built.
    @ivar attempts: how many attempts that took.
    @ivar failedBuilds: how many builds gave up after their last attempt.
    @ivar standardError: the standard error of C{share}, by batch means (L{batchError}): the
        builds of one owner are not independent (ends are kept from one to the next).
    @ivar colluderEnded: how many built paths had colluders at both ends.
    @ivar honestDropped: of the pairs of honest ends that were given up on or built, the share
        given up on (the retry rule dropped them after their failed attempts).
    """

    share: float
    expected: float
    built: int
    attempts: int
    failedBuilds: int
    standardError: float = 0.0
    colluderEnded: int = 0
    honestDropped: float = 0.0

    @property
    def ratio(self):
        """The share against what uniform choice gives."""
        return self.share / self.expected

    @property
    def ratioError(self):
        """The standard error of L{ratio}."""
        return self.standardError / self.expected


def batchError(outcomes, batches=20):
    """
    The standard error of the mean of C{outcomes} (0 or 1, in the order they came), from the
    means of C{batches} runs of consecutive outcomes: correlation between neighbours is taken
    into account as long as it dies out within a batch.

    @return: the standard error, or 0.0 for fewer than two outcomes per batch.
    """
    size = len(outcomes) // batches
    if size < 2:
        return 0.0
    means = [sum(outcomes[i * size : (i + 1) * size]) / size for i in range(batches)]
    mean = sum(means) / batches
    return (sum((m - mean) ** 2 for m in means) / (batches - 1) / batches) ** 0.5


def _result(d):
    """The result of a Deferred that has one already."""
    outcome = []
    d.addBoth(outcome.append)
    [result] = outcome
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def colluderEndShare(sim, fraction, aborting, builds, keepEnds=None, settings=PathSettings(), owners=50, seemGone=False):
    """
    Build paths from honest owners with a share of the nodes colluding.

    @param sim: a warm-started L{phantom.sim.network.Simulation}; its node records are the
        candidates.
    @param fraction: the share of nodes that collude.
    @param aborting: whether colluders give up builds whose ends are not both theirs.
    @param builds: how many paths to build (each with up to C{settings.attempts} attempts).
    @param keepEnds: the retry rule's L{Retries.keepEnds}; 1 is the old rule, C{None} the
        node's (L{phantom.path.retry.keepEndsFor} the circle).
    @param seemGone: whether aborting colluders at an end of an attempt they give up also make
        themselves known to be gone (failing x0's link, or the owner's requests), which drops
        them at once and keeps the other end (L{Retries.failed}): the only say in which ends are
        dropped that colluders have.
    @return: a L{ColluderResult}.
    """
    rng = sim.random
    nodes = sim.nodes
    colluding = set(rng.sample(range(len(nodes)), round(fraction * len(nodes))))
    records = [node.dht.store.get(Table.NODE, node.nodeId) for node in nodes]
    indexOf = {node.nodeId: node.index for node in nodes}
    honest = [node for node in nodes if node.index not in colluding]
    shape = PathShape(settings.x, settings.y)

    async def sample(count, exclude):
        # The pool's sample, uniform over the nodes (how uniform the network database's
        # sampling is, is measured on its own: sampling_tv_distance).
        return [records[i] for i in rng.sample(range(len(records)), count) if records[i].nodeId not in exclude]

    ends, attempts, failedBuilds = [], 0, 0
    honestPairs = {"built": 0, "dropped": 0}
    pools, kept = {}, {}
    for number in range(builds):
        owner = honest[number % min(owners, len(honest))]
        pool = pools.get(owner.index)
        if pool is None:
            pool = pools[owner.index] = NodePool(sample, sim.clock, rng, settings.poolSize, settings.poolRefresh)
            kept[owner.index] = Retries(keepEnds)
        _result(pool.refresh())
        retries = kept[owner.index]
        excluded = {owner.nodeId}
        for _ in range(settings.attempts):
            attempts += 1
            candidates = _result(Deferred.fromCoroutine(
                pool.draw(shape.size + 8, exclude=excluded, atLeast=shape.size)
            ))
            try:
                plan = planPath(shape, EXIT, candidates, rng, exclude=excluded, ends=retries.ends)
            except NotEnoughNodes:
                retries.cannotKeepEnds()
                continue
            circle = [indexOf[hop.record.nodeId] for hop in plan.circle]
            pair = (plan.adjacent, plan.terminating)
            colludingEnds = sum(indexOf[record.nodeId] in colluding for record in pair)
            if aborting and colludingEnds < 2 and any(index in colluding for index in circle):
                gone = {record.nodeId for record in pair if indexOf[record.nodeId] in colluding} if seemGone else ()
                failed = retries.failed(plan, gone)
                excluded.update(failed)
                pool.discard(failed)
                if not colludingEnds and retries.ends != pair:
                    honestPairs["dropped"] += 1
                continue
            retries.succeeded()
            ends.append(colludingEnds == 2)
            honestPairs["built"] += not colludingEnds
            break
        else:
            failedBuilds += 1
    expected = (len(colluding) / len(nodes)) ** 2
    built, colluderEnded = len(ends), sum(ends)
    share = colluderEnded / built if built else 0.0
    honestEnded = honestPairs["built"] + honestPairs["dropped"]
    honestDropped = honestPairs["dropped"] / honestEnded if honestEnded else 0.0
    return ColluderResult(share, expected, built, attempts, failedBuilds, batchError(ends), colluderEnded, honestDropped)
