"""
Node processes, the same in every mode: starting a node as a C{twistd phantom} daemon, finding
its processes in /proc, stopping them, and finding out from its log and its control socket how
it is.

A process counts as a node of a testnet only when /proc shows it running C{twistd ... phantom
... --data-dir DIR} with that node's DIR (L{nodeDataDirOf} reads back what
L{twistdCommandLine} writes); no other process is ever signalled.
"""

import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass

from cryptography import x509
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from phantom.address import formatHostPort
from phantom.control.client import ControlClient, ControlError
from phantom.crypto import nodeIdOfCertificate
from phantom.identity import COMMUNICATION_CERTIFICATE
from phantom.statefiles import writeAtomically
from phantom.testnet.manifest import NodeSpec, TestnetError

STOP_TIMEOUT = 10.0
"""Seconds C{down} waits for nodes to stop after SIGTERM before it sends SIGKILL."""

KILL_TIMEOUT = 5.0
"""Seconds C{down} waits for processes to vanish after SIGKILL."""

STATUS_TIMEOUT = 3.0
"""Seconds to wait for one node's answer on its control socket."""

POLL_INTERVAL = 0.2
"""Seconds between two looks at logs, processes or peers while waiting."""

ANNOUNCEMENT = re.compile(r"phantom node (?P<nodeId>[0-9a-f]{64}) listening on (?P<address>\S+)")
"""The line a node logs once it has started."""

_LOG_PREFIX = re.compile(r"^\S+ \[[^\]]*\] ")


# Starting nodes


def findTwistd():
    """
    @return: the C{twistd} script of the Python running this code.
    @raise TestnetError: there is none.
    """
    twistd = shutil.which("twistd", path=os.path.dirname(sys.executable)) or shutil.which("twistd")
    if twistd is None:
        raise TestnetError(f"no twistd script next to {sys.executable} or on PATH; is Twisted installed?")
    return twistd


NODE_CONFIG = """\
; Written by phantom-testnet. Every node of a testnet is on one /16 (127.0.0.0/8, or the
; bridge's 10.199.0.0/16): the X-node diversity rule cannot hold, so it is off here, and only
; here. Routing entries are published at once rather than 2 to 24 minutes after their path is up.
[path]
diversity = off
coarse_entries = no
"""
"""The configuration file of every testnet node (L{prepareNode})."""


def nodeConfigFile(node):
    """@return: the path of C{node}'s configuration file, in its data directory."""
    return os.path.join(node.dataDir, "phantom.ini")


def prepareNode(node):
    """Make C{node}'s data directory and write its configuration file, L{NODE_CONFIG}."""
    os.makedirs(node.dataDir, mode=0o700, exist_ok=True)
    writeAtomically(nodeConfigFile(node), NODE_CONFIG.encode())


def twistdCommandLine(node, twistd, python=sys.executable):
    """
    The command that starts C{node} as a daemon; C{twistd} exits once the node has started
    (0) or failed to (non-zero).

    The node's DHT module API is given the node's own address and port P - 1 (7401 next to the
    default 7402), so that nodes never compete for the default 127.0.0.1:7401; its
    configuration file is L{nodeConfigFile} (L{prepareNode} writes it).

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
        "--config", nodeConfigFile(node),
    ]  # fmt: skip
    if node.bootstrap:
        commandLine += ["--bootstrap", ",".join(node.bootstrap)]
    return commandLine


class TwistdLauncher(ProcessProtocol):
    """
    A C{twistd} that daemonizes one node: it exits 0 once the node runs, non-zero if it could not
    start; its output says why.

    @param node: the L{NodeSpec} it starts.
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


# Finding and stopping node processes


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


def cancelAndWait(starting):
    """
    Cancel C{starting} (a testnet's C{up}, which then stops every node it started) unless it has
    finished.

    @return: a Deferred that fires, with C{None}, once it has cleaned up.
    """
    if starting.called:
        return succeed(None)
    cleanedUp = Deferred()
    starting.addBoth(lambda result: (cleanedUp.callback(None), result)[1])
    starting.cancel()
    return cleanedUp


def sleep(reactor, seconds):
    """@return: a Deferred that fires after C{seconds}."""
    return deferLater(reactor, seconds, lambda: None)


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
    @return: the status as L{ControlClient.status} gives it, or C{None} if no node answers.
    """
    try:
        return await ControlClient.forNode(reactor, dataDir, timeout).status()
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
