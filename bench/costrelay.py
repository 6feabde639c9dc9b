"""
The relay process the cost benchmark (L{bench.cost}) measures: what a node carrying tunnels holds.

    python -m bench.costrelay --host H [--trace]

The relay is a node's link layer (L{phantom.link.service.LinkService}: TLS links with pinned
node ids, frames, the node's default L{phantom.config.LinkLimits}) on a free port of C{--host},
with a fresh identity, and what a node keeps of each tunnel it carries once the setup is done
(L{phantom.tunnel.service.TunnelService} splicing for L{phantom.tunnel.relay.RelaySetup}): a
L{Splice} of the TUNNEL link that came to it with one it opened onwards, each frame through the
hop's L{StreamLayer} (a L{CellCipher} each way), the first through L{firstThen}, as the
relay's machine gives them (the watch on the path's end that closes the splice is left out: a
callback on the path's L{Ending}). Each TUNNEL link that arrives is carried to the next of the next
hops, in turn, under the same link id; the setup blocks themselves are not played (their
machines have ended once a tunnel is open, and L{bench.cost} measures their CPU no more than a
node's other one-off work).

It prints one JSON line on stdout, C{{"port": P, "node_id": HEX}}, then answers each JSON line
on stdin with one JSON line:

    - C{{"next": [{"host", "port", "node_id"}, ...]}}: the next hops; C{{"ready": true}}.
    - C{{"stats": true}}: after a garbage collection, C{{"carried": tunnels, "links": open
      links, "traced": bytes tracemalloc holds or null}}.
    - C{{"cpu": true}}: C{{"cpu": its process time in seconds}} (without a garbage collection).
    - C{{"mark": true}}: tracemalloc takes the snapshot later C{top} requests compare with.
    - C{{"top": N}}: the N source lines whose allocations grew most since the mark, as
      C{[["file:line", bytes, count], ...]}.
    - C{{"trim": true}}: C{malloc_trim(0)}, glibc's giving back of the free memory it keeps.
    - C{{"malloc": true}}: after a garbage collection, the C allocator's figures
      (L{mallocFigures}): C{{"in_use": bytes, "free": bytes}}.
    - C{{"profile": true}} starts a CPU profile (C{cProfile} on process time);
      C{{"profile": false, "lines": N}} stops it and answers C{{"profile": text}}, its N costliest
      functions.
    - C{{"gc": true}}: C{{"gc": gc.get_stats(), "objects": objects the collector tracks}}.

With C{--trace} tracemalloc runs from the start (it slows the process: CPU figures come from a
relay without it). The relay runs until stdin is closed.
"""

import argparse
import cProfile
import ctypes
import gc
import io
import json
import os
import pstats
import sys
import time
import tracemalloc

from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from phantom.identity import Identity
from phantom.link.interfaces import ILinkHandler
from phantom.testnet.inprocess import startLinkService
from phantom.tunnel.keys import KEY_SIZE, StreamLayer
from phantom.tunnel.transport import Splice, firstThen
from phantom.wire.link import Purpose
from phantom.wire.tunnel import BLOCK_SIZE


class _MallInfo2(ctypes.Structure):
    """glibc's C{struct mallinfo2}."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def mallocFigures():
    """
    What glibc's allocator holds in this process (C{mallinfo2}): OpenSSL's memory and every
    other C allocation, with the Python objects too large for Python's own allocator (over 512
    bytes); the small Python objects live in arenas of their own, outside these figures.

    @return: C{{"in_use": bytes allocated and not freed, "free": bytes freed but kept}}.
    """
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


@implementer(ILinkHandler)
class _Waiting:
    """A TUNNEL link's frames while its onward link is being opened (none come: the driver waits)."""

    def __init__(self, link):
        self.link = link

    def frameReceived(self, payload):
        self.link.abort("a frame before the tunnel was carried on")

    def linkClosed(self, reason):
        pass


class CostRelay:
    """
    The relay's state: its link service, next hops and carried tunnels.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @param host: the IPv4 address to listen on and connect from.
    """

    def __init__(self, reactor, host):
        self._reactor = reactor
        self.links = startLinkService(reactor, host, Identity.generate())
        self.links.registerPurpose(Purpose.TUNNEL, self._arrived)
        self.nextHops = []
        self.carried = set()
        self._turn = 0
        self._mark = None

    def _arrived(self, link):
        hop = self.nextHops[self._turn % len(self.nextHops)]
        self._turn += 1
        opening = self.links.connect(hop["host"], hop["port"], Purpose.TUNNEL, link.linkId, bytes.fromhex(hop["node_id"]))
        opening.addCallbacks(lambda onward: self._carry(link, onward), lambda failure: link.close())
        return _Waiting(link)

    def _carry(self, a, b):
        # What RelaySetup.linkOpened and TunnelService._carry leave behind for one tunnel.
        layer = StreamLayer(os.urandom(KEY_SIZE), os.urandom(BLOCK_SIZE))
        splice = Splice(a, b, firstThen(layer.along, layer.along), firstThen(layer.against, layer.against), self._reactor, onClosed=lambda: self.carried.discard(splice))
        self.carried.add(splice)
        a.attach(splice.ends[0])
        b.attach(splice.ends[1])

    def answer(self, request):
        """@return: the answer to one request (see the module's docstring)."""
        if "next" in request:
            self.nextHops = request["next"]
            return {"ready": True}
        if "cpu" in request:
            return {"cpu": time.process_time()}
        if "stats" in request:
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
            return {"carried": len(self.carried), "links": len(self.links.links), "traced": traced}
        if "profile" in request:
            if request["profile"]:
                self._profile = cProfile.Profile(time.process_time)
                self._profile.enable()
                return {"profiling": True}
            self._profile.disable()
            out = io.StringIO()
            pstats.Stats(self._profile, stream=out).sort_stats("tottime").print_stats(request.get("lines", 25))
            return {"profile": out.getvalue()}
        if "gc" in request:
            return {"gc": gc.get_stats(), "objects": len(gc.get_objects())}
        if "malloc" in request:
            gc.collect()
            return mallocFigures()
        if "trim" in request:
            ctypes.CDLL(None).malloc_trim(0)
            return {"trimmed": True}
        if "mark" in request:
            gc.collect()
            self._mark = tracemalloc.take_snapshot()
            return {"marked": True}
        if "top" in request:
            gc.collect()
            stats = tracemalloc.take_snapshot().compare_to(self._mark, "lineno")
            return {"top": [[str(stat.traceback[0]), stat.size_diff, stat.count_diff] for stat in stats[: request["top"]]]}
        return {"error": f"unknown request {sorted(request)}"}


class Control(LineOnlyReceiver):
    """Requests on stdin, answers on stdout; stops the reactor when stdin closes."""

    delimiter = b"\n"

    def __init__(self, relay, reactor):
        self._relay = relay
        self._reactor = reactor

    def lineReceived(self, line):
        say(self._relay.answer(json.loads(line)))

    def connectionLost(self, reason):
        if self._reactor.running:
            self._reactor.stop()


def quietLogging():
    """
    Begin logging, as a node does at startup, to standard error from errors up: until logging
    begins, Twisted keeps the last 65,536 events, and with them the objects that logged them.
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])], redirectStandardIO=False)


def say(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv=None):
    """Run the relay; see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.costrelay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="the address to listen on and connect from")
    parser.add_argument("--trace", action="store_true", help="run tracemalloc from the start")
    options = parser.parse_args(argv)
    if options.trace:
        tracemalloc.start()

    from twisted.internet import reactor, stdio

    quietLogging()

    def start():
        relay = CostRelay(reactor, options.host)
        say({"port": relay.links.listeningAddress.port, "node_id": relay.links.nodeId.hex()})
        stdio.StandardIO(Control(relay, reactor), reactor=reactor)

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
