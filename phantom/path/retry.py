"""
Which nodes a path build may use after a failed attempt, sans-io.

A node of the circle that gives up stays silent (paper §7.1.1 step 7), so the owner never learns
which node made an attempt fail. Excluding every node of a failed circle from the next attempt
(the old rule) hands colluders a lever: a colluder that aborts every build whose ends (x0 and
T) are not both colluders makes exactly those attempts fail, and the owner's retries draw new
ends until it gets a pair the colluders like. The simulation measures it (C{bench sim},
C{colluder_end_share}): with 10 % colluders and 15-node circles, 4 to 5 times the share of
colluder-ended paths that uniform choice gives.

The defence: the ends of a failed attempt are kept for the next attempts, with fresh nodes
around them, and each end is excluded too only after C{keepEnds} failed attempts that kept it.
An aborting colluder then cannot make the owner trade an honest end for another draw unless it
makes C{keepEnds} attempts in a row fail, which the fresh nodes around the ends make unlikely.
Kept ends outlive a build that gave up: the next build of that kind keeps them.

How long is long enough: an attempt with honest ends fails whenever one of the circle's other
nodes is an aborting colluder, so with a share f of them it gets through with probability
(1 - f) ** (size - 2) only (0.25 for 15-node circles at f = 0.1). A pair of ends with a
colluder at either end always fails and is dropped in the end, and a pair of colluders never
fails: every honest pair that is dropped too is a further draw towards the colluders. Six
attempts dropped 17 % of the honest pairs, and colluders got both ends of 1.5 to 1.6 times the paths
uniform choice gives them (C{bench sim}, 10,000 nodes). So C{keepEnds} is derived from the
circle (L{keepEndsFor}): enough attempts that a pair of honest ends gets through with
probability 0.95 against 10 % aborting colluders (11 for 15-node circles); what is left is the
1 / (1 - f) ** 2 that dropping the pairs with one colluding end gives (1.23 at f = 0.1).

What that costs: a kept end that is gone (its node died, its record still in the network
database) fails every attempt that keeps it, and the silent failure does not say who gave up.
So an end known to be gone is dropped at once, and the other end kept: known from what only
that end could have caused (x0 not making its link with the owner once round 2 came back
through it, L{phantom.path.owner}) or from the owner's own traffic with it (the network
database's last request to it failed, L{phantom.netdb.service.DhtNode.unanswered}). Neither
can be caused by a colluder for an honest node, short of making that node fail its own
requests, and neither asks anybody anything, which would show the owner to the end it asks
about.
"""

import math

ABORTING_SHARE = 0.1
"""The share of aborting colluders L{keepEndsFor} holds honest ends against."""
HONEST_SURVIVAL = 0.95
"""How likely a pair of honest ends is to get through before it is dropped (L{keepEndsFor})."""
MAX_KEEP_ENDS = 16
"""The most attempts a pair of ends is kept, whatever the circle (a kept end that is gone,
unknown to the owner, fails them all)."""


def keepEndsFor(size, colluders=ABORTING_SHARE, survival=HONEST_SURVIVAL, most=MAX_KEEP_ENDS):
    """
    How many failed attempts in a row a pair of ends is kept, for circles of C{size} nodes:
    enough that a pair of honest ends, whose attempt gets through when none of the other
    C{size - 2} nodes is an aborting colluder, gets through before it is dropped with
    probability C{survival}.

    @param size: the nodes of the circle, x + y.
    @param colluders: the share of aborting colluders held against.
    @param survival: the probability asked for.
    @param most: the bound on the result.
    @return: an integer from 1 to C{most}.
    """
    through = (1 - colluders) ** max(size - 2, 0)
    if through >= survival:
        return 1
    return min(most, math.ceil(math.log(1 - survival) / math.log(1 - through)))


KEEP_ENDS = keepEndsFor(15)
"""How many attempts in a row one pair of ends may fail before it is dropped, for the default
15-node circles (x = 3, y = 12)."""


class Retries:
    """
    The ends an owner's next attempt keeps, and which nodes of a failed attempt it must not use.
    An owner keeps one for each kind of path, so that ends kept when a build gave up are kept by
    the next build (otherwise giving up the build would drop them); each build keeps its own
    set of excluded nodes.

    @param keepEnds: how many failed attempts one end survives; 1 drops every node of a failed
        attempt at once (the old rule); C{None}: L{keepEndsFor} the failed attempt's circle.
    @ivar ends: C{(x0, T)}, the records of the ends the next attempt keeps (either C{None}: that
        end is chosen anew), or C{None} when it keeps neither.
    """

    def __init__(self, keepEnds=None):
        if keepEnds is not None and keepEnds < 1:
            raise ValueError(f"ends survive at least one attempt, not {keepEnds}")
        self.keepEnds = keepEnds
        self.ends = None
        self._failures = {}
        """Failed attempts each kept end has been in, by node id."""

    def succeeded(self):
        """An attempt built its path: no ends are kept any more."""
        self.ends = None
        self._failures = {}

    def failed(self, plan, gone=()):
        """
        An attempt with C{plan} (a L{phantom.path.plan.PathPlan}) failed.

        @param gone: node ids known to be gone (see the module docstring): an end among them
            is not kept.
        @return: the node ids the build's next attempts must not use (they leave the node pool
            too): all of the circle's but the ends kept.
        """
        ends = (plan.adjacent, plan.terminating)
        failures = {record.nodeId: self._failures.get(record.nodeId, 0) + 1 for record in ends}
        keepEnds = keepEndsFor(len(plan.circle)) if self.keepEnds is None else self.keepEnds
        kept = [
            record if len(plan.xNodes) > 1 and failures[record.nodeId] < keepEnds and record.nodeId not in gone else None
            for record in ends
        ]
        self._failures = {record.nodeId: failures[record.nodeId] for record in kept if record is not None}
        self.ends = tuple(kept) if self._failures else None
        return [hop.record.nodeId for hop in plan.circle if hop.record.nodeId not in self._failures]

    @property
    def keptIds(self):
        """The node ids of the ends kept."""
        return list(self._failures)

    def gone(self, nodeIds):
        """The nodes C{nodeIds} are known to be gone: those of them kept are kept no more."""
        if not set(nodeIds) & set(self._failures):
            return
        self._failures = {nodeId: count for nodeId, count in self._failures.items() if nodeId not in nodeIds}
        kept = tuple(record if record is not None and record.nodeId in self._failures else None for record in self.ends)
        self.ends = kept if self._failures else None

    def cannotKeepEnds(self):
        """Planning around the kept ends found too few nodes: the next attempt chooses anew."""
        self.ends = None
        self._failures = {}
