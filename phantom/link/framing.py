"""
Sans-io frame decoding: bytes in, frames out, L{ProtocolError} on anything malformed.

DATA frames, the hot path, are cut out with C{struct}; every other body is parsed with the
strict L{phantom.wire.link.FrameBody} schema. Property tests hold the two to the same answers.
"""

from phantom.wire import ProtocolError, parseStrict
from phantom.wire.link import LENGTH, MAX_BODY, Frame, FrameBody, FrameKind

_DATA = int(FrameKind.DATA)


class FrameDecoder:
    """
    Splits a byte stream into frames.

    Received chunks are kept as they are until a whole frame is there, then joined once, so a
    large frame arriving in many TLS records is copied a bounded number of times.
    """

    def __init__(self, maxBody=MAX_BODY):
        self._maxBody = maxBody
        self._chunks = []
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
            OPEN content container for OPEN, C{None} for KEEPALIVE.
        @raise ProtocolError: a frame is oversized, empty or malformed; the stream is then unusable.
        """
        self._chunks.append(data)
        self._pending += len(data)
        if self._pending < self._needed:
            return []
        buffer = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        frames = []
        offset = 0
        available = len(buffer)
        needed = 4
        while available - offset >= 4:
            (length,) = LENGTH.unpack_from(buffer, offset)
            if not 1 <= length <= self._maxBody:
                raise ProtocolError(f"frame of {length} bytes; 1 to {self._maxBody} allowed")
            end = offset + 4 + length
            if end > available:
                needed = 4 + length
                break
            if buffer[offset + 4] == _DATA:
                if length == 1:
                    raise ProtocolError("empty DATA frame")
                frames.append((FrameKind.DATA, buffer[offset + 5 : end]))
            else:
                body = parseStrict(FrameBody, buffer[offset + 4 : end])
                frames.append((FrameKind(int(body.kind)), body.content))
            offset = end
        rest = buffer[offset:] if offset else buffer
        self._chunks = [rest] if rest else []
        self._pending = len(rest)
        self._needed = needed
        return frames


def encodeFrame(kind, content):
    """Build one frame from what L{FrameDecoder.feed} returns; the inverse of decoding."""
    body = {"kind": FrameKind(kind).name, "content": content}
    if kind == FrameKind.DATA:
        body["content"] = {"payload": content}
    return Frame.build({"body": body})
