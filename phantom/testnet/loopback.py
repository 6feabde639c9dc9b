"""
The loopback mode: every node a C{twistd phantom} daemon on this machine, node I listening on
127.0.0.(I+1), all nodes on the same port, node 1 the bootstrap contact of all the others.

The testnet directory is laid out as L{phantom.testnet.manifest} says, and each node's DHT
module API gets the node's own address and port P - 1 (see
L{twistdCommandLine<phantom.testnet.processes.twistdCommandLine>}), so that nodes never compete
for the default 127.0.0.1:7401.

Only what is particular to this mode is here: the addresses, and starting the nodes as plain
C{twistd} processes; the manifest, and finding, stopping and asking node processes, are in
L{phantom.testnet.manifest} and L{phantom.testnet.processes}, for every mode.
"""

import ipaddress
import os
import random

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, FirstError, TimeoutError, gatherResults, succeed
from zope.interface import implementer

from phantom.config import DEFAULT_PORT
from phantom.testnet.interfaces import DEFAULT_TIMEOUT, ITestnet
from phantom.testnet.manifest import LOG_FILE, Manifest, TestnetError, layOutNodes
from phantom.testnet.nodeconfig import writeNodeConfig
from phantom.testnet.processes import (
    KILL_TIMEOUT,
    POLL_INTERVAL,
    STATUS_TIMEOUT,
    STOP_TIMEOUT,
    TwistdLauncher,
    announcedNodeId,
    findTwistd,
    lastLogMessage,
    logSize,
    nodeProcesses,
    nodeStates,
    queryStatus,
    sleep,
    stopNodes,
    twistdCommandLine,
)

LOOPBACK = "loopback"
"""The mode name of L{LoopbackTestnet}, as the manifest records it."""

MAX_NODES = 250
"""The most nodes a loopback testnet has: 127.0.0.2 to 127.0.0.251."""

SPAWN_CONCURRENCY = 8
"""How many C{twistd} launchers run at once: each is a Python process starting up, bound by CPU."""


LOWEST_PORT = 20000
"""The lowest port L{sharedPort} gives."""


def ephemeralPorts(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """
    @return: C{(first, last)}, the ports the kernel gives outgoing connections (Linux's
        C{ip_local_port_range}; its default where the system does not say).
    """
    try:
        with open(path) as portRange:
            first, last = (int(part) for part in portRange.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return first, last


def sharedPort(random=random.SystemRandom(), ephemeral=ephemeralPorts):
    """
    A port for a loopback testnet that may run beside others (another developer's, a parallel
    test's): chosen at random, and below the kernel's ephemeral range, where a port can be
    taken at any time by an outgoing connection from the same loopback address (a node of the
    other testnet), so that a node's listen fails with "Address already in use".

    @param random: the source of the choice.
    @param ephemeral: C{() -> (first, last)}, the ephemeral range (L{ephemeralPorts}).
    @return: a port P (the nodes' port; their DHT API takes P - 1).
    """
    first, last = ephemeral()
    if first > LOWEST_PORT + 1:
        return random.randrange(LOWEST_PORT, first)
    return random.randrange(last + 2, 65536)


async def gatherWithin(reactor, deferreds, seconds):
    """
    Wait for all of C{deferreds}, at most C{seconds}.

    @raise TimeoutError: the time ran out (the waits are cancelled then, and the first of them
        would otherwise fail the whole as a L{FirstError} of a L{CancelledError}).
    @raise FirstError: one of them failed first.
    """
    try:
        return await gatherResults(deferreds, consumeErrors=True).addTimeout(seconds, reactor)
    except FirstError as e:
        if e.subFailure.check(CancelledError):
            raise TimeoutError(f"not all done within {seconds:g} s") from None
        raise


def loopbackAddress(index):
    """
    @param index: a node's number, from 1.
    @return: the loopback address of node C{index}: 127.0.0.2 for node 1.
    """
    return str(ipaddress.IPv4Address("127.0.0.1") + index)


def planLoopback(directory, count, port=DEFAULT_PORT):
    """
    Lay out a loopback testnet; nothing is written or started.

    @param directory: the testnet directory; its path must be short, since every node's control
        socket lives below it.
    @param count: how many nodes, 1 to L{MAX_NODES}.
    @param port: the port every node listens on; its DHT API gets C{port - 1}.
    @return: the L{Manifest}.
    @raise TestnetError: C{count}, C{port} or C{directory} cannot be used.
    """
    if not 1 <= count <= MAX_NODES:
        raise TestnetError(f"a loopback testnet has 1 to {MAX_NODES} nodes, not {count}")
    if not 1 < port < 65536:
        raise TestnetError(f"the port must be between 2 and 65535 (the DHT API takes port - 1), not {port}")
    directory = os.path.abspath(directory)
    return Manifest(LOOPBACK, directory, port, layOutNodes(directory, count, port, loopbackAddress))


@implementer(ITestnet)
class LoopbackTestnet:
    """
    A testnet of C{twistd phantom} daemons on loopback addresses of this machine.

    @param manifest: the L{Manifest} (mode C{loopback}).
    @param reactor: provides C{IReactorProcess}, C{IReactorUNIX} and C{IReactorTime}.
    @param twistd: the C{twistd} script to start nodes with; found with L{findTwistd} if not given.
    """

    mode = LOOPBACK

    def __init__(self, manifest, reactor, twistd=None):
        self.manifest = manifest
        self._reactor = reactor
        self._twistd = twistd
        self._launchers = []
        self._abandoned = False

    @classmethod
    def plan(cls, reactor, directory, count, port=DEFAULT_PORT):
        """
        @return: a new testnet of C{count} nodes in C{directory}, not yet started; see
            L{planLoopback}.
        """
        return cls(planLoopback(directory, count, port), reactor)

    async def up(self, timeout=DEFAULT_TIMEOUT, progress=None):
        progress = progress or (lambda text: None)
        nodes = self.manifest.nodes
        deadline = self._reactor.seconds() + timeout
        self._launchers, self._abandoned = [], False
        self._refuseIfRunning()
        twistd = self._twistd or findTwistd()
        self.manifest.write()
        for node in nodes:
            os.makedirs(node.dataDir, mode=0o700, exist_ok=True)
            writeNodeConfig(node.dataDir, len(nodes))
        offsets = {node: logSize(node.logFile) for node in nodes}
        try:
            progress(
                f"starting {len(nodes)} nodes on {nodes[0].address}-{nodes[-1].address} "
                f"port {self.manifest.port} in {self.manifest.directory}"
            )
            await self._startAll(twistd, offsets, deadline, timeout)
            announced = lambda nodes: self._announced(nodes, offsets)  # noqa: E731
            await self._waitUntilEvery("have not logged that they listen", announced, offsets, deadline, timeout)
            progress(f"{len(nodes)} nodes listening; waiting until each has a peer")
            havePeers = lambda nodes: self._havePeers(nodes, deadline)  # noqa: E731
            await self._waitUntilEvery("have no peer", havePeers, offsets, deadline, timeout)
        except BaseException as e:
            await self._abandonLaunches()
            try:
                await self.down()
            except TestnetError as stopping:
                if isinstance(e, TestnetError):
                    raise TestnetError(f"{e}\nand stopping the testnet failed: {stopping}") from e
            raise

    async def restart(self, node, timeout=DEFAULT_TIMEOUT):
        """
        Stop C{node} and start it again on the same data directory (its keys, so its AP-address,
        are kept): what an operator's restart is.

        @param node: one of the manifest's L{NodeSpec}s.
        @raise TestnetError: it did not start again within C{timeout} seconds.
        """
        await stopNodes(self._reactor, [node])
        offset = logSize(node.logFile)
        self._abandoned = False
        await self._start(node, self._twistd or findTwistd(), offset, self._reactor.seconds() + timeout)

    def describeNode(self, node):
        """What a node's status adds in this mode (nothing)."""
        return {}

    def commandLine(self, node, twistd):
        """@return: the command line that starts C{node} (L{twistdCommandLine})."""
        return twistdCommandLine(node, twistd)

    async def status(self):
        return await nodeStates(self._reactor, self.manifest.nodes)

    async def down(self, timeout=STOP_TIMEOUT):
        return await stopNodes(self._reactor, self.manifest.nodes, timeout)

    def _refuseIfRunning(self):
        """
        @raise TestnetError: a node of this testnet, or of the one whose manifest is in its
            directory, runs already.
        """
        nodes = set(self.manifest.nodes)
        if os.path.exists(self.manifest.path):
            nodes |= set(Manifest.read(self.manifest.directory).nodes)
        running = sorted((node.dataDir for node, pids in nodeProcesses(nodes).items() if pids))
        if running:
            raise TestnetError(
                f"nodes of a testnet run already in {self.manifest.directory} "
                f"({', '.join(os.path.basename(d) for d in running)}); "
                f"stop them first with: phantom-testnet down --dir {self.manifest.directory}"
            )

    def _failure(self, node, what, reason):
        """@return: a L{TestnetError} saying that C{node} C{what}, the C{reason}, and where its log is."""
        return TestnetError(
            f"{node.name} ({node.contact}) {what}" + (f": {reason}" if reason else "") + f"\n  its log: {node.logFile}"
        )

    async def _startAll(self, twistd, offsets, deadline, timeout):
        """Run a twistd launcher per node, a few at a time, until all have exited."""
        semaphore = DeferredSemaphore(SPAWN_CONCURRENCY)
        starts = [semaphore.run(self._start, node, twistd, offsets[node], deadline) for node in self.manifest.nodes]
        remaining = max(0.0, deadline - self._reactor.seconds())
        try:
            await gatherWithin(self._reactor, starts, remaining)
        except FirstError as e:
            e.subFailure.raiseException()
        except TimeoutError:
            slow = [launcher.node.name for launcher in self._launchers if not launcher.ended]
            raise TestnetError(
                f"the nodes did not all start within {timeout:g} s (still starting: {', '.join(slow)})"
            ) from None

    def _start(self, node, twistd, offset, deadline):
        """
        Launch C{node}'s twistd, unless starting was given up or its time is over.

        @return: a Deferred that fires when it has started, or fails with L{TestnetError}.
        """
        if self._abandoned or self._reactor.seconds() >= deadline:
            return succeed(None)
        launcher = TwistdLauncher(node)
        self._launchers.append(launcher)
        commandLine = self.commandLine(node, twistd)
        self._reactor.spawnProcess(launcher, commandLine[0], commandLine, env=os.environ, path=self.manifest.directory)

        async def started(launcher):
            if launcher.exitCode != 0:
                # twistd exits as soon as the daemon reports failure; the daemon logs why just after.
                output = " ".join(launcher.output.decode("utf-8", "replace").split())
                logged = lastLogMessage(node.logFile, offset) if await self._untilStopped(node, KILL_TIMEOUT) else None
                raise self._failure(node, "did not start", logged or output)

        return launcher.whenEnded().addCallback(lambda launcher: Deferred.fromCoroutine(started(launcher)))

    async def _untilStopped(self, node, timeout):
        """
        Wait until C{node} has no process, or C{timeout} seconds have passed.

        @return: whether it has stopped.
        """
        deadline = self._reactor.seconds() + timeout
        while nodeProcesses([node])[node]:
            if self._reactor.seconds() >= deadline:
                return False
            await sleep(self._reactor, POLL_INTERVAL / 4)
        return True

    async def _abandonLaunches(self):
        """Launch nothing more, and wait until every twistd launched has exited (killing stragglers)."""
        self._abandoned = True
        running = [launcher.whenEnded() for launcher in self._launchers if not launcher.ended]
        if not running:
            return
        try:
            await gatherWithin(self._reactor, running, STOP_TIMEOUT)
        except TimeoutError:
            for launcher in self._launchers:
                if not launcher.ended:
                    launcher.transport.signalProcess("KILL")

    async def _waitUntilEvery(self, what, isReady, offsets, deadline, timeout):
        """
        Wait until every node is ready, failing as soon as a node stops or at C{deadline}.

        @param what: what the nodes that are not ready have not done, for the error message.
        @param isReady: an async function that takes a list of nodes and returns a list saying,
            for each, whether it is ready.
        """
        pending = list(self.manifest.nodes)
        while True:
            pending = [node for node, ready in zip(pending, await isReady(pending)) if not ready]
            if not pending:
                return
            self._failIfStopped(self.manifest.nodes, offsets)
            if self._reactor.seconds() >= deadline:
                raise TestnetError(
                    f"after {timeout:g} s, these nodes {what}: "
                    + ", ".join(node.name for node in pending)
                    + f"\n  their logs: {os.path.join(self.manifest.directory, 'NAME', LOG_FILE)}"
                )
            await sleep(self._reactor, POLL_INTERVAL)

    async def _announced(self, nodes, offsets):
        """@return: for each of C{nodes}, whether it has logged, since it was started, that it listens."""
        return [announcedNodeId(node.logFile, offsets[node]) is not None for node in nodes]

    async def _havePeers(self, nodes, deadline):
        """@return: for each of C{nodes}, whether it says on its control socket that it has a peer."""
        timeout = max(0.1, min(STATUS_TIMEOUT, deadline - self._reactor.seconds()))
        answers = await gatherResults(
            [Deferred.fromCoroutine(queryStatus(self._reactor, node.dataDir, timeout)) for node in nodes]
        )
        return [bool(answer and answer["peers"]) for answer in answers]

    def _failIfStopped(self, nodes, offsets):
        """@raise TestnetError: one of C{nodes} has no process any more."""
        for node, pids in nodeProcesses(nodes).items():
            if not pids:
                raise self._failure(node, "stopped", lastLogMessage(node.logFile, offsets[node]))
