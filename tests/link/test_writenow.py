"""
L{writeNow} and L{LinkTLSProtocol} lean on Twisted internals that no public API offers: a TCP
transport's buffer (C{FileDescriptor._tempDataLen}, C{dataBuffer}, C{offset}) tells whether
anything is still unsent, and C{TLSMemoryBIOProtocol._flushSendBIO} is where TLS hands its
records to the transport. Should a Twisted release move either, links would still work, but
every record would wait a reactor turn (or, worse, a record could overtake buffered bytes):
these tests fail loudly instead, naming what to check.
"""

from twisted.internet import abstract, tcp
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

import twisted

from phantom.link.service import LinkTLSProtocol, writeNow
from tests.link.test_service import echoLink

VERIFIED_TWISTED = (26, 10)
"""The newest Twisted release whose internals these tests were checked against by reading its
source (C{twisted/internet/abstract.py}, C{twisted/protocols/tls.py}); older ones back to the
lowest C{setup.cfg} allows have the same."""

WHAT_TO_CHECK = (
    "phantom.link.service.writeNow reads FileDescriptor._tempDataLen, dataBuffer and offset, and "
    "LinkTLSProtocol overrides TLSMemoryBIOProtocol._flushSendBIO; check that Twisted {version} "
    "still has them with the same meaning, then raise VERIFIED_TWISTED in {module}"
)


class Descriptor(abstract.FileDescriptor):
    """A file descriptor whose writes are recorded, taking all or C{room} bytes at a time."""

    def __init__(self):
        super().__init__(reactor=MemoryReactor())
        self.connected = True
        self.written = []
        self.room = None

    def writeSomeData(self, data):
        taken = bytes(data[: self.room] if self.room is not None else data)
        self.written.append(taken)
        return len(taken)


class TwistedVersionTests(SynchronousTestCase):
    def test_verifiedRelease(self):
        """The installed Twisted is no newer than the release these internals were checked on."""
        version = twisted.version
        self.assertLessEqual(
            (version.major, version.minor),
            VERIFIED_TWISTED,
            WHAT_TO_CHECK.format(version=version.public(), module=__name__),
        )


class WriteNowTests(SynchronousTestCase):
    """What L{writeNow} relies on in a C{FileDescriptor}, checked on Twisted's own class."""

    def test_idleWritesAtOnce(self):
        """With nothing buffered, the bytes go straight to C{writeSomeData}, and nothing waits."""
        fd = Descriptor()
        writeNow(fd, b"record")
        self.assertEqual(fd.written, [b"record"], WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
        self.assertNotIn(fd, fd.reactor.getWriters())

    def test_behindBufferedBytes(self):
        """
        Bytes a plain C{write} buffered make C{writeNow} buffer too, behind them: a record never
        overtakes one that is waiting.
        """
        fd = Descriptor()
        fd.write(b"first")
        writeNow(fd, b"second")
        self.assertEqual(fd.written, [])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"firstsecond")

    def test_behindPartlySentBuffer(self):
        """The same when the buffer was partly sent (its C{offset} not at its end)."""
        fd = Descriptor()
        fd.write(b"first")
        fd.room = 2
        fd.doWrite()  # "fi" sent; "rst" still in dataBuffer
        fd.room = None
        writeNow(fd, b"second")
        self.assertEqual(fd.written, [b"fi"])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"firstsecond")

    def test_restBuffered(self):
        """What the socket does not take is buffered, in order, for the reactor to send."""
        fd = Descriptor()
        fd.room = 3
        writeNow(fd, b"record")
        fd.room = None
        writeNow(fd, b"next")
        self.assertEqual(fd.written, [b"rec"])
        fd.doWrite()
        self.assertEqual(b"".join(fd.written), b"recordnext")

    def test_tcpConnectionHasTheBuffer(self):
        """Twisted's TCP connections are the C{FileDescriptor}s checked here."""
        self.assertTrue(issubclass(tcp.Connection, abstract.FileDescriptor))
        self.assertIs(tcp.Connection.doWrite, abstract.FileDescriptor.doWrite)


class TLSHookTests(TestCase):
    """L{LinkTLSProtocol}'s override is where Twisted's TLS sends its records."""

    def test_overridesTwistedsMethod(self):
        """C{_flushSendBIO} is a method of Twisted's TLS protocol, and ours replaces it."""
        self.assertTrue(
            callable(getattr(TLSMemoryBIOProtocol, "_flushSendBIO", None)),
            WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__),
        )
        self.assertIsNot(LinkTLSProtocol._flushSendBIO, TLSMemoryBIOProtocol._flushSendBIO)

    async def test_recordsLeaveThroughTheOverride(self):
        """A frame sent on a real link reaches the socket through L{LinkTLSProtocol._flushSendBIO}."""
        server, client, link, handler = await echoLink(self)
        calls = []
        original = LinkTLSProtocol._flushSendBIO

        def counted(protocol):
            calls.append(protocol)
            original(protocol)

        self.patch(LinkTLSProtocol, "_flushSendBIO", counted)
        echoed = handler.nextFrame()
        link.sendFrame(b"through the hook")
        self.assertIn(link.transport, calls, WHAT_TO_CHECK.format(version=twisted.version.public(), module=__name__))
        self.assertEqual(await echoed, b"through the hook")
