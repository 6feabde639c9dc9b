"""How the project's command-line programs run: parse, run on the reactor, report, exit."""

import json
import sys

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage


def runCommandLine(program, options, argv, expectedErrors, describe=lambda failure: str(failure.value)):
    """
    Parse C{argv} into C{options}, then run C{options.subOptions.run(reactor)}, a coroutine
    whose result (text, or a JSON-ready dict) is printed to stdout.

    Exit status: 0 on success; 1 on one of C{expectedErrors}, printed as ``program: message``
    on stderr; 2 on a usage error, printed with the usage. Anything else is a bug and its
    traceback is shown.

    @param describe: makes the message of an expected error from its failure.
    """
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"{getattr(options, 'subOptions', None) or options}\n{program}: {e}", file=sys.stderr)
        sys.exit(2)

    def run(reactor):
        d = Deferred.fromCoroutine(options.subOptions.run(reactor))

        def show(result):
            if result is not None:
                print(json.dumps(result, sort_keys=True) if isinstance(result, dict) else result, flush=True)

        def failed(failure):
            failure.trap(*expectedErrors)
            print(f"{program}: {describe(failure)}", file=sys.stderr)
            raise SystemExit(1)

        return d.addCallbacks(show, failed)

    react(run)
