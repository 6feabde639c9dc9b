"""
Sans-io frame decoding: bytes in, frames out, L{ProtocolError} on anything malformed.

DATA frames, the hot path, are cut out with C{struct}; runs of KEEPALIVE frames, which a
flooding peer sends most cheaply, are skipped with one regular-expression match and come out as
one item with their count; every other body (OPEN, and anything malformed) is parsed with the
strict L{phantom.wire.link.FrameBody} schema. Property tests hold the two to the same
answers.
"""

import re

from phantom.wire import ProtocolError, parseStrict
from phantom.wire.link import KEEPALIVE_FRAME, LENGTH, MAX_BODY, Frame, FrameBody, FrameKind

_DATA = int(FrameKind.DATA)
_KEEPALIVE = int(FrameKind.KEEPALIVE)
_KEEPALIVE_RUN = re.compile(b"(?:" + re.escape(KEEPALIVE_FRAME) + b")+")


class FrameDecoder:
    """
    Splits a byte stream into frames.

    Received chunks are kept as they arrive. A frame inside one chunk is sliced out of it; a
    frame spread over several chunks (a full frame is four TLS records) is assembled from
    memoryviews of them, so every payload is copied exactly once.
    """

    def __init__(self, maxBody=MAX_BODY):
        self._maxBody = maxBody
        self._chunks = []
        self._offset = 0
        self._pending = 0
        self._needed = 4

    @property
    def pending(self):
        """How many bytes of an unfinished frame are buffered."""
        return self._pending

    def feed(self, data):
        """
        Take the next bytes of the stream.

        @return: a list of C{(FrameKind, content)}: the payload bytes for DATA, the parsed
            OPEN content container for OPEN, and for a run of KEEPALIVE frames one item whose
            content is how many there were (a socket read can hold 50,000 of them, and one
            Python object each would cost more than the flood's TLS).
        @raise ProtocolError: a frame is oversized, empty or malformed; the stream is then unusable.
        """
        chunks = self._chunks
        if not chunks and len(data) > 5 and data[4] == _DATA and LENGTH.unpack_from(data)[0] == len(data) - 4 <= self._maxBody:
            # Exactly one DATA frame, as most reads are (a record's plaintext): sliced out at once.
            return [(FrameKind.DATA, data[5:])]
        chunks.append(data)
        self._pending += len(data)
        if self._pending < self._needed:
            return []
        self._needed = 4
        frames = []
        while self._pending >= 4:
            first = chunks[0]
            offset = self._offset
            if len(first) - offset < 5 and len(chunks) > 1:
                # A header split over chunks (rare): merge what is buffered.
                chunks[:] = [b"".join([memoryview(first)[offset:], *chunks[1:]])]
                self._offset = 0
                continue
            (length,) = LENGTH.unpack_from(first, offset)
            if not 1 <= length <= self._maxBody:
                raise ProtocolError(f"frame of {length} bytes; 1 to {self._maxBody} allowed")
            total = 4 + length
            if self._pending < total:
                self._needed = total
                break
            kind = first[offset + 4]
            if kind == _KEEPALIVE and length == 1:
                # A run of KEEPALIVE frames, what a flooding peer sends, is skipped in one step.
                run = _KEEPALIVE_RUN.match(first, offset).end() - offset
                frames.append((FrameKind.KEEPALIVE, run // len(KEEPALIVE_FRAME)))
                offset += run
                if offset == len(first):
                    del chunks[0]
                    offset = 0
                self._offset = offset
                self._pending -= run
                continue
            skip = 5 if kind == _DATA else 4
            if len(first) - offset >= total:
                content = first[offset + skip : offset + total]
                offset += total
                if offset == len(first):
                    del chunks[0]
                    offset = 0
            else:
                pieces = [memoryview(first)[offset + skip :]]
                needed = total - (len(first) - offset)
                del chunks[0]
                while needed:
                    chunk = chunks[0]
                    if len(chunk) <= needed:
                        pieces.append(chunk)
                        needed -= len(chunk)
                        del chunks[0]
                    else:
                        pieces.append(memoryview(chunk)[:needed])
                        offset = needed
                        needed = 0
                if not chunks:
                    offset = 0
                content = b"".join(pieces)
            self._offset = offset
            self._pending -= total
            if kind == _DATA:
                if length == 1:
                    raise ProtocolError("empty DATA frame")
                frames.append((FrameKind.DATA, content))
            else:
                body = parseStrict(FrameBody, content)
                frames.append((FrameKind(int(body.kind)), body.content))
        return frames


def encodeFrame(kind, content):
    """Build the frames of one item L{FrameDecoder.feed} returns; the inverse of decoding."""
    if kind == FrameKind.KEEPALIVE:
        return KEEPALIVE_FRAME * (1 if content is None else content)
    body = {"kind": FrameKind(kind).name, "content": content}
    if kind == FrameKind.DATA:
        body["content"] = {"payload": content}
    return Frame.build({"body": body})
