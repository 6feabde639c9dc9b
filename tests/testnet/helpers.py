"""
For the testnet tests: short temporary testnet directories, looking for processes without the
code under test, and running the C{phantom-testnet} command.
"""

import os
import shutil
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue


def shortTemporaryDirectory(testCase):
    """
    A new directory under /tmp with a short path (control sockets live below it), removed on
    cleanup unless a process still uses it (then its manifest is kept for C{phantom-testnet down}).
    """
    directory = tempfile.mkdtemp(prefix="tn", dir="/tmp")

    def remove():
        if not processesMentioning(directory):
            shutil.rmtree(directory, ignore_errors=True)

    testCase.addCleanup(remove)
    return directory


def processesMentioning(text):
    """
    @return: the pids of every process whose command line contains C{text}, found without the
        code under test.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def isRunning(pid):
    """@return: whether process C{pid} exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


async def runCommand(*arguments):
    """
    Run C{phantom-testnet ARGUMENTS} through its real entry point, in a child process.

    @return: (stdout, stderr, exit code), the outputs as text.
    """
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "phantom.testnet.cli", *arguments], env=os.environ, reactor=reactor
    )
    return out.decode(), err.decode(), code
