"""
The command line: ``python -m bench NAME [--json] [options]``.

An unknown or missing NAME is a usage error (exit status 2) that lists the benchmarks.
"""

import argparse
import importlib
import sys

from twisted.internet.defer import Deferred

from bench import BENCHMARKS
from bench.report import renderJSON, renderTable


def buildParser():
    """
    @return: the C{argparse.ArgumentParser} with one sub-command per entry of
        L{bench.BENCHMARKS}, each with C{--json} and the benchmark's own options; the chosen
        benchmark's module is in the parsed options' C{benchmark}.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        usage=f"%(prog)s NAME [--json] [options], NAME one of: {', '.join(BENCHMARKS)}",
        description="Run one benchmark and print its figures next to a baseline measured in the same run.",
    )
    benchmarks = parser.add_subparsers(title="benchmarks", dest="name", metavar="NAME", required=True)
    for name, moduleName in BENCHMARKS.items():
        module = importlib.import_module(moduleName)
        summary = (module.__doc__ or "").strip().partition("\n")[0]
        benchmark = benchmarks.add_parser(
            name,
            prog=f"{parser.prog} {name}",
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        benchmark.add_argument(
            "--json",
            action="store_true",
            help='print one JSON object {"name", "figures", "baseline", "ratios"} instead of a table',
        )
        module.addArguments(benchmark)
        benchmark.set_defaults(benchmark=module)
    return parser


def main(argv=None):
    """
    Parse C{argv}, run the benchmark it names in the reactor and print its result; exits.

    @param argv: the arguments after the program name; C{None} for C{sys.argv[1:]}.
    """
    from twisted.internet.defer import CancelledError
    from twisted.internet.task import react

    options = buildParser().parse_args(argv)
    render = renderJSON if options.json else renderTable

    def failed(failure):
        if failure.check(CancelledError):
            print(f"python -m bench {options.name}: stopped before it finished; what it started is stopped", file=sys.stderr)
        else:
            failure.printTraceback(file=sys.stderr)
        raise SystemExit(1)

    def run(reactor):
        measuring = options.benchmark.measure(reactor, options)
        reactor.addSystemEventTrigger("before", "shutdown", stopMeasuring, measuring)
        measuring.addCallback(lambda result: print(render(result), flush=True))
        return measuring.addErrback(failed)

    react(run)


def stopMeasuring(measuring):
    """
    What the reactor's shutdown waits for (SIGTERM or SIGINT stops it): a measurement still
    running is cancelled, which runs its cleanup (a testnet taken down, processes stopped,
    directories removed) while the reactor still runs.

    @param measuring: the benchmark's Deferred.
    @return: C{None} if it has fired; otherwise a Deferred that fires once its cleanup is done.
    """
    if measuring.called:
        return None
    cleaned = Deferred()
    measuring.addBoth(lambda result: (cleaned.callback(None), result)[1])
    measuring.cancel()
    return cleaned


if __name__ == "__main__":
    main()
