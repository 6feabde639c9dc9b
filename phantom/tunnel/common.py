"""
What the tunnel roles share, without I/O: the actions a role's machine asks of its service,
the machine's base, the table of remembered blocks, the key sets of paths, and the block checks.

A machine (L{phantom.tunnel.relay}, L{phantom.tunnel.exit}, L{phantom.tunnel.entry},
L{phantom.tunnel.owner}) plays one role in one tunnel's setup. The service feeds it events
(C{start}, C{frameReceived}, C{linkClosed}, C{linkOpened}, C{linkFailed}, C{routeFound},
C{tunnelLinkArrived}, C{timedOut}, C{pathGone}), each of which returns a list of actions, and
carries the actions out. The links a machine names are handles it never calls.
"""

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from twisted.logger import LogLevel

from phantom.address import formatAddress
from phantom.quota import Shares
from phantom.tunnel.keys import KeySet
from phantom.wire import ProtocolError, parseStrict
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.tunnel import BLOCK_SIZE, ApAnswer, ApRequest, InboundStatus, TunnelOpening, parseEntryInit

SETUP_TIMEOUT = 30.0
"""Seconds any step of a tunnel setup may take before the setup is given up."""
MAX_PENDING = 4096
"""The most blocks a node remembers at once, waiting for their tunnel links."""
MAX_PENDING_PER_PEER = MAX_PENDING // 4
"""The most of them that came from one neighbour (or were asked for by one exit node)."""
MAX_PENDING_PER_PATH = 256
"""The most of them on one path (a hundred tunnels opened at once over one path fit)."""
MAX_ENTRY_PENDING_PER_PEER = MAX_PENDING_PER_PATH // 2
"""The most entry requests one node may have under way at an entry node: half an entry path's share."""
ENTRY_REQUEST_RATE = 10.0
"""ENTRY links one node may open a second, on average (L{MAX_ENTRY_PENDING_PER_PEER} at once)."""
KEY_SEARCH_RATE = 50.0
"""Inbound requests an owner searches the keys of per entry path and second, on average."""
KEY_SEARCH_BURST = MAX_PENDING_PER_PATH
"""... and at once."""
MAX_SETUPS_PER_PATH = 8192
"""The most tunnel setups one path brings a node in its life: each block it saw is kept to refuse replays."""
MAX_SEEN_PER_PEER = 4 * MAX_SETUPS_PER_PATH
"""The most setup blocks kept for the paths one neighbour brings them over."""
MAX_SEEN = 1 << 18
"""The most setup blocks kept in all (16 bytes of digest and about 100 of overhead each)."""


# Actions


@dataclass(frozen=True)
class SendFrame:
    """Send C{payload} on C{link}."""

    link: object
    payload: bytes


@dataclass(frozen=True)
class SendOnPath:
    """Send C{payload} on the PATH link on C{side} (a L{phantom.path.interfaces.Side}) of C{path}, if it is there."""

    path: object
    side: object
    payload: bytes


@dataclass(frozen=True)
class OpenLink:
    """
    Open a link for C{purpose} (TUNNEL or ENTRY) to C{contact}, named C{linkId}, its node id
    pinned; the machine hears C{linkOpened(link)} or C{linkFailed(why)}. A contact that is this
    node itself gets an in-process link (an exit node that is the entry node it asks).
    """

    purpose: Purpose
    contact: object
    linkId: bytes


@dataclass(frozen=True)
class LookUpRoute:
    """Look up the verified routing entry of C{apAddress}; the machine hears C{routeFound(entry or None)}."""

    apAddress: bytes


@dataclass(frozen=True)
class SpliceLinks:
    """
    Join links C{a} and C{b} of a tunnel this node carries: frames from C{a} go to C{b} through
    C{aToB}, the other way through C{bToA}; C{path} going closes them.
    """

    path: object
    a: object
    b: object
    aToB: object
    bToA: object


@dataclass(frozen=True)
class OwnTunnel:
    """
    This node owns an end of a tunnel over C{link}, with the stream C{layers} of its path's hops
    (C{path} going closes it; C{None}: no path). C{outbound}: it is the end that opened it (the
    opener gets it), else the end that accepts it (the acceptor gets it). C{peer}: the far end's
    AP-address, where known.
    """

    path: object
    link: object
    layers: list
    outbound: bool
    peer: bytes = None


@dataclass(frozen=True)
class CloseLink:
    """Close C{link}."""

    link: object


@dataclass(frozen=True)
class RefuseLink:
    """A tunnel link this machine will not take: close it, logging C{why} against it."""

    link: object
    why: str


@dataclass(frozen=True)
class ClosePath:
    """Take C{path} down here, logging C{why}."""

    path: object
    why: str


@dataclass(frozen=True)
class Fail:
    """The setup is given up for C{why}: logged at C{level} (C{warn} for what breaks the protocol)."""

    why: str
    level: LogLevel = LogLevel.warn


@dataclass(frozen=True)
class Note:
    """Log C{message} at C{level}; the machine carries on, or has ended as it should."""

    message: str
    level: LogLevel = LogLevel.info


# Block checks


def requireBlock(payload):
    """@return: C{payload} as bytes, if it is one setup block. @raise ProtocolError: it is not."""
    if len(payload) != BLOCK_SIZE:
        raise ProtocolError(f"a frame of {len(payload)} bytes where a {BLOCK_SIZE}-byte setup block was due")
    return bytes(payload)


def isEntryInitFor(block, apAddress):
    """Whether C{block} is an entry node's init block naming C{apAddress}."""
    try:
        return parseEntryInit(block)[0] == apAddress
    except ProtocolError:
        return False


def checkNeighbour(link, contact, linkId):
    """@raise ProtocolError: C{link} is not from C{contact}, named C{linkId}."""
    if link.linkId != linkId or link.nodeId != contact.nodeId or link.peer.host != contact.host:
        raise ProtocolError("it is not from the neighbour the block went to")


def openingOf(first, second):
    """@return: the first frame of a tunnel link: the block it names, and the block it carries."""
    return TunnelOpening.build({"first": first, "second": second})


def apRequest(apAddress):
    """@return: the first frame of an ENTRY link."""
    return ApRequest.build({"ap_address": apAddress})


def apAnswer(status):
    """@return: an entry node's answer to an ENTRY link's request."""
    return ApAnswer.build({"status": status})


def isAccepted(payload):
    """@return: whether C{payload}, an entry node's answer, accepts. @raise ProtocolError: it is no answer."""
    return int(parseStrict(ApAnswer, payload).status) == InboundStatus.ACCEPTED


# Machines


class Ended(Enum):
    """The states every machine ends in."""

    DONE = "done"
    FAILED = "failed"


class Machine:
    """
    The base of the role machines: the links it holds, its state, and giving up.

    @ivar state: an enum member; L{Ended} once the machine has nothing more to do.
    @ivar what: what the machine is, for the log.
    @ivar path: the path it runs over (C{None} for none); its going is the C{pathGone} event.
    """

    what = "a tunnel setup"
    path = None
    waits = True
    """Whether each step runs against L{SETUP_TIMEOUT} (a relay's remembered block expires instead)."""

    def __init__(self):
        self.held = []
        """The links this machine holds; failing closes them."""

    @property
    def ended(self):
        return isinstance(self.state, Ended)

    @property
    def timed(self):
        """Whether the service should time the present step."""
        return self.waits and not self.ended

    def hold(self, link):
        self.held.append(link)
        return link

    def fail(self, why, level=LogLevel.warn):
        """@return: the actions of giving up: close every link held, and say why."""
        self.state = Ended.FAILED
        return [CloseLink(link) for link in self.held] + [Fail(why, level)]

    def done(self, *actions):
        self.state = Ended.DONE
        return list(actions)

    # Events a machine that does not expect them answers by failing.

    def frameReceived(self, link, payload):
        if self.ended or link not in self.held:
            return []
        return self.fail("a frame where none was due")

    def linkClosed(self, link):
        if self.ended or link not in self.held:
            return []
        return self.fail("a link of the setup closed", LogLevel.info)

    def linkOpened(self, link):
        return [CloseLink(link)]

    def linkFailed(self, why):
        if self.ended:
            return []
        return self.fail(why, LogLevel.info)

    def timedOut(self):
        if self.ended:
            return []
        return self.fail("a step took too long", LogLevel.info)

    def pathGone(self):
        if self.ended:
            return []
        return self.fail("its path went", LogLevel.info)

    def abandon(self):
        """The one who asked gave up: close everything, quietly."""
        if self.ended:
            return []
        self.state = Ended.FAILED
        return [CloseLink(link) for link in self.held]


class ReachState(Enum):
    """The states of reaching an entry node (L{EntryAsker})."""

    LOOKING_UP = "looking up the routing entry"
    REACHING_ENTRY = "opening an ENTRY link"
    AWAITING_ANSWER = "waiting for the entry node's answer"


class EntryAsker(Machine):
    """
    A machine that reaches one of an AP-address's entry nodes over an ENTRY link, in the order
    its routing entry names them, and asks it for a tunnel: the exit node's, and an own-exit
    owner's. Once the entry node accepts, L{entryAccepted} says what follows.

    Events: C{routeFound(entry)}; C{linkOpened(link)}/C{linkFailed(why)} for the ENTRY link;
    C{frameReceived(link, payload)}: the entry node's answer.

    @ivar apAddress: the AP-address asked for, once L{askEntryNode} has been called.
    """

    apAddress = None

    def __init__(self, randomBytes):
        super().__init__()
        self._randomBytes = randomBytes
        self._candidates = []
        self._reasons = []
        self.entryLink = None

    def askEntryNode(self, apAddress):
        """@return: the actions that start asking for C{apAddress}."""
        self.apAddress = apAddress
        self.state = ReachState.LOOKING_UP
        return [LookUpRoute(apAddress)]

    def entryAccepted(self, link):
        """@return: the actions once the entry node on C{link} has accepted."""
        raise NotImplementedError()

    def routeFound(self, entry):
        if self.state is not ReachState.LOOKING_UP:
            return []
        if entry is None:
            return self.fail(f"no routing entry for {formatAddress(self.apAddress)}")
        self._candidates = list(entry.entryNodes)
        self.state = ReachState.REACHING_ENTRY
        return self._tryNext()

    def _tryNext(self):
        if not self._candidates:
            return self.fail(f"no entry node of {formatAddress(self.apAddress)} reachable: {'; '.join(self._reasons)}")
        return [OpenLink(Purpose.ENTRY, self._candidates.pop(0), self._randomBytes(LINK_ID_SIZE))]

    def linkFailed(self, why):
        if self.state is not ReachState.REACHING_ENTRY:
            return super().linkFailed(why)
        self._reasons.append(why)
        return self._tryNext()

    def linkOpened(self, link):
        if self.state is not ReachState.REACHING_ENTRY:
            return super().linkOpened(link)
        self.entryLink = self.hold(link)
        self.state = ReachState.AWAITING_ANSWER
        return [SendFrame(link, apRequest(self.apAddress))]

    def frameReceived(self, link, payload):
        if self.state is not ReachState.AWAITING_ANSWER or link is not self.entryLink:
            return super().frameReceived(link, payload)
        try:
            accepted = isAccepted(payload)
        except ProtocolError as e:
            return self.fail(str(e))
        if not accepted:
            return self.fail(f"{formatAddress(self.apAddress)} refused the tunnel")
        return self.entryAccepted(link)


# Shared tables


class RememberedBlocks:
    """
    The blocks this node passed on along a path (or sent, as an entry node), each with the
    machine waiting for the tunnel link that names it, for L{SETUP_TIMEOUT} seconds, forgotten
    in the order remembered. Each is charged to the neighbour it came from (or the exit node
    that asked) and to its path: at most L{MAX_PENDING} in all, L{MAX_PENDING_PER_PEER} for
    one neighbour, L{MAX_PENDING_PER_PATH} for one path; when all are taken, the neighbour
    holding the most gives way (L{phantom.quota.Shares}). So a neighbour flooding blocks fills
    only its own share, and the setups of every other path through the node go on.

    @param clock: C{IReactorTime}.
    """

    def __init__(self, clock, limit=MAX_PENDING, lifetime=SETUP_TIMEOUT, perPeer=MAX_PENDING_PER_PEER, perPath=MAX_PENDING_PER_PATH):
        self._clock = clock
        self._lifetime = lifetime
        self._waiting = OrderedDict()
        self.shares = Shares(limit, perPeer, perPath, onEvicted=self._waiting.pop)

    def __len__(self):
        return len(self._waiting)

    def __contains__(self, block):
        return block in self._waiting

    def admits(self, peer, path):
        """@return: whether a block from C{peer} on C{path} would be remembered now."""
        self.forgetExpired()
        return self.shares.admits(peer, path)

    def remember(self, block, machine, peer=None, path=None):
        """
        @param peer: the node id of the neighbour the block came from (or of the exit node that
            asked for it).
        @param path: the path it travels on.
        @return: whether C{block} is remembered for C{machine} (not: their shares are taken).
        """
        self.forgetExpired()
        if not self.shares.admit(block, peer, path):
            return False
        self._waiting[block] = (machine, self._clock.seconds() + self._lifetime)
        return True

    def take(self, block):
        """@return: the machine waiting for C{block}'s tunnel link, forgetting it; or C{None}."""
        self.forgetExpired()
        machine, _ = self._waiting.pop(block, (None, None))
        self.shares.release(block)
        return machine

    def forget(self, block):
        self._waiting.pop(block, None)
        self.shares.release(block)

    def forgetExpired(self):
        """Forget the blocks whose tunnel links never came."""
        now = self._clock.seconds()
        while self._waiting:
            block, (_, expires) = next(iter(self._waiting.items()))
            if expires > now:
                break
            self.forget(block)


class SeenBlocks:
    """
    A digest of every setup block each path brought this node, kept while the path (and so its
    key sets) lasts: a block seen before is a replay, refused before any key is chosen for it,
    so no hop derives the same stream keys twice. A fresh block begins with 16 random bytes of
    whoever made it, so an honest block recurs with probability 2^-128. Bounded: per path
    (L{MAX_SETUPS_PER_PATH} setups in its life) and per neighbour, where further setups are
    refused rather than forgotten, since forgetting would let a replay through; and in total,
    where the neighbour holding the most gives way to one holding fewer (node ids are free, so
    a few neighbours' shares fill the total): its path that brought the most blocks is closed,
    and its blocks forgotten with it.
    """

    def __init__(self, limit=MAX_SEEN, perPeer=MAX_SEEN_PER_PEER, perPath=MAX_SETUPS_PER_PATH):
        self.shares = Shares(limit, perPeer, perPath, evict=False)
        self._byPath = {}
        """The digests each path brought, by its key."""
        self._paths = {}
        """Each path with blocks, and the neighbour that brought them, by its key."""
        self._closed = set()
        """The keys of the paths closed to make room, until they are gone."""

    def __len__(self):
        return len(self.shares)

    def firstSight(self, path, peer, block):
        """
        Note C{block}, brought by C{peer} (node id) over C{path} (which must C{onGone} and
        C{close}).

        @return: C{None} if it is new and noted; else why it is refused.
        """
        digest = hashlib.blake2b(block, digest_size=16).digest()
        key = id(path)
        if key in self._closed:
            return "a setup block over a path closed to make room for others"
        if (key, digest) in self.shares:
            return "a replayed setup block"
        if len(self.shares) >= self.shares.limit:
            self._makeRoom(peer)
        if not self.shares.admit((key, digest), peer, key):
            return "too many setup blocks over this path or from this neighbour"
        self._byPath.setdefault(key, []).append(digest)
        if key not in self._paths:
            self._paths[key] = (path, peer)
            path.onGone(lambda: self._forget(key))
        return None

    def _makeRoom(self, peer):
        """Close the fullest path of the neighbour holding the most, if it holds more than C{peer} would with one more."""
        heaviest, count = self.shares.heaviest()
        if count <= self.shares.held(peer) + 1:
            return
        key = max((key for key, (_, owner) in self._paths.items() if owner == heaviest), key=lambda key: len(self._byPath[key]))
        path, _ = self._paths[key]
        self._forget(key)
        self._closed.add(key)
        path.onGone(lambda: self._closed.discard(key))
        path.close()

    def _forget(self, key):
        self._paths.pop(key, None)
        for digest in self._byPath.pop(key, ()):
            self.shares.release((key, digest))


class KeySets:
    """The key sets of the paths this node owns or relays, each made once and kept while its path lasts."""

    def __init__(self):
        self.bySeed = {}

    def of(self, seed, count, path):
        """The key set of C{seed} with C{count} keys, on C{path}."""
        keySet = self.bySeed.get(seed)
        if keySet is None:
            keySet = self.bySeed[seed] = KeySet(seed, count)
            path.onGone(lambda: self.bySeed.pop(seed, None))
        return keySet

    def ofRelayed(self, relayed):
        """The key set this node chooses from as an X-node of C{relayed}."""
        return self.of(relayed.keySeed, relayed.keyCount, relayed)

    def ofOwned(self, path):
        """The key sets of an owned path's X-nodes, x0 first, T last."""
        return [self.of(path.keySeeds[record.nodeId], path.keyCount, path) for record in path.plan.xNodes]


def chooseKey(keySet, random):
    """@return: a key of C{keySet}, chosen uniformly with C{random}."""
    return keySet.keys[keySet.choose(random)]
