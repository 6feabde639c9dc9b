"""
Run the test suite with trial and close with one line ``N passed, N failed, N skipped``.

    python -m tests [TRIAL ARGUMENTS...]      (default: the whole suite)

With no arguments the suite runs in two parts: the tests that run in this process (fakes,
driven clocks, sockets on loopback addresses of their own) in parallel, one trial worker per
core (at most L{MAX_JOBS}); then, one at a time, the tests that use what the whole machine
shares (network namespaces, tun devices, twistd processes on testnets, Docker), listed in
L{ONE_AT_A_TIME}. With arguments, trial runs them as given, in one part.

Exits non-zero when anything failed, when trial itself failed, or when no test ran at all
(trial alone exits 0 after running nothing).
"""

import os
import pkgutil
import re
import subprocess
import sys

SUMMARY = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")

ONE_AT_A_TIME = (
    "tests.system",
    "tests.testnet",
    "tests.bench",
    "tests.frontend.test_device",
    "tests.test_docker",
)
"""The modules and packages whose tests use the machine's shared resources."""

MAX_JOBS = 2


def summarize(output):
    """
    @param output: trial's output.
    @return: C{(passed, failed, skipped)} from trial's closing line; all zero if there is none.
    """
    for line in reversed(output.splitlines()):
        match = SUMMARY.match(line)
        if match:
            counts = {name: int(value) for name, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
            passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
            failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
            return passed, failed, counts.get("skips", 0)
    return 0, 0, 0


def inParallel():
    """
    @return: the top-level test modules and packages under C{tests} that are not in
        L{ONE_AT_A_TIME} and contain none of them, sorted.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for module in pkgutil.iter_modules([here]):
        name = f"tests.{module.name}"
        if name in ONE_AT_A_TIME:
            continue
        if module.ispkg:
            inner = [one for one in ONE_AT_A_TIME if one.startswith(name + ".")]
            if inner:
                parts.extend(
                    f"{name}.{sub.name}"
                    for sub in pkgutil.iter_modules([os.path.join(here, module.name)])
                    if f"{name}.{sub.name}" not in inner and sub.name.startswith("test")
                )
                continue
        elif not module.name.startswith("test"):
            continue
        parts.append(name)
    return sorted(parts)


def runTrial(arguments):
    """
    Run trial with C{arguments}, echoing its output.

    @return: C{(exit code, passed, failed, skipped)}.
    """
    command = [sys.executable, "-m", "twisted.trial", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        output.append(line)
    code = process.wait()
    return (code, *summarize("".join(output)))


def main(argv):
    if argv:
        runs = [argv]
    else:
        jobs = min(MAX_JOBS, os.cpu_count() or 1)
        runs = [([f"--jobs={jobs}"] if jobs > 1 else []) + inParallel(), list(ONE_AT_A_TIME)]
    code, passed, failed, skipped = 0, 0, 0, 0
    for arguments in runs:
        result = runTrial(arguments)
        code = code or result[0]
        passed, failed, skipped = passed + result[1], failed + result[2], skipped + result[3]
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if code != 0 or failed or passed == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
