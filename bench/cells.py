"""
Tunnel cells in one process: tampering, the sizes on the links, and the costs of cell sizes.

A L{CellChain} is a whole tunnel's data phase made of the real parts, in one process on a
driven clock: the client's L{OwnerTunnel} over its exit path's three hops (L{Splice}s with the
converters the relay and exit machines make), the ENTRY link, the server's entry path's three
hops and the server's L{OwnerTunnel}; every link a L{LocalLink}. Its middle hop on either path
can tamper with the next cell it sends either way.
"""

import argparse
import os
import random
import time
from contextlib import contextmanager
from statistics import median

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from bench.link import MIB, ByteCounter, Channel, measureRoundTrips, measureThroughput
from bench.relay import Relay
from phantom.identity import Identity
from phantom.link.local import LocalLink
from phantom.testnet.inprocess import startLinkService
from phantom.tunnel import keys, transport
from phantom.tunnel.keys import StreamLayer
from phantom.tunnel.transport import OwnerTunnel, Splice, TunnelAddress, plainAfter, plainBefore
from phantom.wire import tunnel as wire
from phantom.wire.link import Purpose
from phantom.wire.tunnel import BLOCK_SIZE

HOW = ("flip", "drop", "reorder", "inject", "replay", "rechunk")
"""The ways a relay tampers with a cell."""

PLACES = (("exit", "fromOwner"), ("exit", "toOwner"), ("entry", "fromOwner"), ("entry", "toOwner"))
"""The middle hop of which path tampers, with cells going which way (from or to its path's owner)."""

LEG_END = {("exit", "fromOwner"): "exit", ("exit", "toOwner"): "client", ("entry", "fromOwner"): "entry", ("entry", "toOwner"): "server"}
"""Where the cells tampered with at each place are next checked: a leg's end, the first node that can."""

HOPS = 3


class Keeper(Protocol):
    """Keeps what arrives; echoes it if C{echo}."""

    def __init__(self, echo=False):
        self.received = bytearray()
        self.echo = echo
        self.lost = False

    def dataReceived(self, data):
        self.received += data
        if self.echo:
            self.transport.write(data)

    def connectionLost(self, reason):
        self.lost = True


class CellChain:
    """
    One tunnel's data phase, 6 hops between two owners, in this process.

    @ivar sizes: the length of every frame sent on any link.
    @ivar accepted: how many cells each leg's end took as plain after the tampering: the exit
        node (C{"exit"}, from the client), the entry node (C{"entry"}, from the server), and the
        owners (C{"client"}, C{"server"}).
    """

    def __init__(self, echo=False, links=None, clock=None, protocols=None):
        """
        @param echo: whether the server's protocol echoes (with the default protocols).
        @param links: the 7 links from the client to the server, C{(client's end, server's
            end)} each; by default L{LocalLink}s on C{clock}.
        @param clock: C{IReactorTime}; by default a fresh driven L{Clock}.
        @param protocols: C{(client's, server's)} protocols; by default L{Keeper}s.
        """
        self.clock = clock if clock is not None else Clock()
        self.sizes = []
        self.accepted = dict.fromkeys(("exit", "entry", "client", "server"), 0)
        self.counting = False
        self.tamper = None
        exitHops = [(os.urandom(32), os.urandom(BLOCK_SIZE)) for _ in range(HOPS)]
        entryHops = [(os.urandom(32), os.urandom(BLOCK_SIZE)) for _ in range(HOPS)]
        # Links from the client to the server: clientSide[i] is the end on the client's side.
        ends = list(links) if links is not None else [self._link() for _ in range(2 * HOPS + 1)]
        self.splices = []
        # The exit path: a is the link on the side away from the owner (the block went there).
        for index, (key, material) in enumerate(exitHops):
            layer = StreamLayer(key, material)
            a, b = ends[index + 1][0], ends[index][1]
            along, against = layer.along, layer.against
            if index == HOPS - 1:
                along, against = self._counted(plainAfter(along), "exit"), plainBefore(against)
            self._splice("exit", index, a, b, self._tampered("exit", index, "toOwner", against, b), self._tampered("exit", index, "fromOwner", along, a))
        # The entry path, its hops from the entry node (next to the ENTRY link) to x0.
        for index in range(HOPS):
            layer = StreamLayer(*entryHops[HOPS - 1 - index])
            link = HOPS + index
            a, b = ends[link + 1][0], ends[link][1]  # a: the owner's side; b: the entry node's
            along, against = layer.along, layer.against
            if index == 0:
                against, along = self._counted(plainAfter(against), "entry"), plainBefore(along)
            position = HOPS - 1 - index  # x0 is next to the owner
            self._splice("entry", position, a, b, self._tampered("entry", position, "fromOwner", against, b), self._tampered("entry", position, "toOwner", along, a))
        self.client = OwnerTunnel(ends[0][0], [StreamLayer(*pair) for pair in exitHops], True, TunnelAddress(None), TunnelAddress(None), self.clock)
        self.server = OwnerTunnel(ends[-1][1], [StreamLayer(*pair) for pair in entryHops], False, TunnelAddress(None), TunnelAddress(None), self.clock)
        for owner, name in ((self.client, "client"), (self.server, "server")):
            received = owner.frameReceived
            owner.frameReceived = self._countedOwner(received, name)
        ends[0][0].attach(self.client)
        ends[-1][1].attach(self.server)
        self.clientProtocol, self.serverProtocol = protocols if protocols is not None else (Keeper(), Keeper(echo))
        self.client.start(self.clientProtocol)
        self.server.start(self.serverProtocol)

    def _link(self):
        a, b = LocalLink.between((b"a" * 32, "10.0.0.1", 1), (b"b" * 32, "10.0.0.2", 1), self.clock)
        for end in (a, b):
            send = end.sendFrames
            end.sendFrames = lambda payloads, send=send: (self.sizes.extend(map(len, payloads)), send(payloads))[1]
        return a, b

    def _splice(self, kind, position, a, b, aToB, bToA):
        splice = Splice(a, b, aToB, bToA, self.clock)
        a.attach(splice.ends[0])
        b.attach(splice.ends[1])
        self.splices.append(splice)

    def _counted(self, convert, name):
        def counted(payload):
            converted = convert(payload)
            if self.counting:
                self.accepted[name] += 1
            return converted

        return counted

    def _countedOwner(self, received, name):
        def counted(payload):
            before = self.client.bytesReceived + self.server.bytesReceived
            received(payload)
            if self.counting and self.client.bytesReceived + self.server.bytesReceived > before:
                self.accepted[name] += 1

        return counted

    def _tampered(self, kind, position, direction, convert, target):
        held = []

        def tampered(payload):
            converted = convert(payload)
            if held:
                target.sendFrame(converted)
                return held.pop()
            if self.tamper != (kind, position, direction):
                return converted
            how, self.tamper = self.how, None
            self.counting = True
            if how == "flip":
                bit = self.rng.randrange(8 * len(converted))
                flipped = bytearray(converted)
                flipped[bit // 8] ^= 0x80 >> bit % 8
                return bytes(flipped)
            if how == "drop":
                return None
            if how == "reorder":
                held.append(converted)
                return None
            if how == "inject":
                target.sendFrame(os.urandom(len(converted)))
                return converted
            if how == "replay":
                target.sendFrame(converted)
                return converted
            target.sendFrame(converted[: len(converted) // 2])
            return converted[len(converted) // 2 :]

        return tampered

    def arm(self, kind, direction, how, rng):
        """The middle hop of C{kind}'s path tampers C{how} with the next cell it sends C{direction}."""
        self.tamper, self.how, self.rng = (kind, 1, direction), how, rng

    def settle(self):
        while self.clock.getDelayedCalls():
            self.clock.advance(0)

    @property
    def closed(self):
        return self.clientProtocol.lost and self.serverProtocol.lost


def tamperingEvents(events, rng=None):
    """
    C{events} tampering events of every kind in L{HOW}, spread over the places in L{PLACES},
    each on a fresh L{CellChain}: a message each way, then the tampering with the next cell
    while two more go each way.

    @return: C{(reached, closed, total)}: per kind, the events after which a leg's end took a
        cell as plain, or an owner's protocol got a byte not sent in order (a tag that reached
        the far end); the events after which the tunnel closed; and the events in all.
    """
    rng = rng or random.Random()
    reached, closed = dict.fromkeys(HOW, 0), dict.fromkeys(HOW, 0)
    for how in HOW:
        for event in range(events):
            kind, direction = PLACES[event % len(PLACES)]
            chain = CellChain(echo=False)
            sent = {"client": [], "server": []}

            def exchange():
                for name, owner in (("client", chain.client), ("server", chain.server)):
                    message = os.urandom(rng.randrange(1, 3000))
                    sent[name].append(message)
                    owner.write(message)
                chain.settle()

            exchange()
            chain.arm(kind, direction, how, rng)
            exchange()
            exchange()
            # The genuine copy of a replayed cell may arrive: the copy after it may not.
            allowed = 2 if how == "replay" else 1
            intact = all(
                b"".join(sent[sender]).startswith(bytes(protocol.received)) and len(protocol.received) <= len(b"".join(sent[sender][:allowed]))
                for sender, protocol in (("server", chain.clientProtocol), ("client", chain.serverProtocol))
                if (sender == "client") == ((kind == "exit") == (direction == "fromOwner"))
            )
            passed = chain.accepted[LEG_END[kind, direction]] > (1 if how == "replay" else 0) or not intact
            reached[how] += passed
            closed[how] += chain.closed
    return reached, closed, len(HOW) * events


def distinctSizes(rng=None, writes=300):
    """
    @return: C{(cells, writes)}: the distinct frame sizes on every link of a L{CellChain} while
        the client writes C{writes} random-sized chunks (1 byte to 20 KiB, several a turn) and
        the server echoes; and the distinct sizes of those writes (the frames before cells).
    """
    rng = rng or random.Random()
    chain = CellChain(echo=True)
    written = set()
    for _ in range(writes // 3):
        for _ in range(3):
            size = rng.randrange(1, 20 * 1024)
            written.add(size)
            chain.client.write(os.urandom(size))
        chain.settle()
    return len(set(chain.sizes)), len(written)


@contextmanager
def cellSize(size):
    """Cells of C{size} bytes for a while, in this process (to measure what other sizes cost)."""
    names = [(wire, "CELL_SIZE"), (wire, "CELL_CAPACITY"), (keys, "CELL_SIZE"), (transport, "CELL_CAPACITY")]
    saved = [getattr(module, name) for module, name in names]
    values = {"CELL_SIZE": size, "CELL_CAPACITY": size - wire.CELL_HEADER_SIZE}
    for module, name in names:
        setattr(module, name, values[name])
    try:
        yield
    finally:
        for (module, name), value in zip(names, saved):
            setattr(module, name, value)


def sizeCosts(size, mib=4, trips=200):
    """
    The CPU a L{CellChain} with cells of C{size} bytes spends, all 6 hops and both owners in
    this process: on a bulk transfer of C{mib} MiB (writes of 64 KiB), in ms per MiB, and on a
    1 KiB round trip through an echo, in ms; and the bytes each link carries per byte of a
    1 KiB message.
    """
    with cellSize(size):
        chain = CellChain(echo=False)
        chunk = os.urandom(64 * 1024)
        started = time.process_time()
        for _ in range(mib * 16):
            chain.client.write(chunk)
            chain.settle()
        bulk = (time.process_time() - started) * 1000 / mib
        chain = CellChain(echo=True)
        ping = os.urandom(1024)
        started = time.process_time()
        for _ in range(trips):
            chain.client.write(ping)
            chain.settle()
        trip = (time.process_time() - started) * 1000 / trips
        return bulk, trip, size / 1024


# Cell sizes over real TLS links: the whole tunnel in this process against the bare chain.


class _Counting(Protocol):
    """Counts what arrives in a L{ByteCounter}; echoes it if C{echo}."""

    def __init__(self, counter, echo=False):
        self.counter = counter
        self.echo = echo

    def dataReceived(self, data):
        if self.echo:
            self.transport.write(data)
        self.counter.add(len(data))

    def connectionLost(self, reason):
        self.counter.lost(reason)


class _Unattached:
    """A TUNNEL link's handler until the chain attaches its own (no frame comes before)."""

    def frameReceived(self, payload):
        raise AssertionError("a frame before the chain was made")

    def linkClosed(self, reason):
        pass


class TLSRoutes:
    """
    A tunnel's data phase over real TLS links on loopback, all in this process (8 link
    services, 7 TUNNEL links, the L{CellChain} of the real parts on them), and the bare chain
    L{bench.tunnel} compares it with: 8 relays (L{bench.relay.Relay}), the first accepting plain
    TCP, the next 7 over TLS, the last carrying to a sink or echo service here. Neither has the
    tunnel's end-to-end TLS. Call L{start} first.
    """

    def __init__(self, reactor, host="127.0.0.1"):
        self.reactor = reactor
        self.host = host

    async def start(self):
        self.services = [startLinkService(self.reactor, self.host, Identity.generate()) for _ in range(2 * HOPS + 2)]
        self._arriving = {}
        for service in self.services:
            service.registerPurpose(Purpose.TUNNEL, self._arrived)
        self._purpose = Purpose.TUNNEL
        self.relays = [Relay(self.reactor, index > 0, self.host) for index in range(2 * HOPS + 2)]
        ports = [await relay.listen() for relay in self.relays]
        self._listening = list(ports)
        self.counter = None

        def serving(echo):
            factory = Factory.forProtocol(lambda: _Counting(self.counter, echo))
            factory.noisy = False
            return TCP4ServerEndpoint(self.reactor, 0, interface=self.host).listen(factory)

        self._sink, self._echo = await serving(False), await serving(True)
        self._listening += [self._sink, self._echo]
        for relay, following, port in zip(self.relays, self.relays[1:], ports[1:]):
            relay.setNextHop({"host": self.host, "port": port.getHost().port, "node_id": following.nodeId.hex()})
        self._first = ports[0].getHost().port

    def _arrived(self, link):
        # In a later turn: the link service attaches what this returns once it has returned.
        self.reactor.callLater(0, self._arriving.pop(link.linkId).callback, link)
        return _Unattached()

    async def _links(self):
        pairs = []
        for near, far in zip(self.services, self.services[1:]):
            linkId = os.urandom(16)
            arrived = self._arriving[linkId] = Deferred()
            address = far.listeningAddress
            opened = await near.connect(address.host, address.port, self._purpose, linkId, far.nodeId)
            pairs.append((opened, await arrived))
        return pairs

    async def tunnel(self, echo):
        """@return: a L{bench.link.Channel} from the client owner, over a fresh tunnel."""
        counter = ByteCounter()
        clientProtocol = _Counting(counter if echo else _Ignore())
        serverProtocol = _Counting(_Ignore() if echo else counter, echo)
        chain = CellChain(links=await self._links(), clock=self.reactor, protocols=(clientProtocol, serverProtocol))
        closed = Deferred()
        chain.client.whenClosed.append(lambda: closed.called or closed.callback(None))
        return Channel(chain.client.write, chain.client, counter, chain.client.loseConnection, closed)

    async def bare(self, echo):
        """@return: a L{bench.link.Channel} through the relays, to the sink or the echo."""
        counter = ByteCounter()
        self.counter = _Ignore() if echo else counter
        port = (self._echo if echo else self._sink).getHost().port
        self.relays[-1].setNextHop({"host": self.host, "port": port, "node_id": None})
        protocol = _Counting(counter if echo else _Ignore())
        await connectProtocol(TCP4ClientEndpoint(self.reactor, self.host, self._first), protocol)
        closed = Deferred()
        protocol.connectionLost = lambda reason: closed.called or closed.callback(None)
        transport = protocol.transport
        return Channel(transport.write, transport, counter, transport.loseConnection, closed)

    async def stop(self):
        for port in self._listening:
            await maybeDeferred(port.stopListening)
        await gatherResults([service.stopService() for service in self.services], consumeErrors=True)


class _Ignore:
    """Counts nothing: a L{ByteCounter} for bytes nobody waits for."""

    def add(self, size):
        pass

    def lost(self, reason):
        pass


async def tlsSizeCosts(reactor, sizes, rounds=5, batches=6, mib=2, trips=60):
    """
    What cells of each of C{sizes} cost the whole tunnel over real TLS links in this process,
    against the bare chain (L{TLSRoutes}), interleaved finely so that a shared machine's load
    weighs on all alike: in each round, one connection per route (a tunnel per size, and the
    chain) carries C{batches} bulk transfers of C{mib} MiB each, the routes in turn (reversed
    every other batch), then another per route C{batches} times C{trips} 1 KiB round trips.
    (Neither route has the tunnel's end-to-end TLS, nor a process per node: what the cell size
    changes, not what C{bench tunnel} measures.)

    @return: C{{route: [(bulk CPU ms per MiB, CPU ms per round trip, median round trip ms),
        ...]}}, one tuple a round, for the routes C{"chain"} and each size.
    """
    routes = TLSRoutes(reactor)
    await routes.start()
    names = ["chain"] + list(sizes)
    results = {name: [] for name in names}

    def sized(name):
        return cellSize(wire.CELL_SIZE if name == "chain" else name)

    try:
        for round in range(rounds):
            cpu = {name: [0.0, 0.0] for name in names}
            times = {name: [] for name in names}
            for echo in (False, True):
                channels = {}
                for name in names:
                    with sized(name):
                        channels[name] = await (routes.bare(echo) if name == "chain" else routes.tunnel(echo))
                        # The first bytes wait for connections (the chain's) to be made.
                        await (measureRoundTrips(channels[name], 10) if echo else measureThroughput(channels[name], MIB // 4))
                for batch in range(batches):
                    for name in names if (batch + round) % 2 == 0 else names[::-1]:
                        with sized(name):
                            started = time.process_time()
                            if echo:
                                times[name] += await measureRoundTrips(channels[name], trips)
                            else:
                                await measureThroughput(channels[name], int(mib * MIB))
                            cpu[name][echo] += time.process_time() - started
                for name in names:
                    with sized(name):
                        await channels[name].close()
            for name in names:
                bulk, trip = cpu[name]
                results[name].append((bulk * 1000 / (batches * mib), trip * 1000 / (batches * trips), median(times[name]) * 1000))
    finally:
        await routes.stop()
    return results


def tlsSizeTable(results):
    """@return: lines of text: each size's medians of L{tlsSizeCosts}' figures, and of their ratios to the chain's in each round."""
    chain = results["chain"]
    lines = ["route: bulk CPU ms/MiB (ratio to the chain's), 1 KiB round trip CPU ms (ratio), round trip ms (ratio); medians over rounds"]
    for name, rows in results.items():
        figures = [median(row[index] for row in rows) for index in range(3)]
        if name == "chain":
            lines.append(f"    chain: {figures[0]:.1f}, {figures[1]:.3f}, {figures[2]:.3f}")
            continue
        ratios = [median(row[index] / base[index] for row, base in zip(rows, chain)) for index in range(3)]
        lines.append(f"    {name}: " + ", ".join(f"{figure:.{3 if index else 1}f} ({ratio:.2f})" for index, (figure, ratio) in enumerate(zip(figures, ratios))))
    return lines


def main(argv=None):
    """
    C{python -m bench.cells [--rounds N] SIZE ...}: L{tlsSizeCosts} for cells of each size (by
    default 16,379 and 8,165 bytes: one 16 KiB or one 8 KiB TLS record with the frame header),
    printed as L{tlsSizeTable}.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.cells", description=main.__doc__)
    parser.add_argument("sizes", type=int, nargs="*", default=[16384 - 5, 8192 - 27])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=6)
    options = parser.parse_args(argv)

    async def run(reactor):
        results = await tlsSizeCosts(reactor, options.sizes, options.rounds, options.batches)
        print("\n".join(tlsSizeTable(results)))

    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
