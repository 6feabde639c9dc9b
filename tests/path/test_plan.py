"""
Path planning: the shapes refused, the layout rules of paper §7.1.1 step 3 on every layout,
where T and x0 sit, and the choice of nodes (distinct, excluded, diverse).

The rules are checked here by L{ruleBreaches}, written apart from the code under test.
"""

import itertools
import random
from collections import Counter

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.netdb.records import NodeRecord
from phantom.path.plan import (
    DEFAULT_X,
    DEFAULT_Y,
    ENTRY,
    EXIT,
    MAX_PATH_NODES,
    OWNER,
    T,
    X,
    Y,
    Hop,
    Layout,
    NotEnoughNetworks,
    NotEnoughNodes,
    PathPlan,
    PathShape,
    diversityNetwork,
    layOut,
    minimumY,
    planPath,
    spelled,
)
from phantom.wire.path import Role

SHAPES = [PathShape(x, y) for x in range(1, 9) for y in range(minimumY(x), minimumY(x) + 11)]
"""Every valid shape with 1 to 8 X-nodes and up to 10 surplus Y-nodes."""


def roles(letters):
    """The roles C{letters} spell, e.g. C{roles("YXY")}."""
    return tuple(Role[letter] for letter in letters)


def ruleBreaches(roles, reversed, x, y):
    """
    The layout rules C{roles} breaks, as text; empty when it obeys them all.

    @param roles: the sequence, in the order the arrays visit it.
    @param reversed: C{True} when the Y block should come first.
    """
    sequence = spelled(roles)
    breaches = []
    if sequence.count("X") != x or sequence.count("Y") != y or len(sequence) != x + y:
        breaches.append(f"counts: {sequence} is not {x} X and {y} Y")
    if "XX" in sequence:
        breaches.append(f"adjacent X-nodes in {sequence}")
    singleFirst = sequence[::-1] if reversed else sequence
    if not singleFirst.startswith("YX"):
        breaches.append(f"no single Y at the {'end' if reversed else 'start'} of {sequence}")
    block = len(singleFirst) - len(singleFirst.rstrip("Y"))
    if block < max(x - 1, 1):
        breaches.append(f"block of {block} < max(x - 1, 1) in {sequence}")
    return breaches


def bruteForceMinimumY(x):
    """The fewest Y-nodes with which some sequence of C{x} X-nodes obeys the rules."""
    for y in itertools.count():
        for xPositions in itertools.combinations(range(x + y), x):
            sequence = [X if i in xPositions else Y for i in range(x + y)]
            if not ruleBreaches(sequence, False, x, y):
                return y


def record(number, host=None):
    """A node record for node C{number}, by default alone in its /16 (10.n.0.1 for n < 250)."""
    return NodeRecord(
        nodeId=number.to_bytes(32, "big"),
        host=host or f"{10 + number // 250}.{number % 250}.0.1",
        port=7402,
        communicationKey=bytes(32),
        pathBuildingKey=bytes(32),
        timestamp=0,
        encoded=b"",
    )


def numberOf(nodeRecord):
    return int.from_bytes(nodeRecord.nodeId, "big")


def inNetworks(prefixes, perNetwork, start=0):
    """C{perNetwork} records in each IPv4 /16 C{prefix} (e.g. "10.1"), numbered from C{start}."""
    records = []
    number = start
    for prefix in prefixes:
        for host in range(perNetwork):
            records.append(record(number, f"{prefix}.{host // 200}.{host % 200 + 1}"))
            number += 1
    return records


class ShapeTests(SynchronousTestCase):
    """L{PathShape} and L{minimumY}."""

    def test_defaults(self):
        shape = PathShape()
        self.assertEqual((shape.x, shape.y), (3, 12))
        self.assertEqual((DEFAULT_X, DEFAULT_Y), (3, 12))
        self.assertEqual(shape.size, 15)
        self.assertEqual(shape.surplus, 7)

    def test_formula(self):
        """max(2x - 1, 2): 2 for one X-node, then 2x - 1."""
        self.assertEqual([minimumY(x) for x in range(1, 7)], [2, 3, 5, 7, 9, 11])

    def test_formulaIsExact(self):
        """
        For each x, some sequence with L{minimumY} Y-nodes obeys the rules and none with one
        fewer does: the formula is neither too strict nor too lax.
        """
        for x in range(1, 7):
            self.assertEqual(bruteForceMinimumY(x), minimumY(x), f"x={x}")

    def test_minimumAccepted(self):
        for x in range(1, 34):
            self.assertEqual(PathShape(x, minimumY(x)).surplus, 0)

    def test_tooFewYRefusedNamingTheFormula(self):
        for x in range(1, 20):
            y = minimumY(x) - 1
            with self.assertRaises(ValueError) as caught:
                PathShape(x, y)
            message = str(caught.exception)
            self.assertIn("max(2x - 1, 2)", message)
            self.assertIn(f"= {minimumY(x)} Y-nodes", message)
            self.assertIn(f"not y={y}", message)

    def test_noXRefused(self):
        for x in (0, -1):
            self.assertRaises(ValueError, PathShape, x, 12)
            self.assertRaises(ValueError, minimumY, x)

    def test_sizeBounded(self):
        self.assertEqual(PathShape(20, MAX_PATH_NODES - 20).size, MAX_PATH_NODES)
        with self.assertRaises(ValueError) as caught:
            PathShape(20, MAX_PATH_NODES - 19)
        self.assertIn(str(MAX_PATH_NODES), str(caught.exception))
        # 33 X-nodes need 65 Y-nodes (98 in all); 34 would need 101 nodes.
        PathShape(33, 65)
        self.assertRaises(ValueError, PathShape, 34, 67)

    def test_notIntegersRefused(self):
        for x, y in ((3.0, 12), (3, "12"), (True, 12), (3, None)):
            self.assertRaises(TypeError, PathShape, x, y)

    def test_frozen(self):
        shape = PathShape()
        with self.assertRaises(AttributeError):
            shape.x = 5


class LayOutTests(SynchronousTestCase):
    """L{layOut} and L{Layout}."""

    def test_everyShapeManySeeds(self):
        """
        For every shape in L{SHAPES} and 60 seeds the layout obeys every rule; both directions
        occur, and with surplus Y-nodes to place (and somewhere to choose from) the placement
        varies within one direction.
        """
        for shape in SHAPES:
            directions = set()
            sequences = {False: set(), True: set()}
            for seed in range(60):
                layout = layOut(shape, random.Random(seed))
                self.assertEqual(ruleBreaches(layout.roles, layout.reversed, shape.x, shape.y), [], f"{shape} seed {seed}")
                self.assertEqual(layout.shape, shape)
                directions.add(layout.reversed)
                sequences[layout.reversed].add(layout.roles)
            self.assertEqual(directions, {False, True}, shape)
            if shape.x > 1 and shape.surplus > 0:
                for direction, seen in sequences.items():
                    self.assertGreater(len(seen), 1, f"{shape} reversed={direction}")

    @settings(max_examples=400)
    @given(st.integers(1, 33), st.integers(0, MAX_PATH_NODES), st.integers(0, 2**64))
    def test_anyShape(self, x, extra, seed):
        y = min(minimumY(x) + extra, MAX_PATH_NODES - x)
        layout = layOut(PathShape(x, y), random.Random(seed))
        self.assertEqual(ruleBreaches(layout.roles, layout.reversed, x, y), [])

    def test_blockAndSingleEnds(self):
        """Not reversed, the sequence starts with the single Y; reversed, it ends with it."""
        shape = PathShape(3, 12)
        for seed in range(50):
            layout = layOut(shape, random.Random(seed))
            singleFirst = layout.roles[::-1] if layout.reversed else layout.roles
            self.assertEqual(singleFirst[:2], (Y, X))
            self.assertEqual(singleFirst[-2:], (Y, Y))

    def test_oneXNode(self):
        """With x = 1 the only X has a single Y on one side and all the rest on the other."""
        for seed in range(20):
            layout = layOut(PathShape(1, 6), random.Random(seed))
            expected = (Y, X) + (Y,) * 5
            self.assertEqual(layout.roles, expected[::-1] if layout.reversed else expected)
            self.assertEqual(len(layout.outwardXPositions), 1)

    def test_minimumIsFixed(self):
        """With no surplus there is one layout per direction."""
        seen = {layOut(PathShape(3, 5), random.Random(seed)) for seed in range(40)}
        expected = {(roles("YXYXYXYY"), False), (roles("YYXYXYXY"), True)}
        self.assertEqual({(layout.roles, layout.reversed) for layout in seen}, expected)

    def test_deterministicGivenTheSource(self):
        """Only the injected source is used: the same seed gives the same layout."""
        for seed in range(20):
            self.assertEqual(layOut(PathShape(), random.Random(seed)), layOut(PathShape(), random.Random(seed)))

    def test_systemRandom(self):
        layout = layOut(PathShape(), random.SystemRandom())
        self.assertEqual(ruleBreaches(layout.roles, layout.reversed, 3, 12), [])

    def test_directionRoughlyHalf(self):
        """10,000 layouts: about half reversed (the bounds are 10 standard deviations wide)."""
        source = random.Random(2008)
        reversedCount = sum(layOut(PathShape(), source).reversed for _ in range(10_000))
        self.assertTrue(4_500 < reversedCount < 5_500, reversedCount)

    def test_surplusNotBiased(self):
        """
        The surplus Y-nodes go to each place (the gaps and the block) equally often on average,
        and every layout the rules allow for a direction turns up about equally often.
        """
        shape = PathShape(4, 7 + 8)
        source = random.Random(16)
        totals = [0] * shape.x
        runs = 4_000
        for _ in range(runs):
            layout = layOut(shape, source)
            singleFirst = layout.roles[::-1] if layout.reversed else layout.roles
            runLengths = [len(run) for run in spelled(singleFirst).split("X")]
            self.assertEqual(runLengths[0], 1)
            gaps, block = runLengths[1:-1], runLengths[-1]
            extras = [gap - 1 for gap in gaps] + [block - (shape.x - 1)]
            self.assertEqual(sum(extras), shape.surplus)
            for place, extra in enumerate(extras):
                totals[place] += extra
        mean = shape.surplus / shape.x
        for place, total in enumerate(totals):
            self.assertTrue(0.85 * mean < total / runs < 1.15 * mean, (place, total / runs, mean))

        # x = 3 with 2 surplus: C(4, 2) = 6 layouts per direction, each expected 500 times in 6,000.
        small = PathShape(3, 7)
        counts = Counter(layOut(small, source) for _ in range(6_000))
        self.assertEqual(len(counts), 12)
        for layout, count in counts.items():
            self.assertTrue(350 < count < 650, (layout, count))

    def test_layoutRefusesBrokenSequences(self):
        for sequence, reversed in [
            (roles("YXXYY"), False),  # adjacent X
            (roles("YYXYXYY"), False),  # two Y at the single end
            (roles("YXYXYXY"), False),  # block of 1 with 3 X-nodes
            (roles("YXYXYXYY"), True),  # the block is at the wrong end for a reversed layout
            (roles("YYYY"), False),  # no X
            ((Y, X, "Z", Y, Y), False),  # unknown role
            (tuple("YXYXYXYY"), False),  # letters, not roles
            (roles("YXYTYXYY"), False),  # T is not a layout's role
        ]:
            self.assertRaises(ValueError, Layout, sequence, reversed)
        Layout(roles("YXYXYXYY"), False)
        Layout(roles("YYXYXYXY"), True)


def planFor(seed, shape=PathShape(), kind=EXIT, candidates=None, **kwargs):
    candidates = candidates if candidates is not None else [record(n) for n in range(40)]
    return planPath(shape, kind, candidates, random.Random(seed), **kwargs)


class PlanPathTests(SynchronousTestCase):
    """L{planPath}: which nodes are chosen."""

    def test_distinctNodesFromTheCandidates(self):
        candidates = [record(n) for n in range(40)]
        for seed in range(50):
            plan = planFor(seed, candidates=candidates)
            chosen = [hop.record for hop in plan.circle]
            self.assertEqual(len(chosen), 15)
            self.assertEqual(len({r.nodeId for r in chosen}), 15)
            self.assertTrue(set(chosen) <= set(candidates))
            self.assertEqual(len(plan.xNodes), 3)
            self.assertEqual(len(plan.yNodes), 12)
            self.assertEqual(Counter(plan.roles), {X: 2, T: 1, Y: 12})
            self.assertEqual(ruleBreaches(plan.layout.roles, plan.reversed, 3, 12), [])
            self.assertEqual(plan.kind, EXIT)

    def test_everyCandidateCanBeChosen(self):
        candidates = [record(n) for n in range(30)]
        asX, asY = set(), set()
        for seed in range(200):
            plan = planFor(seed, candidates=candidates)
            asX.update(numberOf(r) for r in plan.xNodes)
            asY.update(numberOf(r) for r in plan.yNodes)
        self.assertEqual(asX, set(range(30)))
        self.assertEqual(asY, set(range(30)))

    def test_duplicatesCountOnce(self):
        candidates = [record(n) for n in range(10)] * 3
        with self.assertRaises(NotEnoughNodes) as caught:
            planFor(0, candidates=candidates)
        self.assertIn("needs 15 distinct nodes", str(caught.exception))
        self.assertIn("only 10 of the 30 candidates", str(caught.exception))
        plan = planFor(0, shape=PathShape(3, 7), candidates=candidates)
        self.assertEqual(len({hop.record.nodeId for hop in plan.circle}), 10)

    def test_exactlyEnough(self):
        candidates = [record(n) for n in range(15)]
        plan = planFor(1, candidates=candidates)
        self.assertEqual({numberOf(hop.record) for hop in plan.circle}, set(range(15)))
        self.assertRaises(NotEnoughNodes, planFor, 1, candidates=candidates[:14])
        self.assertRaises(NotEnoughNodes, planFor, 1, candidates=[])

    @given(st.sets(st.integers(0, 39), max_size=30), st.integers(0, 2**32))
    def test_exclusions(self, excluded, seed):
        """Excluded ids are never chosen; too many exclusions leave too few nodes."""
        excludedIds = {n.to_bytes(32, "big") for n in excluded}
        if 40 - len(excluded) < 15:
            self.assertRaises(NotEnoughNodes, planFor, seed, exclude=excludedIds)
            return
        plan = planFor(seed, exclude=excludedIds)
        self.assertFalse({hop.record.nodeId for hop in plan.circle} & excludedIds)

    def test_diversity(self):
        """No two X-nodes in one /16; Y-nodes are free."""
        candidates = inNetworks(["10.1", "10.2", "10.3", "10.4"], 10)
        ySharing = False
        for seed in range(100):
            plan = planFor(seed, shape=PathShape(4, 12), candidates=candidates)
            xNetworks = {diversityNetwork(r.host) for r in plan.xNodes}
            self.assertEqual(len(xNetworks), 4)
            yNetworks = [diversityNetwork(r.host) for r in plan.yNodes]
            ySharing = ySharing or len(set(yNetworks)) < len(yNetworks)
        self.assertTrue(ySharing)

    def test_xNodesChosenFirst(self):
        """
        Three lone nodes in their own /16s and 20 in one /16: a path of 4 X-nodes needs all
        four networks, so the lone nodes are always X-nodes, never used up as Y-nodes.
        """
        lone = inNetworks(["10.1", "10.2", "10.3"], 1)
        crowd = inNetworks(["10.9"], 20, start=100)
        for seed in range(50):
            plan = planFor(seed, shape=PathShape(4, 12), candidates=crowd + lone)
            self.assertTrue(set(lone) <= set(plan.xNodes))

    def test_notEnoughNetworks(self):
        candidates = inNetworks(["10.1", "10.2", "10.3"], 10)
        with self.assertRaises(NotEnoughNetworks) as caught:
            planFor(0, shape=PathShape(4, 12), candidates=candidates)
        self.assertIsInstance(caught.exception, NotEnoughNodes)
        self.assertIn("only 3", str(caught.exception))
        self.assertIn("diversity", str(caught.exception))
        plan = planFor(0, shape=PathShape(4, 12), candidates=candidates, diversity=False)
        self.assertEqual(len(plan.xNodes), 4)

    def test_loopbackTestnet(self):
        """Every node on 127.0.0.x is in one /16: only diversity=False (or x = 1) plans a path."""
        candidates = [record(n, f"127.0.0.{n + 2}") for n in range(30)]
        self.assertRaises(NotEnoughNetworks, planFor, 0, candidates=candidates)
        planFor(0, candidates=candidates, diversity=False)
        planFor(0, shape=PathShape(1, 12), candidates=candidates)

    def test_tooFewNodesBeforeNetworks(self):
        """With too few nodes the complaint is the count, whatever the networks."""
        candidates = [record(n, "127.0.0.1") for n in range(5)]
        with self.assertRaises(NotEnoughNodes) as caught:
            planFor(0, candidates=candidates)
        self.assertNotIsInstance(caught.exception, NotEnoughNetworks)

    def test_diversityNetworks(self):
        same = [
            ("10.1.0.1", "10.1.255.254"),
            ("10.1.0.1", "::ffff:10.1.7.7"),
            ("2001:db8:1::1", "2001:db8:1:ffff::1"),
        ]
        different = [
            ("10.1.0.1", "10.2.0.1"),
            ("2001:db8:1::1", "2001:db8:2::1"),
            ("10.1.0.1", "2001:db8:1::1"),
        ]
        for a, b in same:
            self.assertEqual(diversityNetwork(a), diversityNetwork(b), (a, b))
        for a, b in different:
            self.assertNotEqual(diversityNetwork(a), diversityNetwork(b), (a, b))
        self.assertRaises(ValueError, diversityNetwork, "node.example")

    def test_ipv6Diversity(self):
        candidates = [record(n, f"2001:db8:{n % 2}::{n + 1:x}") for n in range(20)]
        self.assertRaises(NotEnoughNetworks, planFor, 0, candidates=candidates)
        plan = planFor(0, shape=PathShape(2, 10), candidates=candidates)
        self.assertEqual(len({diversityNetwork(r.host) for r in plan.xNodes}), 2)

    def test_kind(self):
        self.assertEqual(planFor(0, kind=ENTRY).kind, ENTRY)
        self.assertRaises(ValueError, planFor, 0, kind="both")


class PlacesTests(SynchronousTestCase):
    """Where T and x0 sit, and who learns of whom (module docstring, paper step 11.14)."""

    def plans(self, shape=PathShape(), seeds=range(60)):
        plans = [planFor(seed, shape=shape) for seed in seeds]
        self.assertEqual({plan.reversed for plan in plans}, {False, True})
        return plans

    def test_terminatingNextToTheBlock(self):
        """
        T is the X-node next to the Y block, x0 the one next to the single Y; between T and the
        owner, on the block side, there are at least x - 1 nodes.
        """
        for shape in (PathShape(1, 4), PathShape(2, 5), PathShape(), PathShape(5, 20)):
            for plan in self.plans(shape):
                roles = spelled(plan.roles)
                xIndices = [i for i, role in enumerate(roles) if role in "XT"]
                if plan.reversed:
                    self.assertTrue(roles.endswith("Y"))
                    tIndex, x0Index = xIndices[0], xIndices[-1]
                    self.assertEqual(x0Index, len(roles) - 2)
                    blockSide = tIndex
                else:
                    self.assertTrue(roles.startswith("Y"))
                    tIndex, x0Index = xIndices[-1], xIndices[0]
                    self.assertEqual(x0Index, 1)
                    blockSide = len(roles) - 1 - tIndex
                self.assertEqual(roles[tIndex], "T")
                self.assertEqual(roles.count("T"), 1)
                self.assertGreaterEqual(blockSide, shape.x - 1)
                self.assertEqual(plan.terminating, plan.circle[tIndex].record)
                self.assertEqual(plan.adjacent, plan.circle[x0Index].record)
                self.assertEqual(plan.xNodes[0], plan.adjacent)
                self.assertEqual(plan.xNodes[-1], plan.terminating)

    def test_xNodesOutwards(self):
        """L{PathPlan.xNodes} runs from x0 to T: circle order, or its reverse when reversed."""
        for plan in self.plans():
            inCircleOrder = tuple(hop.record for hop in plan.circle if hop.role != Y)
            expected = inCircleOrder[::-1] if plan.reversed else inCircleOrder
            self.assertEqual(plan.xNodes, expected)

    def test_rewired(self):
        """
        Not reversed: x0's new previous is the owner and T's new next is all zero. Reversed:
        T's new previous is all zero (no new incoming connection) and x0's new next is the owner.
        """
        for plan in self.plans(PathShape(4, 10)):
            x0, x1, x2, t = plan.xNodes
            rewired = {numberOf(r): plan.rewired(r) for r in plan.xNodes}
            if plan.reversed:
                expected = {t: (None, x2), x2: (t, x1), x1: (x2, x0), x0: (x1, OWNER)}
            else:
                expected = {x0: (OWNER, x1), x1: (x0, x2), x2: (x1, t), t: (x2, None)}
            self.assertEqual(rewired, {numberOf(r): pair for r, pair in expected.items()})
            self.assertRaises(ValueError, plan.rewired, plan.yNodes[0])

    def test_onlyX0LearnsTheOwner(self):
        for shape in (PathShape(1, 2), PathShape(2, 3), PathShape()):
            for plan in self.plans(shape):
                knowsOwner = [r for r in plan.xNodes if OWNER in plan.rewired(r)]
                self.assertEqual(knowsOwner, [plan.adjacent])
                zero = [r for r in plan.xNodes if None in plan.rewired(r)]
                self.assertEqual(zero, [plan.terminating])

    def test_oneXNode(self):
        """With x = 1, T is x0: it connects to the owner, or the owner to it."""
        for plan in self.plans(PathShape(1, 2)):
            self.assertEqual(plan.roles, (Y, T, Y))
            self.assertEqual(plan.adjacent, plan.terminating)
            expected = (None, OWNER) if plan.reversed else (OWNER, None)
            self.assertEqual(plan.rewired(plan.terminating), expected)

    def test_circleNeighbours(self):
        plan = planFor(3)
        records = [hop.record for hop in plan.circle]
        self.assertEqual(plan.neighbours(records[0]), (OWNER, records[1]))
        self.assertEqual(plan.neighbours(records[5]), (records[4], records[6]))
        self.assertEqual(plan.neighbours(records[-1]), (records[-2], OWNER))
        self.assertRaises(ValueError, plan.neighbours, record(999))


class PathPlanTests(SynchronousTestCase):
    """L{PathPlan} refuses plans that break the rules."""

    layout = Layout(roles("YXYXYXYY"), False)

    def test_arrange(self):
        xs = [record(n) for n in range(3)]
        ys = [record(n) for n in range(10, 15)]
        plan = PathPlan.arrange(EXIT, self.layout, xs, ys)
        self.assertEqual(plan.roles, roles("YXYXYTYY"))
        self.assertEqual(plan.xNodes, tuple(xs))
        self.assertEqual(plan.yNodes, tuple(ys))
        reversedPlan = PathPlan.arrange(EXIT, Layout(roles("YYXYXYXY"), True), xs, ys)
        self.assertEqual(reversedPlan.roles, roles("YYTYXYXY"))
        self.assertEqual(reversedPlan.xNodes, tuple(xs))
        self.assertEqual([hop.record for hop in reversedPlan.circle if hop.role != Y], xs[::-1])

    def test_wrongCounts(self):
        xs = [record(n) for n in range(3)]
        ys = [record(n) for n in range(10, 15)]
        self.assertRaises(ValueError, PathPlan.arrange, EXIT, self.layout, xs[:2], ys)
        self.assertRaises(ValueError, PathPlan.arrange, EXIT, self.layout, xs, ys + [record(20)])

    def test_misplacedT(self):
        hops = [Hop(record(n), role) for n, role in enumerate(roles("YTYXYXYY"))]
        self.assertRaises(ValueError, PathPlan, EXIT, False, tuple(hops))
        hops = [Hop(record(n), role) for n, role in enumerate(roles("YXYXYXYY"))]
        self.assertRaises(ValueError, PathPlan, EXIT, False, tuple(hops))
        hops = [Hop(record(n), role) for n, role in enumerate(roles("YXYXYTYY"))]
        PathPlan(EXIT, False, tuple(hops))

    def test_repeatedNode(self):
        hops = [Hop(record(n % 7), role) for n, role in enumerate(roles("YXYXYTYY"))]
        self.assertRaises(ValueError, PathPlan, EXIT, False, tuple(hops))

    def test_unknownRoleOrKind(self):
        hops = [Hop(record(n), role) for n, role in enumerate(roles("YXYXYTY") + ("Z",))]
        self.assertRaises(ValueError, PathPlan, EXIT, False, tuple(hops))
        hops = [Hop(record(n), role) for n, role in enumerate("YXYXYTYY")]
        self.assertRaises(ValueError, PathPlan, EXIT, False, tuple(hops))
        hops = [Hop(record(n), role) for n, role in enumerate(roles("YXYXYTYY"))]
        self.assertRaises(ValueError, PathPlan, "exits", False, tuple(hops))
