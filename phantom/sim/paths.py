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


def scheduleBuilds(sim, owners, count, span, kind=PathKind.EXIT):
    """
    Have C{owners} (L{phantom.sim.network.SimNode}s with path services) start C{count} builds
    between them, at random times over the next C{span} seconds; each path is taken down once
    built.

    @return: a list that gets C{(owner, built, attempts)} as each build ends: whether it gave a
        path, and how many attempts it made.
    """
    outcomes = []
    rng = sim.random

    def one(owner):
        d = Deferred.fromCoroutine(owner.paths.build(kind))

        def built(path):
            outcomes.append((owner, True, len(path.failures) + 1))
            owner.paths.retire(path)

        def failed(failure):
            failure.trap(PathFailed)
            outcomes.append((owner, False, owner.paths.settings.attempts))

        d.addCallbacks(built, failed)

    for number in range(count):
        sim.clock.callLater(rng.uniform(0, span), one, owners[number % len(owners)])
    return outcomes
