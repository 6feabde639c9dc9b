"""
Benchmarks: each measures its figures and a baseline in the same run and reports their ratios.

Run one with ``python -m bench NAME [--json] [options]``; ``python -m bench --help`` lists them.
Absolute figures depend on the machine and its load, so what a benchmark stands by is the ratio
to a baseline measured in the same process, interleaved with the figures themselves.

To add a benchmark, write a module in this package with:

    - a module docstring, whose first line is the description shown in the usage;
    - C{addArguments(parser)}, adding its own options (to scale the run) to an
      C{argparse.ArgumentParser};
    - C{measure(reactor, options)}, returning a Deferred that fires with a
      L{bench.report.BenchmarkResult};

and add its name to L{BENCHMARKS}. The command line, the table and the JSON output are common.
"""

BENCHMARKS = {
    "link": "bench.link",
    "dht": "bench.dht",
    "path": "bench.path",
    "tunnel": "bench.tunnel",
    "tun": "bench.tun",
    "ctl": "bench.ctl",
    "hostile": "bench.hostile",
    "anonymity": "bench.anonymity",
    "sim": "bench.sim",
    "cost": "bench.cost",
}
"""Benchmark name to the module that measures it."""
