"""
An in-process DHT network: many real nodes in one reactor, each with its own L{LinkService}
(real TLS over real TCP sockets) on its own loopback address, all joined through node 0.

Each node listens on its own address, 127.0.1.2 for node 0 upward (see L{loopbackAddress}),
and opens its outbound connections from that address too, so that what a node learns of a
peer's address is that peer's own. On Linux the whole of 127.0.0.0/8 reaches this machine; no
setup is needed.

Used by tests and by benchmarks alike: nothing here depends on trial, and the reactor is
passed in. Typical use::

    network = InProcessNetwork(reactor, 20)
    nodes = await network.start()  # or network.start().addCallback(...)
    ...
    await network.stop()
"""

import random
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore, gatherResults, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint

from phantom.address import Contact
from phantom.config import LISTEN_BACKLOG, DhtSettings, LinkLimits
from phantom.identity import Identity
from phantom.link.service import LinkService
from phantom.netdb.service import DhtNode

ADDRESSES_PER_BLOCK = 250
"""Node addresses use the last byte 2 to 251 of each 127.0.X.0/24, X from 1 upward."""

MAX_NODES = ADDRESSES_PER_BLOCK * 254
"""Node numbers must stay below this (the third byte runs out at 127.0.255.x)."""


def loopbackAddress(index, base=0):
    """
    The loopback address of node C{index}.

    @param index: the node's number, from 0.
    @param base: an offset added to C{index}, so that networks started side by side use
        distinct addresses.
    @return: the dotted address: 127.0.1.2 for number 0, 127.0.1.251 for 249, 127.0.2.2 for
        250, and so on.
    @raise ValueError: the number is out of range.
    """
    number = base + index
    if not 0 <= number < MAX_NODES:
        raise ValueError(f"node number {number} is outside 0..{MAX_NODES - 1}")
    return f"127.0.{number // ADDRESSES_PER_BLOCK + 1}.{number % ADDRESSES_PER_BLOCK + 2}"


def startLinkService(reactor, host, identity, limits=LinkLimits()):
    """
    Start a L{LinkService} listening on C{host}, on a port the kernel chooses, whose outbound
    connections also leave from C{host}.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @param host: an IPv4 address of this machine.
    @param identity: the node's L{Identity}.
    @param limits: the L{LinkLimits} of its links.
    @return: the running service; its C{listeningAddress} is known once this returns.
    """
    endpoint = TCP4ServerEndpoint(reactor, 0, interface=host, backlog=LISTEN_BACKLOG)
    service = LinkService(identity, endpoint, limits, reactor, bindAddress=host)
    service.startService()
    return service


def startDhtNode(reactor, host, bootstrap=(), settings=DhtSettings(), limits=LinkLimits(), identity=None, seed=None, dataDir=None):
    """
    Start one DHT node with its own link service on C{host}.

    The node's join begins at once; C{node.joined} fires when it is done.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}; also the node's clock.
    @param host: the IPv4 address the node listens on and connects from.
    @param bootstrap: the L{Contact}s it joins through (none: it starts a network).
    @param settings: its L{DhtSettings}.
    @param limits: the L{LinkLimits} of its links.
    @param identity: its L{Identity}, or C{None} for a fresh one.
    @param seed: seeds the node's C{random.Random} (refresh targets, sampling), or C{None}
        for an unseeded one.
    @param dataDir: where the node saves its contacts, or C{None} not to save them.
    @return: the started L{DhtNode}; its L{LinkService} is its C{links} attribute.
    """
    identity = identity or Identity.generate()
    links = startLinkService(reactor, host, identity, limits)
    node = DhtNode(
        identity,
        links,
        reactor,
        settings,
        address=(host, links.listeningAddress.port),
        bootstrap=bootstrap,
        dataDir=dataDir,
        random=random.Random(seed),
    )
    node.links = links
    node.startService()
    return node


def stopDhtNode(node):
    """
    Stop a node started by L{startDhtNode}, and then its link service.

    @return: a Deferred that fires once every connection of the node is closed.
    """
    if node.running:
        node.stopService()
    if not node.links.running:
        return succeed(None)
    return node.links.stopService()


@dataclass(eq=False)
class InProcessNetwork:
    """
    C{count} DHT nodes in one reactor: node 0 starts the network, every other node joins
    through node 0 (known to them by address only, as a bootstrap contact is).

    @ivar reactor: provides C{IReactorTCP} and C{IReactorTime}; also the nodes' clock.
    @ivar count: how many nodes to start.
    @ivar settings: the L{DhtSettings} of every node.
    @ivar limits: the L{LinkLimits} of every node's links.
    @ivar base: the number of node 0 for L{loopbackAddress}; give networks that run at the
        same time ranges that do not overlap.
    @ivar joinConcurrency: how many nodes join at once after node 0; 1 joins them one by
        one, each after the previous one has joined.
    @ivar seed: seeds each node's C{random.Random} (with C{seed} and the node's number), or
        C{None} for unseeded ones.
    @ivar nodes: the started L{DhtNode}s, node 0 first; each has its L{LinkService} as C{links}.
    """

    reactor: object
    count: int
    settings: DhtSettings = DhtSettings()
    limits: LinkLimits = LinkLimits()
    base: int = 0
    joinConcurrency: int = 8
    seed: int | None = None
    nodes: list = field(default_factory=list)

    def __post_init__(self):
        if self.count < 1:
            raise ValueError("a network needs at least one node")
        if self.joinConcurrency < 1:
            raise ValueError("joinConcurrency must be at least 1")
        loopbackAddress(self.count - 1, self.base)

    def _startNode(self, index, bootstrap):
        seed = None if self.seed is None else f"{self.seed}/{index}"
        node = startDhtNode(
            self.reactor, loopbackAddress(index, self.base), bootstrap, self.settings, self.limits, seed=seed
        )
        self.nodes.append(node)
        return node

    def start(self):
        """
        Start node 0, wait until it runs, then start the others, C{joinConcurrency} at a time.

        A node that cannot reach node 0 keeps retrying (as L{DhtNode} does), so this waits for
        it; call L{stop} to give up.

        @return: a Deferred firing with the list of nodes, once every one has joined.
        @raise RuntimeError: the network was started already.
        """
        if self.nodes:
            raise RuntimeError("this network was started already")
        return Deferred.fromCoroutine(self._start())

    async def _start(self):
        first = self._startNode(0, ())
        await first.joined
        bootstrap = (Contact(first.address[0], first.address[1]),)
        semaphore = DeferredSemaphore(self.joinConcurrency)

        def join(index):
            return self._startNode(index, bootstrap).joined

        await gatherResults([semaphore.run(join, index) for index in range(1, self.count)], consumeErrors=True)
        return list(self.nodes)

    def stop(self):
        """
        Stop every node started so far and its link service.

        @return: a Deferred that fires once every connection is closed.
        """
        nodes, self.nodes = self.nodes, []
        return DeferredList([stopDhtNode(node) for node in nodes], consumeErrors=True)

    @property
    def bootstrapContact(self):
        """Node 0 as a bootstrap contact (by address only), once started."""
        first = self.nodes[0]
        return Contact(first.address[0], first.address[1])
