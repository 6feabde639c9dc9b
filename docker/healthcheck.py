"""
The container's health check: the node answers a Status request on its control socket.

Standard library only, so it costs a few milliseconds of CPU where phantomctl costs most of a
second importing. Exit 0 when the node answered, 1 otherwise.
"""

import socket
import struct
import sys

SOCKET = "/var/lib/phantom/control.sock"
TIMEOUT = 3.0


def box(pairs):
    """An AMP box: each key and value prefixed by its 16-bit length, closed by an empty key."""
    out = b""
    for key, value in pairs:
        out += struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
    return out + b"\x00\x00"


def keys(data):
    """The keys of the first complete AMP box in C{data}, or C{None} if it is not complete."""
    found, offset = [], 0
    while offset + 2 <= len(data):
        (size,) = struct.unpack_from("!H", data, offset)
        offset += 2
        if size == 0:
            return found
        key = data[offset:offset + size]
        offset += size
        if offset + 2 > len(data):
            return None
        (size,) = struct.unpack_from("!H", data, offset)
        offset += 2 + size
        found.append(key)
    return None


def main(path=SOCKET):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(TIMEOUT)
            s.connect(path)
            s.sendall(box([(b"_ask", b"1"), (b"_command", b"Status")]))
            data = b""
            while (answered := keys(data)) is None:
                chunk = s.recv(65536)
                if not chunk:
                    return 1
                data += chunk
    except OSError:
        return 1
    return 0 if b"_answer" in answered else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
