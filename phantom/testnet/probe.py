"""
What the netns demo runs inside a node's namespace, as an unmodified program would, against
AP-addresses on the tun devices. Each prints one JSON object.

    python -m phantom.testnet.probe ping AP [COUNT]     ICMPv6 echo, round trips in ms
    python -m phantom.testnet.probe sink AP PORT        accept one TCP connection, count and hash
    python -m phantom.testnet.probe send AP PORT MIB    send MIB of random bytes, hash them; the
                                                        addresses the connection ran between
"""

import hashlib
import json
import os
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 128, 129
TIMEOUT = 30.0


def ping(address, count=3):
    """ICMPv6 echo requests to C{address}; the kernel fills in the checksum of raw ICMPv6."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.settimeout(TIMEOUT)
    ident = os.getpid() & 0xFFFF
    rtts = []
    for sequence in range(count):
        payload = os.urandom(56)
        started = time.monotonic()
        sock.sendto(struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, sequence) + payload, (address, 0))
        while True:
            reply, _ = sock.recvfrom(2048)
            kind, _, _, replyIdent, replySequence = struct.unpack_from("!BBHHH", reply)
            if kind == ECHO_REPLY and (replyIdent, replySequence) == (ident, sequence) and reply[8:] == payload:
                rtts.append((time.monotonic() - started) * 1000)
                break
    return {"address": address, "replies": len(rtts), "rtt_ms": rtts}


def sink(address, port):
    """Accept one connection on C{address}:C{port}; count and hash what arrives until it closes."""
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, port))
    server.listen(1)
    server.settimeout(TIMEOUT)
    print(json.dumps({"listening": True}), flush=True)
    connection, peer = server.accept()
    connection.settimeout(TIMEOUT)
    digest, total = hashlib.sha256(), 0
    while True:
        data = connection.recv(1 << 16)
        if not data:
            break
        digest.update(data)
        total += len(data)
    return {"from": peer[0], "bytes": total, "sha256": digest.hexdigest()}


def send(address, port, mib):
    """Send C{mib} MiB of random bytes to C{address}:C{port} over TCP."""
    data = os.urandom(int(mib * 1024 * 1024))
    started = time.monotonic()
    with socket.create_connection((address, port), timeout=TIMEOUT) as connection:
        local, peer = connection.getsockname()[0], connection.getpeername()[0]
        print(json.dumps({"connected": True}), flush=True)
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        connection.recv(1)
    seconds = time.monotonic() - started
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "seconds": seconds, "local": local, "peer": peer}


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "ping":
        result = ping(args[0], int(args[1]) if len(args) > 1 else 3)
    elif command == "sink":
        result = sink(args[0], int(args[1]))
    elif command == "send":
        result = send(args[0], int(args[1]), float(args[2]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
