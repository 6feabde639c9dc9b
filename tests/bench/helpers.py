"""
Child programs of the bench tests (C{python -m bench ...}), each in a session of its own that
the test's cleanup ends: a test that times out or fails leaves no bench, relay or node behind.
"""

import os
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

import bench

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(bench.__file__)))

IN_OWN_SESSION = "import os, sys; os.setsid(); os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
"""Run as C{python -c IN_OWN_SESSION ARGUMENTS...}: C{python ARGUMENTS...} in a new session."""

GRACE = 30.0
"""Seconds a child is given to stop after SIGTERM (a bench takes its testnet down) before SIGKILL."""


def sessionMembers(session):
    """
    @return: the pids of the live processes in session C{session}, read from C{/proc} (a child
        that daemonized left it: a bench stops its daemons itself when asked to stop).
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if fields[0] != b"Z" and int(fields[3]) == session:
            pids.append(int(entry))
    return pids


def signalSession(session, signalNumber):
    """Send C{signalNumber} to every live process of C{session}; @return: how many there were."""
    members = sessionMembers(session)
    for pid in members:
        try:
            os.kill(pid, signalNumber)
        except ProcessLookupError:
            pass
    return len(members)


class _Collected(ProcessProtocol):
    def __init__(self):
        self.out, self.err = [], []
        self.finished = Deferred()
        self._ended = False
        self._waiting = []

    def whenEnded(self):
        """@return: a Deferred of its own that fires once the process has ended."""
        if self._ended:
            return succeed(None)
        self._waiting.append(Deferred())
        return self._waiting[-1]

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self._ended = True
        self.finished.callback((b"".join(self.out), b"".join(self.err), reason.value.exitCode))
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)


class SessionChild:
    """
    A child program in a session of its own (its pid is the session's id), stopped with all of
    its session by L{stop}.

    @ivar finished: a Deferred firing with C{(stdout, stderr, exit status)} once it exits.
    """

    def __init__(self, argv, path=REPOSITORY, env=None, reactor=reactor):
        self._reactor = reactor
        self._protocol = _Collected()
        self.finished = self._protocol.finished
        self.transport = reactor.spawnProcess(
            self._protocol, sys.executable, [sys.executable, "-c", IN_OWN_SESSION, *argv],
            env=dict(os.environ) if env is None else env, path=path,
        )  # fmt: skip
        self.session = self.transport.pid

    async def stop(self, grace=GRACE):
        """
        End the child and every process left in its session: SIGTERM, up to C{grace} seconds
        for the child to exit, then SIGKILL for whatever is left.
        """
        if signalSession(self.session, signal.SIGTERM):
            try:
                await self._protocol.whenEnded().addTimeout(grace, self._reactor)
            except TimeoutError:
                pass
        for _ in range(100):
            if not signalSession(self.session, signal.SIGKILL):
                break
            await deferLater(self._reactor, 0.05, lambda: None)
        await self._protocol.whenEnded()


def runInOwnSession(testCase, *argv, **options):
    """
    Run C{python ARGV...} in a session of its own, ended with everything left in it at the
    test's cleanup (after a timeout or failure too).

    @return: a Deferred firing with C{(stdout, stderr, exit status)}.
    """
    child = SessionChild(argv, **options)
    testCase.addCleanup(child.stop)
    return child.finished


def runBench(testCase, *arguments):
    """
    Run C{python -m bench ARGUMENTS...} from the repository root, in a session of its own that
    the test's cleanup ends.

    @return: a Deferred firing with C{(stdout, stderr, exit status)}.
    """
    return runInOwnSession(testCase, "-m", "bench", *arguments)
