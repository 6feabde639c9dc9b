"""How the project's command-line programs run: parse, run on the reactor, report, exit."""

import json
import os
import sys

from twisted.python import usage


def printOrQuit(text):
    """Print C{text}; a reader that went away (``... | head``) ends the program quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def runCommandLine(program, options, argv, expectedErrors, describe=lambda failure: str(failure.value)):
    """
    Parse C{argv} into C{options}, then run C{options.subOptions.run(reactor)}, a coroutine
    whose result (text, or a JSON-ready dict) is printed to stdout.

    The coroutine may instead return C{(result, exitCode)}. Exit status: 0 on success (or that
    code); 1 on one of C{expectedErrors}, printed as ``program: message`` on stderr; 2 on a
    usage error, printed with the usage. Anything else is a bug and its traceback is shown. A
    reader of stdout that goes away (``| head``) ends the program quietly.

    @param describe: makes the message of an expected error from its failure.
    """
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        innermost = options
        while getattr(innermost, "subOptions", None) is not None:
            innermost = innermost.subOptions
        print(f"{innermost}\n{program}: {e}", file=sys.stderr)
        sys.exit(2)

    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    def run(reactor):
        d = Deferred.fromCoroutine(options.subOptions.run(reactor))

        def show(result):
            result, code = result if isinstance(result, tuple) else (result, 0)
            if result is not None:
                printOrQuit(json.dumps(result, sort_keys=True) if isinstance(result, dict) else result)
            if code:
                raise SystemExit(code)

        def failed(failure):
            failure.trap(*expectedErrors)
            print(f"{program}: {describe(failure)}", file=sys.stderr)
            raise SystemExit(1)

        return d.addCallbacks(show, failed)

    react(run)
