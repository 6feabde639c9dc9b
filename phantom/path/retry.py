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
around them, and only after C{keepEnds} failures with the same ends are they excluded too. An
aborting colluder then cannot make the owner trade an honest pair for another draw unless it
makes C{keepEnds} attempts in a row fail, which the fresh nodes around the ends make unlikely.
Kept ends outlive a build that gave up: the next build of that kind keeps them.
"""

KEEP_ENDS = 6
"""How many attempts in a row one pair of ends may fail before it is dropped."""


class Retries:
    """
    The ends an owner's next attempt keeps, and which nodes of a failed attempt it must not use.
    An owner keeps one for each kind of path, so that ends kept when a build gave up are kept by
    the next build (otherwise giving up the build would drop them); each build keeps its own
    set of excluded nodes.

    @param keepEnds: how many failed attempts in a row one pair of ends survives; 1 drops
        every node of a failed attempt at once (the old rule).
    @ivar ends: C{(x0, T)}, the records of the ends the next attempt keeps, or C{None}.
    """

    def __init__(self, keepEnds=KEEP_ENDS):
        if keepEnds < 1:
            raise ValueError(f"ends survive at least one attempt, not {keepEnds}")
        self.keepEnds = keepEnds
        self.ends = None
        self._failuresWithEnds = 0

    def succeeded(self):
        """An attempt built its path: no ends are kept any more."""
        self.ends = None
        self._failuresWithEnds = 0

    def failed(self, plan):
        """
        An attempt with C{plan} (a L{phantom.path.plan.PathPlan}) failed.

        @return: the node ids the build's next attempts must not use (they leave the node pool
            too): all of the circle's but the ends kept.
        """
        ends = (plan.adjacent, plan.terminating)
        if self.ends is not None and [r.nodeId for r in self.ends] == [r.nodeId for r in ends]:
            self._failuresWithEnds += 1
        else:
            self._failuresWithEnds = 1
        keepIds = set()
        if self._failuresWithEnds < self.keepEnds and len(plan.xNodes) > 1:
            self.ends = ends
            keepIds = {record.nodeId for record in ends}
        else:
            self.ends = None
        return [hop.record.nodeId for hop in plan.circle if hop.record.nodeId not in keepIds]

    def cannotKeepEnds(self):
        """Planning around the kept ends found too few nodes: the next attempt chooses anew."""
        self.ends = None
