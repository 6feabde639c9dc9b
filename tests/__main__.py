"""
Run the test suite with trial and close with one line ``N passed, N failed, N skipped``.

    python -m tests [TRIAL ARGUMENTS...]      (default: the whole suite, ``tests``)

Exits non-zero when anything failed, when trial itself failed, or when no test ran at all
(trial alone exits 0 after running nothing).
"""

import re
import subprocess
import sys

SUMMARY = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")


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


def main(argv):
    command = [sys.executable, "-m", "twisted.trial", *(argv or ["tests"])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        output.append(line)
    code = process.wait()
    passed, failed, skipped = summarize("".join(output))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if code != 0 or failed or passed == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
