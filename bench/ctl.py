"""
phantomctl's cost: CPU seconds per `phantomctl status` against a running node.

The figure is `phantomctl status` as typed (the quick way: the standard library's socket, no
Twisted); the baseline is the same question asked through Twisted's reactor and AMP
(`phantomctl status --json`, the way every other command goes), run interleaved with it. Each
is the median of --rounds runs, as user plus system CPU of the child process (os.wait4). The
goal is under 0.3 s of CPU (issue #15).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from twisted.internet.defer import succeed

from bench.report import BenchmarkResult, RatioGoal

GOAL_CPU_SECONDS = 0.3


def addArguments(parser):
    """--rounds: runs of each way."""
    parser.add_argument("--rounds", type=int, default=10, help="runs of each way (default 10)")


def cpuSeconds(argv):
    """@return: the user plus system CPU seconds of running C{argv} to its end, and its exit code."""
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, child.returncode


def startNode(directory):
    """Start a C{twistd -n phantom} on a loopback address; @return: the process, once its control socket answers."""
    bin = os.path.dirname(sys.executable)
    node = subprocess.Popen(
        [os.path.join(bin, "twistd"), "-n", "--pidfile=", "--logfile=-", "phantom", "--port", "0",
         "--listen-address", "127.0.0.1", "--data-dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while cpuSeconds([os.path.join(bin, "phantomctl"), "--node", directory, "status"])[1] != 0:
        if time.monotonic() > deadline or node.poll() is not None:
            node.kill()
            raise RuntimeError("the node did not start")
        time.sleep(0.2)
    return node


def measure(reactor, options):
    """@return: a Deferred of the L{BenchmarkResult} (the run blocks the reactor: it has nothing else to do)."""
    directory = tempfile.mkdtemp(prefix="ctl", dir="/tmp")
    phantomctl = os.path.join(os.path.dirname(sys.executable), "phantomctl")
    node = startNode(directory)
    quick, twisted = [], []
    try:
        for _ in range(options.rounds):
            quick.append(cpuSeconds([phantomctl, "--node", directory, "status"])[0])
            twisted.append(cpuSeconds([phantomctl, "--node", directory, "status", "--json"])[0])
    finally:
        node.terminate()
        node.wait()
        shutil.rmtree(directory, ignore_errors=True)
    figure = statistics.median(quick)
    return succeed(BenchmarkResult(
        name="ctl",
        figures={"status_cpu_s": round(figure, 4)},
        baseline={"status_cpu_s": round(statistics.median(twisted), 4)},
        subject="phantomctl status",
        baselineName="through Twisted (status --json)",
        notes=f"median of {options.rounds} runs each, interleaved; goal < {GOAL_CPU_SECONDS} s CPU "
        f"({'met' if figure < GOAL_CPU_SECONDS else 'NOT met'})",
        goals={"status_cpu_s": RatioGoal(0.5, atLeast=False)},
    ))
