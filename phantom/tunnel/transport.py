"""
The two ends of a tunnel's data phase: the owner's end, a transport any Twisted protocol can
run over, and a splice that joins two links at a node in between, each frame through a function.
Data travels in cells (L{phantom.wire.tunnel.CELL_SIZE} bytes, one per DATA frame) under each
hop's L{phantom.tunnel.keys.CellCipher}; the owners and the two nodes where a tunnel's paths
meet (the exit node and the entry node) check that every cell they take is a plain cell.
"""

from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone
from zope.interface import implementer

from phantom.address import formatAddress
from phantom.link.interfaces import ILinkHandler
from phantom.wire import ProtocolError
from phantom.wire.tunnel import CELL_CAPACITY, buildCell, parseCell, requireCell


@implementer(IAddress)
class TunnelAddress:
    """One end of a tunnel: an AP-address (C{None} where it is not known)."""

    def __init__(self, apAddress):
        self.apAddress = apAddress

    def __repr__(self):
        return f"TunnelAddress({formatAddress(self.apAddress) if self.apAddress else 'unknown'})"

    def __eq__(self, other):
        return isinstance(other, TunnelAddress) and other.apAddress == self.apAddress

    def __hash__(self):
        return hash(self.apAddress)


class Soon:
    """
    One call of C{f}, made as soon as what is being handled now has been: after the socket read
    that C{source} is handling (L{phantom.link.interfaces.ILink.afterRead}), or else in the
    reactor's next turn. Scheduling it again before it runs changes nothing; once cancelled,
    neither the read's end nor the turn makes it.

    @param clock: C{IReactorTime}.
    @param source: the L{phantom.link.interfaces.ILink} whose frames bring the work, or C{None}.
    """

    def __init__(self, clock, source, f):
        self._clock = clock
        self._source = source
        self._f = f
        self._call = None
        self._afterRead = None

    def schedule(self, nextTurn=False):
        """
        Make the call soon, unless it is made soon already.

        @param nextTurn: make it in the reactor's next turn even during a read.
        """
        if self._call is not None or self._afterRead is not None:
            return
        if not nextTurn and self._source is not None:
            # A call the link keeps stays with it when cancelled: each read's has its own token.
            token = self._afterRead = object()
            if self._source.afterRead(lambda: self._readDone(token)):
                return
            self._afterRead = None
        self._call = self._clock.callLater(0, self._turnDone)

    def cancel(self):
        """Do not make the call (until scheduled again)."""
        call, self._call, self._afterRead = self._call, None, None
        if call is not None and call.active():
            call.cancel()

    def _readDone(self, token):
        if self._afterRead is token:
            self._afterRead = None
            self._f()

    def _turnDone(self):
        self._call = None
        self._f()


MOST_GATHERED = 16
"""The most cells an L{Outbox} gathers (256 KiB): the next one goes with them at once."""


class Outbox:
    """
    The cells going out on one link, gathered while the node handles one socket read (the cells
    a splice passes on) or one turn of the reactor, and sent at its end with one write
    (L{phantom.link.interfaces.ILink.sendFrames}): the TLS layer then makes full records of
    them, and a read or a turn costs it one call instead of one per cell. The cells leave no
    later than they would have: a link's writes reach the socket only once the reactor is
    back from the turn anyway. At most L{MOST_GATHERED} cells wait: a program that writes
    until its producer is paused is paused by the link while it writes, not after the turn
    (which it would fill with everything it has).

    @param link: the L{phantom.link.interfaces.ILink}.
    @param clock: C{IReactorTime}, whose turns gather.
    @param finish: called when the gathered cells are about to go, with whether it is the last
        time (the tunnel closing): it may L{add} a last one (the owner's padded rest of a turn's
        writes), or L{schedule} another flush.
    @param source: the link whose reads bring the cells (L{Soon}), or C{None}.
    """

    def __init__(self, link, clock, finish=None, source=None):
        self._link = link
        self._finish = finish
        self._cells = []
        self._flushing = Soon(clock, source, self.flush)

    def send(self, cell):
        """Send C{cell} as one frame at the end of this read or turn (or now, with those gathered, if they are many)."""
        self._cells.append(cell)
        if len(self._cells) > MOST_GATHERED:
            self.flush()
        else:
            self._flushing.schedule()

    def schedule(self, nextTurn=False):
        """
        Flush at the end of this read or turn.

        @param nextTurn: at the end of the reactor's next turn, even during a read.
        """
        self._flushing.schedule(nextTurn)

    def add(self, cell):
        """Add C{cell} to the cells going out, from C{finish}."""
        self._cells.append(cell)

    def __len__(self):
        """How many cells are gathered."""
        return len(self._cells)

    def flush(self, last=False):
        """
        Send the cells gathered now.

        @param last: whether nothing is sent after them: C{finish} may hold back nothing.
        """
        self._flushing.cancel()
        if self._finish is not None:
            self._finish(last)
        cells, self._cells = self._cells, []
        if cells:
            self._link.sendFrames(cells)

    def drop(self):
        """Forget the cells gathered, unsent."""
        self._cells = []
        self._flushing.cancel()


@implementer(ITransport, IConsumer, IPushProducer, ILinkHandler)
class OwnerTunnel:
    """
    The owner's end of an open tunnel: a transport that packs what it writes into cells and
    wraps each in every hop's layer, so that the hops, adding theirs, make it a plain cell; and
    that removes every hop's layer from each cell it reads, and checks it. A cell that does not
    check out closes the tunnel: it was altered, dropped, reordered, injected or replayed on the
    way, and every cell after it would fail as well.

    @param link: the tunnel link to x0 (or, with no layers, the ENTRY link).
    @param layers: the L{phantom.tunnel.keys.StreamLayer} of every hop, x0's first.
    @param sendsAlong: whether data this end sends travels the way the setup block came (an
        exit path's owner) or against it (an entry path's owner).
    @param host: this end's L{TunnelAddress}; C{peer}: the far end's.
    @param clock: C{IReactorTime}: when the tunnel was last active, and the turns of the
        reactor. What is written in a turn (or while a read of the link is handled, as when
        the protocol answers what arrived) goes at its end, in as few cells as it fills, the
        last one padded (the many small writes of a turn, such as TLS records, share cells);
        but after a turn that filled whole cells, the rest waits for the next turn that does
        not (a bulk transfer pads no cell in its middle). What arrives in a read reaches the
        protocol at its end, in one piece.
    """

    log = Logger()

    def __init__(self, link, layers, sendsAlong, host, peer, clock):
        self._link = link
        self._sending = [layer.ciphers(sendsAlong).inverse for layer in reversed(layers)]
        self._receiving = [layer.ciphers(not sendsAlong).inverse for layer in layers]
        self._host = host
        self.peerAddress = peer
        """The far end's L{TunnelAddress}, once known."""
        self.protocol = None
        self.disconnecting = False
        self.connected = False
        self.bytesSent = self.bytesReceived = 0
        self._early = []
        self._broken = False
        self._unsent = bytearray()
        self._writing = False
        self._closeAfterWrite = False
        self._outbox = Outbox(link, clock, self._padRest, source=link)
        self._arrived = []
        self._delivering = Soon(clock, link, self._deliver)
        self.clock = clock
        self.openedAt = self.lastActive = clock.seconds()
        self.outbound = sendsAlong
        """Whether this end opened the tunnel (over an exit path, or as its own exit node)."""
        self.whenClosed = []
        """Called, without arguments, when the tunnel has closed."""

    def start(self, protocol):
        """Run C{protocol} over the tunnel from now on."""
        self.protocol = protocol
        self.connected = True
        protocol.makeConnection(self)
        early, self._early = self._early, []
        for payload in early:
            self.frameReceived(payload)

    # ILinkHandler

    def frameReceived(self, payload):
        if self.protocol is None:
            self._early.append(bytes(payload))
            return
        if self._broken:
            return
        try:
            for remove in self._receiving:
                payload = remove(payload)
            data = parseCell(payload)
        except ProtocolError as e:
            self.log.warn("tunnel closed: {why}", why=str(e))
            self._broken = True
            self._deliver()
            self.abortConnection()
            return
        self.bytesReceived += len(data)
        self._touch()
        if data:
            self._arrived.append(data)
            self._delivering.schedule()

    def _deliver(self):
        """Give the protocol what arrived in this read or turn."""
        self._delivering.cancel()
        arrived, self._arrived = self._arrived, []
        if arrived:
            self.protocol.dataReceived(b"".join(arrived) if len(arrived) > 1 else arrived[0])

    def linkClosed(self, reason):
        self.connected = False
        self._deliver()
        self._unsent.clear()
        self._outbox.drop()
        for callback in self.whenClosed:
            callback()
        if self.protocol is not None:
            clean = reason is None or reason.check(ConnectionDone)
            self.protocol.connectionLost(reason if reason is not None and not clean else Failure(ConnectionDone("the tunnel closed")))

    # ITransport

    def write(self, data):
        if self.disconnecting or not self.connected:
            return
        self._unsent += data
        self.bytesSent += len(data)
        self._touch()
        if self._writing:
            # Written by what this write called (a producer the link paused): its bytes follow.
            return
        self._writing = True
        try:
            unsent = self._unsent
            while len(unsent) >= CELL_CAPACITY and not self.disconnecting:
                whole = min(len(unsent) - len(unsent) % CELL_CAPACITY, MOST_GATHERED * CELL_CAPACITY)
                with memoryview(unsent) as view:
                    cells = [self._wrap(view[start : start + CELL_CAPACITY]) for start in range(0, whole, CELL_CAPACITY)]
                del unsent[:whole]
                for cell in cells:
                    self._outbox.send(cell)
        finally:
            self._writing = False
        if self._closeAfterWrite:
            self._closeAfterWrite = False
            self.loseConnection()
        elif self._unsent:
            self._outbox.schedule()

    def _padRest(self, last):
        if not self._unsent:
            return
        if len(self._outbox) and not last:
            # This turn filled whole cells: the next is likely to fill the rest's too.
            self._outbox.schedule(nextTurn=True)
            return
        self._outbox.add(self._wrap(self._unsent))
        self._unsent.clear()

    def _wrap(self, chunk):
        cell = buildCell(chunk)
        for wrap in self._sending:
            cell = wrap(cell)
        return cell

    def _touch(self):
        self.lastActive = self.clock.seconds()

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        if self._writing:
            # Closed by what a write called: once the write's cells are out.
            self._closeAfterWrite = True
            return
        if not self.disconnecting:
            self._outbox.flush(last=True)
            self.disconnecting = True
            self._link.close()

    def abortConnection(self):
        self.disconnecting = True
        self._unsent.clear()
        self._outbox.drop()
        self._link.abort("the tunnel's protocol aborted it")

    def getPeer(self):
        return self.peerAddress

    def getHost(self):
        return self._host

    # IConsumer and IPushProducer: the link's buffers slow the protocol, and the protocol the link.

    def registerProducer(self, producer, streaming):
        self._link.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self._link.unregisterProducer()

    def pauseProducing(self):
        self._link.pauseProducing()

    def resumeProducing(self):
        self._link.resumeProducing()

    def stopProducing(self):
        self.loseConnection()


@implementer(ILinkHandler)
class _SpliceEnd:
    def __init__(self, splice, source, target, convert, clock):
        self._splice = splice
        self._convert = convert
        self.outbox = Outbox(target, clock, source=source)

    def frameReceived(self, payload):
        try:
            converted = self._convert(payload)
        except ProtocolError as e:
            self._splice.log.warn("tunnel closed: {why}", why=str(e))
            self._splice.close()
            return
        if converted is not None:
            self.outbox.send(converted)

    def linkClosed(self, reason):
        self._splice.close()


class Splice:
    """
    Joins two links of one tunnel at a node in between: each frame from one goes to the other
    through that direction's C{convert(payload)} (C{None}: drop it; L{ProtocolError}: close),
    the frames of one socket read (or one turn of the reactor) in one write (L{Outbox}). Each
    link is the other's producer, so a slow reader slows the sender all along the tunnel.
    Either link closing closes the other, once what was passed on has gone.

    @param clock: C{IReactorTime}, whose turns gather frames.
    @param onClosed: called, without arguments, once both links are closed.
    """

    log = Logger()

    def __init__(self, a, b, aToB, bToA, clock, onClosed=None):
        self._links = (a, b)
        self._onClosed = onClosed
        self.closed = False
        self.ends = (_SpliceEnd(self, a, b, aToB, clock), _SpliceEnd(self, b, a, bToA, clock))
        b.registerProducer(a, True)
        a.registerProducer(b, True)

    def close(self):
        """Close both links."""
        if self.closed:
            return
        self.closed = True
        for end in self.ends:
            end.outbox.flush(last=True)
        for link in self._links:
            link.close()
        if self._onClosed is not None:
            self._onClosed()


def firstThen(first, rest):
    """
    @return: a converter that passes the first frame through C{first} and every later one
        through C{rest}.
    """
    converters = [first]

    def convert(payload):
        converter = converters[0]
        converters[0] = rest
        return converter(payload)

    return convert


def plainAfter(convert):
    """
    @return: a converter that passes each frame through C{convert}, and takes the result only
        if it is a plain cell (L{requireCell}): where a tunnel leaves the path whose hops added
        layers to it, at the exit node or the entry node.
    """
    return lambda payload: requireCell(convert(payload))


def plainBefore(convert):
    """@return: a converter that takes each frame only if it is a plain cell, and passes it through C{convert}."""
    return lambda payload: convert(requireCell(payload))
