"""
Path building in the simulation: every node gets a link service on the in-memory network
(latencies from the simulation's model) and the node's own L{PathService}, whose node pool
samples the simulated network database. A build is the real thing from the pool to the finished
path: sampling, planning, both rounds of setup arrays built, opened and checked by every node
of the circle, the link to x0.
"""

import random as randomModule

from twisted.internet.defer import Deferred

from phantom.config import PathSettings
from phantom.errors import PathFailed
from phantom.path.interfaces import PathKind
from phantom.path.service import PathService


def attachPathService(sim, node, settings=PathSettings()):
    """Give C{node} (a L{phantom.sim.network.SimNode} with its link service) a path service."""
    node.paths = PathService(
        node.identity, node.links, node, sim.clock, settings, random=randomModule.Random(sim.random.getrandbits(64))
    )


def buildPaths(sim, owners, count, spacing=10.0, kind=PathKind.EXIT):
    """
    Have C{owners} build C{count} paths between them, one every C{spacing} seconds of virtual
    time, each taken down once built.

    @param owners: L{phantom.sim.network.SimNode}s with path services.
    @return: a list of C{(built, attempts)} per build: whether it gave a path, and how many
        attempts it took (those that failed are in the path's C{failures} or the error).
    """
    outcomes = []

    def one(owner):
        d = Deferred.fromCoroutine(owner.paths.build(kind))

        def built(path):
            outcomes.append((True, len(path.failures) + 1))
            owner.paths.retire(path)

        def failed(failure):
            failure.trap(PathFailed)
            outcomes.append((False, owner.paths.settings.attempts))

        d.addCallbacks(built, failed)

    for number in range(count):
        one(owners[number % len(owners)])
        sim.runFor(spacing)
    while len(outcomes) < count:
        sim.runFor(spacing)
    return outcomes
