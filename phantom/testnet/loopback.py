"""
The loopback testnet: every node a C{twistd phantom} daemon on this machine, node I listening on
127.0.0.(I+1), all nodes on the same port, node 1 the bootstrap contact of all the others.

The testnet directory D holds::

    D/testnet.json        the manifest (L{Manifest}), written before any node starts
    D/node01/             node 1's data directory: its keys and control.sock
    D/node01/node.log     node 1's twistd log
    D/node01/twistd.pid   node 1's pidfile

Each node's DHT module API is given the node's own address and port P - 1 (7401 next to the
default 7402), so that nodes never compete for the default 127.0.0.1:7401.

A process counts as a node of the testnet only when /proc shows it running C{twistd ... phantom
... --data-dir DIR} with that node's DIR; no other process is ever signalled.

The parts that do not depend on how nodes are started (the manifest, finding and stopping node
processes, asking nodes for their status) are module-level, so that another mode (network
namespaces) can be a second class providing L{ITestnet} next to L{LoopbackTestnet}.
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass

from cryptography import x509
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    FirstError,
    TimeoutError,
    gatherResults,
    succeed,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from zope.interface import Attribute, Interface, implementer

from phantom.config import DEFAULT_PORT, formatHostPort
from phantom.control import CONTROL_SOCKET
from phantom.control.cli import ControlError, StatusOptions, askNode
from phantom.control.server import MAX_UNIX_PATH
from phantom.crypto import nodeIdOfCertificate
from phantom.identity import COMMUNICATION_CERTIFICATE

LOOPBACK = "loopback"
"""The mode name of L{LoopbackTestnet}, as the manifest records it."""

MANIFEST = "testnet.json"
"""The manifest's file name inside the testnet directory."""

MANIFEST_VERSION = 1

LOG_FILE = "node.log"
"""A node's twistd log file name, inside its data directory."""

PID_FILE = "twistd.pid"
"""A node's pidfile name, inside its data directory."""

MAX_NODES = 250
"""The most nodes a loopback testnet has: 127.0.0.2 to 127.0.0.251."""

DEFAULT_TIMEOUT = 60.0
"""Seconds C{up} waits, in all, for every node to start and have a peer."""

STOP_TIMEOUT = 10.0
"""Seconds C{down} waits for nodes to stop after SIGTERM before it sends SIGKILL."""

KILL_TIMEOUT = 5.0
"""Seconds C{down} waits for processes to vanish after SIGKILL."""

STATUS_TIMEOUT = 3.0
"""Seconds to wait for one node's answer on its control socket."""

POLL_INTERVAL = 0.2
"""Seconds between two looks at logs, processes or peers while waiting."""

SPAWN_CONCURRENCY = 8
"""How many C{twistd} launchers run at once; each costs about half a second of CPU."""

ANNOUNCEMENT = re.compile(r"phantom node (?P<nodeId>[0-9a-f]{64}) listening on (?P<address>\S+)")
"""The line a node logs once it has started."""

_LOG_PREFIX = re.compile(r"^\S+ \[[^\]]*\] ")


class TestnetError(Exception):
    """The testnet cannot do what was asked; the message says why, for the person at the terminal."""


@dataclass(frozen=True)
class NodeSpec:
    """One node of a testnet: where it listens, whom it joins through, where its files are."""

    index: int
    """The node's number, 1 for the first."""
    name: str
    """C{node01}, C{node02}, ...: the name of its data directory."""
    address: str
    """The IP address it listens on and connects from."""
    port: int
    """Its TLS port."""
    dataDir: str
    """Its data directory (absolute)."""
    logFile: str
    """Its twistd log file."""
    pidFile: str
    """Its twistd pidfile."""
    bootstrap: tuple = ()
    """C{host:port} of each node it keeps a PEER link to; empty for the bootstrap node."""

    @property
    def contact(self):
        """C{host:port} where other nodes reach this one."""
        return formatHostPort(self.address, self.port)

    def toJSON(self):
        """@return: this node as a JSON-ready dict (the manifest's form)."""
        return {
            "index": self.index,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "data_dir": self.dataDir,
            "log": self.logFile,
            "pidfile": self.pidFile,
            "bootstrap": list(self.bootstrap),
        }

    @classmethod
    def fromJSON(cls, data):
        """
        @param data: a dict made by L{toJSON}.
        @raise TestnetError: a field is missing or of the wrong type.
        """
        try:
            node = cls(
                index=data["index"],
                name=data["name"],
                address=data["address"],
                port=data["port"],
                dataDir=data["data_dir"],
                logFile=data["log"],
                pidFile=data["pidfile"],
                bootstrap=tuple(data["bootstrap"]),
            )
        except (KeyError, TypeError) as e:
            raise TestnetError(f"a node entry lacks {e}") from None
        for field, kind in (("index", int), ("port", int), ("name", str), ("address", str), ("dataDir", str),
                            ("logFile", str), ("pidFile", str)):
            if not isinstance(getattr(node, field), kind):
                raise TestnetError(f"node entry {data!r}: {field} is not {kind.__name__}")
        return node


@dataclass(frozen=True)
class Manifest:
    """What a testnet directory holds: the mode, and every node in it."""

    mode: str
    """How the nodes run: C{loopback}."""
    directory: str
    """The testnet directory (absolute)."""
    port: int
    """The port every node listens on."""
    nodes: tuple
    """L{NodeSpec}s, node 1 first."""

    @property
    def path(self):
        """Where the manifest is kept."""
        return manifestPath(self.directory)

    def toJSON(self):
        """@return: the manifest as a JSON-ready dict."""
        return {
            "version": MANIFEST_VERSION,
            "mode": self.mode,
            "directory": self.directory,
            "port": self.port,
            "nodes": [node.toJSON() for node in self.nodes],
        }

    @classmethod
    def fromJSON(cls, data):
        """
        @param data: a dict made by L{toJSON}.
        @raise TestnetError: not a manifest this version understands.
        """
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise TestnetError(f"not a version {MANIFEST_VERSION} testnet manifest")
        try:
            nodes = tuple(NodeSpec.fromJSON(node) for node in data["nodes"])
            manifest = cls(mode=data["mode"], directory=data["directory"], port=data["port"], nodes=nodes)
        except (KeyError, TypeError) as e:
            raise TestnetError(f"the manifest lacks {e}") from None
        if not isinstance(manifest.mode, str) or not isinstance(manifest.directory, str):
            raise TestnetError("the manifest's mode and directory must be strings")
        return manifest

    def write(self):
        """Write the manifest to L{path} atomically, creating the testnet directory if needed."""
        os.makedirs(self.directory, exist_ok=True)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self.toJSON(), f, indent=2)
            f.write("\n")
        os.replace(temporary, self.path)

    @classmethod
    def read(cls, directory):
        """
        Read the manifest of the testnet in C{directory}.

        @raise TestnetError: there is none, or it cannot be read.
        """
        path = manifestPath(directory)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise TestnetError(f"no testnet in {directory}: {path} does not exist") from None
        except (OSError, ValueError) as e:
            raise TestnetError(f"cannot read {path}: {e}") from None
        try:
            return cls.fromJSON(data)
        except TestnetError as e:
            raise TestnetError(f"{path}: {e}") from None


def manifestPath(directory):
    """@return: the path of the manifest of the testnet in C{directory}."""
    return os.path.join(os.path.abspath(directory), MANIFEST)


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
    width = max(2, len(str(count)))
    bootstrap = (formatHostPort(loopbackAddress(1), port),)
    nodes = []
    for index in range(1, count + 1):
        name = f"node{index:0{width}d}"
        dataDir = os.path.join(directory, name)
        nodes.append(
            NodeSpec(
                index=index,
                name=name,
                address=loopbackAddress(index),
                port=port,
                dataDir=dataDir,
                logFile=os.path.join(dataDir, LOG_FILE),
                pidFile=os.path.join(dataDir, PID_FILE),
                bootstrap=() if index == 1 else bootstrap,
            )
        )
    socket = os.path.join(nodes[-1].dataDir, CONTROL_SOCKET)
    if len(socket.encode()) > MAX_UNIX_PATH:
        raise TestnetError(
            f"{directory} is too long a path: the control socket {socket} would exceed "
            f"{MAX_UNIX_PATH} bytes; choose a shorter directory such as /tmp/tn"
        )
    return Manifest(LOOPBACK, directory, port, tuple(nodes))


def findTwistd():
    """
    @return: the C{twistd} script of the Python running this code.
    @raise TestnetError: there is none.
    """
    twistd = shutil.which("twistd", path=os.path.dirname(sys.executable)) or shutil.which("twistd")
    if twistd is None:
        raise TestnetError(f"no twistd script next to {sys.executable} or on PATH; is Twisted installed?")
    return twistd


def twistdCommandLine(node, twistd, python=sys.executable):
    """
    The command that starts C{node} as a daemon; C{twistd} exits once the node has started
    (0) or failed to (non-zero).

    @param node: a L{NodeSpec}.
    @param twistd: the path of the C{twistd} script.
    @param python: the Python to run it with.
    @return: the argument list, program first.
    """
    commandLine = [
        python, twistd,
        "--pidfile", node.pidFile,
        "--logfile", node.logFile,
        "phantom",
        "--port", str(node.port),
        "--listen-address", node.address,
        "--data-dir", node.dataDir,
        "--api-address", formatHostPort(node.address, node.port - 1),
    ]  # fmt: skip
    if node.bootstrap:
        commandLine += ["--bootstrap", ",".join(node.bootstrap)]
    return commandLine


# Node processes


def commandLineOf(pid):
    """
    @return: the command line of process C{pid} as a list, or C{None} when there is no such
        process or it has none (a zombie, a kernel thread).
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return None
    return [os.fsdecode(argument) for argument in raw.rstrip(b"\0").split(b"\0")]


def nodeDataDirOf(commandLine):
    """
    @param commandLine: a process's command line, as a list.
    @return: the C{--data-dir} of a C{twistd ... phantom ...} command line, else C{None}.
    """
    for position, argument in enumerate(commandLine):
        if os.path.basename(argument) == "twistd":
            break
    else:
        return None
    rest = commandLine[position + 1 :]
    if "phantom" not in rest:
        return None
    rest = rest[rest.index("phantom") + 1 :]
    for position, argument in enumerate(rest):
        if argument in ("--data-dir", "-d") and position + 1 < len(rest):
            return rest[position + 1]
        if argument.startswith("--data-dir="):
            return argument.partition("=")[2]
    return None


def nodeProcesses(nodes):
    """
    Find the processes of C{nodes}, in one pass over /proc.

    @param nodes: L{NodeSpec}s.
    @return: a dict from each node to the sorted list of pids running it (usually one; two for
        a moment while twistd daemonizes; none when it is stopped).
    """
    byDataDir = {node.dataDir: node for node in nodes}
    found = {node: [] for node in nodes}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            node = byDataDir.get(nodeDataDirOf(commandLineOf(int(entry)) or []))
            if node is not None:
                found[node].append(int(entry))
    for pids in found.values():
        pids.sort()
    return found


def signalNode(pid, node, signum):
    """
    Send C{signum} to process C{pid} if, and only if, it runs C{node}.

    The process is held by a pidfd while its command line is checked, so a pid reused in
    between cannot be signalled by mistake.

    @return: whether the signal was sent.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        pidfd = None
    try:
        if nodeDataDirOf(commandLineOf(pid) or []) != node.dataDir:
            return False
        if pidfd is None:
            os.kill(pid, signum)
        else:
            signal.pidfd_send_signal(pidfd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def readPidFile(path):
    """@return: the pid in C{path}, or C{None} if there is no readable pid there."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


# What nodes say


def logSize(path):
    """@return: the size of the log file at C{path}, 0 if there is none."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def readLog(path, offset=0):
    """
    @return: the text of the log file at C{path} from byte C{offset} on (from its start if it
        is now shorter than C{offset}, having been rotated); empty if there is none.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(offset if f.tell() >= offset else 0)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def announcedNodeId(logFile, offset=0):
    """
    @return: the node id (hex) in the last C{phantom node ID listening on ADDRESS} line of
        C{logFile} after C{offset}, or C{None} if there is none.
    """
    announcements = list(ANNOUNCEMENT.finditer(readLog(logFile, offset)))
    return announcements[-1]["nodeId"] if announcements else None


def lastLogMessage(logFile, offset=0):
    """
    @return: the last message in C{logFile} after C{offset}, without its time stamp and
        system (for a node that failed, the exception), or C{None} if there is none.
    """
    lines = [line for line in readLog(logFile, offset).splitlines() if line.strip()]
    return _LOG_PREFIX.sub("", lines[-1]).strip() if lines else None


def nodeIdInDataDir(dataDir):
    """@return: the node id (hex) of the certificate in C{dataDir}, or C{None} if there is none."""
    try:
        with open(os.path.join(dataDir, COMMUNICATION_CERTIFICATE), "rb") as f:
            return nodeIdOfCertificate(x509.load_pem_x509_certificate(f.read())).hex()
    except (OSError, ValueError):
        return None


async def queryStatus(reactor, dataDir, timeout=STATUS_TIMEOUT):
    """
    Ask the node in C{dataDir} for its status through its control socket.

    @param reactor: provides C{IReactorUNIX} and C{IReactorTime}.
    @param timeout: seconds to wait for the connection, and again for the answer.
    @return: the status as C{phantomctl status --json} prints it, or C{None} if no node answers.
    """
    try:
        return await askNode(reactor, dataDir, StatusOptions(), timeout)
    except ControlError:
        return None


@dataclass(frozen=True)
class NodeState:
    """What is known of a node at one moment."""

    node: NodeSpec
    pid: int | None
    """Its daemon's pid: the pidfile's if it runs the node, else one found in /proc, else the
    pidfile's stale pid, else C{None}."""
    alive: bool
    """Whether process C{pid} runs the node."""
    nodeId: str | None
    """Its node id (hex): as it answers, else from its certificate, else from its log."""
    peers: int | None
    """How many peers it has links with, C{None} if it did not answer."""

    def toJSON(self):
        """@return: the node and its state as a JSON-ready dict."""
        return {**self.node.toJSON(), "pid": self.pid, "alive": self.alive, "node_id": self.nodeId, "peers": self.peers}


async def nodeStates(reactor, nodes, timeout=STATUS_TIMEOUT):
    """
    Find out how C{nodes} are: their processes, then, from each running one, its status.

    @param nodes: L{NodeSpec}s.
    @return: a L{NodeState} per node, in the same order.
    """
    processes = nodeProcesses(nodes)
    answers = await gatherResults(
        [
            Deferred.fromCoroutine(queryStatus(reactor, node.dataDir, timeout)) if processes[node] else succeed(None)
            for node in nodes
        ]
    )
    states = []
    for node, answer in zip(nodes, answers):
        pids = processes[node]
        recorded = readPidFile(node.pidFile)
        pid = recorded if recorded in pids or not pids else pids[0]
        nodeId = answer["node_id"] if answer else nodeIdInDataDir(node.dataDir) or announcedNodeId(node.logFile)
        peers = len(answer["peers"]) if answer else None
        states.append(NodeState(node, pid, pid in pids, nodeId, peers))
    return states


async def stopNodes(reactor, nodes, timeout=STOP_TIMEOUT):
    """
    Stop every process of C{nodes}: SIGTERM, up to C{timeout} seconds of waiting, then SIGKILL
    for what is left; stale pidfiles are removed.

    Processes that appear meanwhile (a twistd still daemonizing) are found and stopped too.

    @return: how many processes were signalled.
    @raise TestnetError: a process is still there after SIGKILL.
    """
    signalled = set()
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_TIMEOUT)):
        deadline = reactor.seconds() + wait
        sentNow = set()
        while True:
            running = [(pid, node) for node, pids in nodeProcesses(nodes).items() for pid in pids]
            for pid, node in running:
                if pid not in sentNow and signalNode(pid, node, signum):
                    sentNow.add(pid)
            if not running or reactor.seconds() >= deadline:
                break
            await sleep(reactor, POLL_INTERVAL)
        signalled |= sentNow
        if not running:
            break
    left = {node: pids for node, pids in nodeProcesses(nodes).items() if pids}
    if left:
        raise TestnetError(
            "these node processes are still running after SIGKILL: "
            + ", ".join(f"{node.name} (pid {', '.join(map(str, pids))})" for node, pids in left.items())
        )
    for node in nodes:
        try:
            os.remove(node.pidFile)
        except FileNotFoundError:
            pass
    return len(signalled)


def sleep(reactor, seconds):
    """@return: a Deferred that fires after C{seconds}."""
    return deferLater(reactor, seconds, lambda: None)


# The testnet


class ITestnet(Interface):
    """
    Nodes of one testnet, run one way (a mode). A mode's class is made from a L{Manifest} and a
    reactor, and has a class method C{plan(reactor, directory, count, port)} that lays out a new
    testnet of that mode.
    """

    mode = Attribute("The mode's name, as manifests record it.")
    manifest = Attribute("The L{Manifest} of the testnet.")

    def up(timeout=DEFAULT_TIMEOUT, progress=None):
        """
        Write the manifest, start every node, wait until each has logged that it listens and
        then until each has at least one peer.

        @param timeout: seconds to wait, in all.
        @param progress: called with a line of text at each step.
        @return: a coroutine.
        @raise TestnetError: something failed or took too long; everything started was stopped.
        """

    def status():
        """@return: a coroutine giving a L{NodeState} for each node, in manifest order."""

    def down(timeout=STOP_TIMEOUT):
        """
        Stop every node; it is fine if some or all do not run.

        @return: a coroutine giving the number of processes signalled.
        @raise TestnetError: a node process is left.
        """


class _TwistdLauncher(ProcessProtocol):
    """
    A C{twistd} that daemonizes one node: it exits 0 once the node runs, non-zero if it could not
    start; its output says why.
    """

    def __init__(self, node):
        self.node = node
        self.output = b""
        self.exitCode = None
        self.ended = False
        self._waiting = []

    def outReceived(self, data):
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason):
        code = reason.value.exitCode
        self.exitCode = code if code is not None else -(reason.value.signal or 1)
        self.ended = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self)

    def whenEnded(self):
        """@return: a Deferred firing with this launcher once its twistd has exited."""
        if self.ended:
            return succeed(self)
        d = Deferred()
        self._waiting.append(d)
        return d


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
            await gatherResults(starts, consumeErrors=True).addTimeout(remaining, self._reactor)
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
        launcher = _TwistdLauncher(node)
        self._launchers.append(launcher)
        commandLine = twistdCommandLine(node, twistd)
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
            await gatherResults(running).addTimeout(STOP_TIMEOUT, self._reactor)
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
