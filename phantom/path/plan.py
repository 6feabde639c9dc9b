"""
Routing-path planning, sans-io: which nodes take part in a path, and in what order the setup
arrays visit them (paper §7.1.1 steps 1-3).

The owner picks x X-nodes, which stay in the finished path, and y Y-nodes, which only help to
build it, and lays them out on a circle that starts and ends at the owner. The layout obeys
the paper's rules:

  - no two X-nodes are adjacent, so no X-node meets a final neighbour during setup;
  - one end of the sequence is a single Y-node;
  - the other end is a block of at least max(x - 1, 1) Y-nodes, so that during setup the owner
    is never closer to the terminating X-node T than it will be in the finished path (x - 1
    nodes in between);
  - which end comes first is chosen at random, so the direction the setup arrays travel does
    not tell where the owner is.

Hence the fewest Y-nodes a path of x X-nodes can have (L{minimumY}):

    (x - 1)            one Y in each gap between two X-nodes
  + 1                  the single Y at one end
  + max(x - 1, 1)      the Y block at the other end
  = max(2x - 1, 2)     (2 for x = 1, 2x - 1 from x = 2 on)

Y-nodes beyond that minimum (the surplus) go into the gaps between X-nodes and into the block,
never to the single-Y end. Every layout the rules allow for a given direction is equally likely
(L{layOut}).

T, the terminating X-node (exit node of an exit path, entry node of an entry path), is the
X-node next to the Y block; x0, the X-node next to the owner in the finished path, is the one
next to the single Y. With x = 3 (x0, x1, T) and the fewest Y-nodes::

  not reversed: the single Y first, the Y block last

    owner -> Y -> x0 -> Y -> x1 -> Y -> T -> Y -> Y -> owner
             |                             '----.---'
          single                          block >= x - 1

  reversed: the Y block first, the single Y last

    owner -> Y -> Y -> T -> Y -> x1 -> Y -> x0 -> Y -> owner
             '--.---'                             |
        block >= x - 1                          single

  finished path, either way:   owner -- x0 -- x1 -- T

Both rounds travel the circle in the same direction (arrows above). In round 2 every X-node
learns its neighbours in the finished path, named as the arrays travel (L{PathPlan.rewired}):

  - not reversed: the owner connects to x0 (x0's new previous is the owner), x0 to x1, x1 to
    T; T's new next is all zero.
  - reversed: T's new previous is all zero, so T expects no new incoming connection (paper
    step 11.14: "the half of cases where the sequence starts with the Y block, and there T is
    at the very end"); T connects to x1, x1 to x0, and x0 to the owner (x0's new next is the
    owner).

Either way only x0 ever learns the owner's address, and the owner never connects to T unless
T is x0 (x = 1, where T is the only X-node).

Diversity: by default no two X-nodes of a path share an IPv4 /16 or an IPv6 /48
(L{diversityNetwork}); Y-nodes are free. L{planPath} never relaxes that rule by itself: it
raises L{NotEnoughNetworks}, and the caller plans again with C{diversity=False} only when its
configuration says so (a testnet on 127.0.0.x has every node in one /16), and says that it did.

Randomness is passed in: a C{random.Random}-like object with C{shuffle}, C{sample} and
C{getrandbits}; nodes pass C{random.SystemRandom()}, tests a seeded C{random.Random}.
"""

import ipaddress
from dataclasses import dataclass

from phantom.path.interfaces import PathKind
from phantom.wire.path import Role

X = Role.X
"""An intermediate X-node: it stays in the finished path."""
Y = Role.Y
"""A Y-node: it helps to build the path and is dropped after round 2."""
T = Role.T
"""The terminating X-node: the X-node farthest from the owner in the finished path."""

EXIT = PathKind.EXIT
ENTRY = PathKind.ENTRY
PATH_KINDS = tuple(PathKind)

DEFAULT_X = 3
DEFAULT_Y = 12
MAX_PATH_NODES = 100
"""The most nodes (x + y) one path may use, so setup arrays stay bounded."""

IPV4_DIVERSITY_PREFIX = 16
IPV6_DIVERSITY_PREFIX = 48


class _Owner:
    """The path's owner, where a neighbour on the circle is the owner itself."""

    def __repr__(self):
        return "OWNER"


OWNER = _Owner()
"""Stands for the owner among the neighbours L{PathPlan.neighbours} and L{PathPlan.rewired} name."""


class NotEnoughNodes(Exception):
    """The candidates cannot fill a path of the shape asked for; the message says why."""


class NotEnoughNetworks(NotEnoughNodes):
    """
    There are enough candidates, but not in enough distinct networks for the X-nodes to obey
    the diversity rule. Planning again with C{diversity=False} would succeed.
    """


def minimumY(x):
    """
    The fewest Y-nodes a path of C{x} X-nodes needs: one in each of the x - 1 gaps between
    X-nodes, one single Y at one end and a block of max(x - 1, 1) at the other, that is
    max(2x - 1, 2).

    @param x: the number of X-nodes, at least 1.
    @return: the minimum number of Y-nodes.
    @raise ValueError: C{x} is less than 1.
    """
    if x < 1:
        raise ValueError(f"a path needs at least one X-node, not x={x}")
    return (x - 1) + 1 + blockMinimum(x)


def blockMinimum(x):
    """
    The fewest Y-nodes in the block at one end of the sequence: x - 1 and at least one.

    @param x: the number of X-nodes, at least 1.
    """
    return max(x - 1, 1)


@dataclass(frozen=True)
class PathShape:
    """
    How many X- and Y-nodes a path has; refuses counts the layout rules cannot satisfy.

    @ivar x: the number of X-nodes, at least 1 (with 1, T is the only X-node).
    @ivar y: the number of Y-nodes, at least L{minimumY}C{(x)}.
    """

    x: int = DEFAULT_X
    y: int = DEFAULT_Y

    def __post_init__(self):
        """
        @raise TypeError: C{x} or C{y} is not an integer.
        @raise ValueError: the counts break a layout rule or exceed L{MAX_PATH_NODES}.
        """
        for name, count in (("x", self.x), ("y", self.y)):
            if not isinstance(count, int) or isinstance(count, bool):
                raise TypeError(f"{name} must be an integer, not {count!r}")
        if self.x < 1:
            raise ValueError(f"a path needs at least one X-node, not x={self.x}")
        needed = minimumY(self.x)
        if self.y < needed:
            raise ValueError(
                f"a path of x={self.x} X-nodes needs at least y = max(2x - 1, 2) = {needed} Y-nodes"
                f" (x - 1 = {self.x - 1} between the X-nodes, 1 single at one end and"
                f" max(x - 1, 1) = {blockMinimum(self.x)} in the block at the other), not y={self.y}"
            )
        if self.x + self.y > MAX_PATH_NODES:
            raise ValueError(f"a path uses at most {MAX_PATH_NODES} nodes, not x + y = {self.x + self.y}")

    @property
    def size(self):
        """How many nodes the path uses: x + y."""
        return self.x + self.y

    @property
    def surplus(self):
        """How many Y-nodes the path has beyond L{minimumY}."""
        return self.y - minimumY(self.x)


@dataclass(frozen=True)
class Layout:
    """
    The roles along the circle, in the order the setup arrays visit them: owner, C{roles[0]},
    ..., C{roles[-1]}, owner. Refuses a sequence the layout rules forbid.

    @ivar roles: a tuple of L{X} and L{Y} (L{Role} members).
    @ivar reversed: C{True} when the Y block comes first and the single Y last; C{False} when
        the single Y comes first.
    """

    roles: tuple
    reversed: bool

    def __post_init__(self):
        """
        @raise ValueError: C{roles} breaks a layout rule.
        """
        roles = tuple(self.roles)
        object.__setattr__(self, "roles", roles)
        unknown = set(roles) - {X, Y}
        if unknown:
            raise ValueError(f"a layout holds only X and Y, not {sorted(map(repr, unknown))}")
        x = roles.count(X)
        if x < 1:
            raise ValueError("a layout needs at least one X-node")
        if any(roles[i] == roles[i + 1] == X for i in range(len(roles) - 1)):
            raise ValueError(f"two X-nodes are adjacent in {spelled(roles)}")
        block, single = self._ends()
        if single != 1:
            raise ValueError(f"the single-Y end of {spelled(roles)} has {single} Y-nodes, not 1")
        if block < blockMinimum(x):
            raise ValueError(f"the Y block of {spelled(roles)} has {block} Y-nodes, fewer than {blockMinimum(x)}")

    def _ends(self):
        """How many Y-nodes lead up to the first X-node from each end: C{(block, single)}."""
        fromStart = self.roles.index(X)
        fromEnd = self.roles[::-1].index(X)
        return (fromStart, fromEnd) if self.reversed else (fromEnd, fromStart)

    @property
    def shape(self):
        """The L{PathShape} of this layout."""
        return PathShape(self.roles.count(X), self.roles.count(Y))

    @property
    def xPositions(self):
        """The indices of the X-nodes in L{roles}, in circle order."""
        return tuple(index for index, role in enumerate(self.roles) if role == X)

    @property
    def outwardXPositions(self):
        """
        The indices of the X-nodes in L{roles} in the order of the finished path from the owner
        outwards: x0 (next to the single Y) first, T (next to the Y block) last.
        """
        positions = self.xPositions
        return positions[::-1] if self.reversed else positions


def spelled(roles):
    """C{roles} as letters, e.g. C{"YXYXYY"}."""
    return "".join(role.name for role in roles)


def layOut(shape, random):
    """
    A random layout for C{shape}: the surplus Y-nodes spread over the x - 1 gaps and the block
    so that every layout the rules allow is equally likely (the gap sizes are a uniformly
    random composition, drawn as bar positions with C{random.sample}), and the direction
    chosen by one random bit.

    @param shape: a L{PathShape}.
    @param random: a C{random.Random}-like object; C{random.SystemRandom()} in production.
    @return: a L{Layout}.
    """
    places = shape.x  # the x - 1 gaps between X-nodes, and the block
    slots = shape.surplus + places - 1
    bars = sorted(random.sample(range(slots), places - 1)) + [slots]
    extras = []
    previousBar = -1
    for bar in bars:
        extras.append(bar - previousBar - 1)
        previousBar = bar
    roles = [Y, X]
    for gapExtra in extras[:-1]:
        roles += [Y] * (1 + gapExtra) + [X]
    roles += [Y] * (blockMinimum(shape.x) + extras[-1])
    blockFirst = bool(random.getrandbits(1))
    if blockFirst:
        roles.reverse()
    return Layout(tuple(roles), blockFirst)


@dataclass(frozen=True)
class Hop:
    """
    One node on the circle and its role there.

    @ivar record: the node's L{phantom.netdb.records.NodeRecord}.
    @ivar role: L{X}, L{Y} or L{T}.
    """

    record: object
    role: Role


@dataclass(frozen=True)
class PathPlan:
    """
    Everything decided about one path before its setup packages are built.

    @ivar kind: L{EXIT} or L{ENTRY}.
    @ivar reversed: as in L{Layout}: C{True} when the circle runs through the Y block first.
    @ivar circle: the L{Hop}s in the order the setup arrays visit them: the owner sends to
        C{circle[0]}, and C{circle[-1]} sends back to the owner.
    """

    kind: PathKind
    reversed: bool
    circle: tuple

    def __post_init__(self):
        """
        @raise ValueError: the kind is unknown, the roles break a layout rule, T is not the
            X-node next to the Y block, or a node appears twice.
        """
        if self.kind not in PATH_KINDS:
            raise ValueError(f"a path is {' or '.join(PATH_KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "kind", PathKind(self.kind))
        circle = tuple(self.circle)
        object.__setattr__(self, "circle", circle)
        for hop in circle:
            if hop.role not in (X, Y, T):
                raise ValueError(f"a hop is X, Y or T, not {hop.role!r}")
        terminating = self.layout.outwardXPositions[-1]
        for index, hop in enumerate(circle):
            if (hop.role == T) != (index == terminating):
                raise ValueError(f"T must be the X-node next to the Y block, at index {terminating}")
        nodeIds = [hop.record.nodeId for hop in circle]
        if len(set(nodeIds)) != len(nodeIds):
            raise ValueError("a node appears twice in the path")

    @classmethod
    def arrange(cls, kind, layout, xRecords, yRecords):
        """
        Put node records on a layout.

        @param kind: L{EXIT} or L{ENTRY}.
        @param layout: a L{Layout}.
        @param xRecords: the X-nodes in the order of the finished path from the owner outwards:
            x0 first, T last.
        @param yRecords: the Y-nodes in circle order.
        @return: a L{PathPlan}.
        @raise ValueError: the counts do not match the layout, or see L{PathPlan}.
        """
        shape = layout.shape
        if len(xRecords) != shape.x or len(yRecords) != shape.y:
            raise ValueError(f"the layout takes {shape.x} X- and {shape.y} Y-nodes, not {len(xRecords)} and {len(yRecords)}")
        circle = [None] * shape.size
        outward = layout.outwardXPositions
        for distance, (position, record) in enumerate(zip(outward, xRecords)):
            circle[position] = Hop(record, T if distance == shape.x - 1 else X)
        yPositions = (index for index, role in enumerate(layout.roles) if role == Y)
        for position, record in zip(yPositions, yRecords):
            circle[position] = Hop(record, Y)
        return cls(kind, layout.reversed, tuple(circle))

    @property
    def roles(self):
        """The roles along the circle: a tuple of L{X}, L{Y} and L{T}."""
        return tuple(hop.role for hop in self.circle)

    @property
    def layout(self):
        """The L{Layout} of the circle."""
        return Layout(tuple(Y if hop.role == Y else X for hop in self.circle), self.reversed)

    @property
    def shape(self):
        """The L{PathShape} of the path."""
        return self.layout.shape

    @property
    def xNodes(self):
        """
        The X-nodes' records in the finished path, from the owner outwards: C{xNodes[0]} is x0,
        the owner's neighbour, and C{xNodes[-1]} is T.
        """
        return tuple(self.circle[position].record for position in self.layout.outwardXPositions)

    @property
    def yNodes(self):
        """The Y-nodes' records in circle order."""
        return tuple(hop.record for hop in self.circle if hop.role == Y)

    @property
    def adjacent(self):
        """The record of x0, the X-node next to the owner in the finished path."""
        return self.xNodes[0]

    @property
    def terminating(self):
        """The record of T: the exit node of an exit path, the entry node of an entry path."""
        return self.xNodes[-1]

    @property
    def gaps(self):
        """How many Y-nodes lie between each two X-nodes next to each other on the circle (x - 1 counts)."""
        positions = self.layout.xPositions
        return tuple(after - before - 1 for before, after in zip(positions, positions[1:]))

    def _index(self, record):
        for index, hop in enumerate(self.circle):
            if hop.record.nodeId == record.nodeId:
                return index
        raise ValueError(f"node {record.nodeId.hex()} is not in this path")

    def neighbours(self, record):
        """
        A node's neighbours on the circle in both rounds, as the arrays travel.

        @param record: the record of a node in this path.
        @return: C{(previous, next)}, each a record or L{OWNER}.
        @raise ValueError: the node is not in this path.
        """
        index = self._index(record)
        previous = self.circle[index - 1].record if index > 0 else OWNER
        following = self.circle[index + 1].record if index < len(self.circle) - 1 else OWNER
        return previous, following

    def rewired(self, record):
        """
        An X-node's neighbours in the finished path, named as the setup arrays travel: the new
        previous and new next node of its round-2 package (paper §7.1.1 steps 9.3-9.6).

        @param record: the record of an X-node (or T) in this path.
        @return: C{(previous, next)}, each a record, L{OWNER}, or C{None} where the package
            fields are all zero: T's next when not reversed, T's previous when reversed.
        @raise ValueError: the node is not in this path, or is a Y-node.
        """
        index = self._index(record)
        if self.circle[index].role == Y:
            raise ValueError(f"Y-node {record.nodeId.hex()} has no place in the finished path")
        flow = [self.circle[position].record for position in self.layout.xPositions]
        position = next(i for i, node in enumerate(flow) if node.nodeId == record.nodeId)
        before, after = (None, OWNER) if self.reversed else (OWNER, None)
        previous = flow[position - 1] if position > 0 else before
        following = flow[position + 1] if position < len(flow) - 1 else after
        return previous, following


def diversityNetwork(host):
    """
    The network two X-nodes of one path may not share: the IPv4 /16 or the IPv6 /48 of
    C{host}. An IPv4-mapped IPv6 address counts as its IPv4 address.

    @param host: an IP address in text form, as in a node record.
    @return: an C{ipaddress} network.
    @raise ValueError: C{host} is not an IP address.
    """
    address = ipaddress.ip_address(host)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_DIVERSITY_PREFIX if address.version == 4 else IPV6_DIVERSITY_PREFIX
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def planPath(shape, kind, candidates, random, diversity=True, exclude=frozenset(), ends=None):
    """
    Choose the nodes of one path from C{candidates} and lay them out.

    The candidates are put in random order; the X-nodes are chosen first, each the next
    candidate in that order (with C{diversity}: the next one whose network no chosen X-node is
    in), so each is uniformly random among the candidates still allowed; the Y-nodes are the
    next y candidates left. No node is chosen twice, and a candidate listed twice counts once.

    This never turns the diversity rule off by itself: on L{NotEnoughNetworks} the caller may
    plan again with C{diversity=False} only when its configuration allows it, and should log
    that it did.

    @param shape: a L{PathShape}.
    @param kind: L{EXIT} or L{ENTRY}.
    @param candidates: L{phantom.netdb.records.NodeRecord}s, e.g. from the DHT's
        C{sampleNodes}.
    @param random: a C{random.Random}-like object; C{random.SystemRandom()} in production.
    @param diversity: whether no two X-nodes may share an IPv4 /16 or IPv6 /48
        (L{diversityNetwork}).
    @param exclude: node ids never to choose: the owner's own, those of failed attempts.
    @param ends: C{(x0, T)}, the records of the ends to keep from a failed attempt
        (L{phantom.path.retry.Retries}), either C{None} to choose that end anew; or C{None} to
        choose every X-node.
    @return: a L{PathPlan}.
    @raise NotEnoughNodes: fewer than x + y distinct candidates are left after exclusion.
    @raise NotEnoughNetworks: with C{diversity}, the candidates lie in fewer than x networks.
    @raise ValueError: C{kind} is unknown, or a candidate's host is not an IP address.
    """
    if kind not in PATH_KINDS:
        raise ValueError(f"a path is {' or '.join(PATH_KINDS)}, not {kind!r}")
    excluded = set(exclude)
    keptX0, keptT = ends or (None, None)
    kept = [record for record in (keptX0, keptT) if record is not None]
    excluded.update(record.nodeId for record in kept)
    usable = {}
    for record in candidates:
        if record.nodeId not in excluded:
            usable.setdefault(record.nodeId, record)
    if len(usable) + len(kept) < shape.size:
        raise NotEnoughNodes(
            f"a path of {shape.x} X- and {shape.y} Y-nodes needs {shape.size} distinct nodes,"
            f" but only {len(usable)} of the {len(candidates)} candidates are distinct and not excluded"
        )
    shuffled = list(usable.values())
    random.shuffle(shuffled)
    if diversity:
        networks = {diversityNetwork(record.host) for record in shuffled + kept}
        if len(networks) < shape.x:
            raise NotEnoughNetworks(
                f"the {shape.x} X-nodes must lie in distinct networks (IPv4 /16, IPv6 /48), but the"
                f" candidates lie in only {len(networks)}; plan with diversity off only where the"
                f" configuration allows it"
            )
    xRecords = []
    takenNetworks = {diversityNetwork(record.host) for record in kept} if diversity else set()
    for record in shuffled:
        if len(xRecords) + len(kept) == shape.x:
            break
        if diversity:
            network = diversityNetwork(record.host)
            if network in takenNetworks:
                continue
            takenNetworks.add(network)
        xRecords.append(record)
    chosen = {record.nodeId for record in xRecords}
    yRecords = [record for record in shuffled if record.nodeId not in chosen][: shape.y]
    xRecords = ([keptX0] if keptX0 is not None else []) + xRecords + ([keptT] if keptT is not None else [])
    return PathPlan.arrange(kind, layOut(shape, random), xRecords, yRecords)
