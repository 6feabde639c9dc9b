"""
Not collected by the suite: a benchmark that runs until it is stopped, run as
C{python -m tests.bench.stoppable} by L{tests.bench.test_bench.CommandLineTests} to show that
C{python -m bench} stopped by SIGTERM runs a measurement's cleanup before it exits. C{STATE_FILE}
in the environment names the file it writes C{started} to, then C{cleaned} once its cleanup
(which waits a little, as taking a testnet down does) is done.
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

import bench
from bench.__main__ import main


def addArguments(parser):
    """No options of its own."""


def measure(reactor, options):
    """@return: a Deferred that fires only if the measurement is cancelled, after its cleanup."""
    return Deferred.fromCoroutine(_measure(reactor))


async def _measure(reactor):
    _note("started")
    try:
        await Deferred()
    finally:
        await deferLater(reactor, 0.2, lambda: None)
        _note("cleaned")


def _note(state):
    with open(os.environ["STATE_FILE"], "a") as states:
        states.write(state + "\n")


if __name__ == "__main__":
    bench.BENCHMARKS["stoppable"] = "tests.bench.stoppable"
    main(["stoppable"])
