"""
C{phantomctl status} without Twisted: one AMP box out and one back over the control socket, with
the standard library only, so that the command most often typed (and run by health checks)
costs a tenth of what loading Twisted does. Everything else goes through
L{ControlClient<phantom.control.client.ControlClient>}.

AMP's wire format: a box is key/value pairs, each a 16-bit big-endian length and its bytes,
ended by an empty key; an C{AmpList} value is its boxes one after another.
"""

import os
import socket
import struct

from phantom.control import CONTROL_SOCKET

MAX_ANSWER = 1 << 22
"""The most bytes of answer read: a node's status is a few kilobytes."""

STATUS_TYPES = {
    "uptime": float,
    "links": int,
    "connections": int,
    "kept_paths": {"wanted": int, "built": int, "building": int, "failures": int},
    "peers": {"inbound": int, "outbound": int},
    "exit_addresses": [str],
}
"""How the fields of the L{Status<phantom.control.commands.Status>} response that are not
text decode (an C{AmpList} as a dict of its own, a C{ListOf(Unicode())} as C{[str]});
tests/control check this against the command."""


class QuickError(Exception):
    """The node could not be asked; the message says why."""


def encodeBox(box):
    """@param box: C{{bytes: bytes}}. @return: the AMP box."""
    parts = [struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value for key, value in box.items()]
    return b"".join(parts) + b"\x00\x00"


def decodeBoxes(data):
    """@return: the whole boxes C{data} begins with, as C{{str: bytes}}; a partial last one is left out."""
    boxes, box, offset = [], {}, 0
    while offset + 2 <= len(data):
        (keyLength,) = struct.unpack_from("!H", data, offset)
        if keyLength == 0:
            boxes.append(box)
            box, offset = {}, offset + 2
            continue
        end = offset + 2 + keyLength
        if end + 2 > len(data):
            break
        (valueLength,) = struct.unpack_from("!H", data, end)
        if end + 2 + valueLength > len(data):
            break
        box[data[offset + 2:end].decode("ascii", "replace")] = data[end + 2:end + 2 + valueLength]
        offset = end + 2 + valueLength
    return boxes


def decodeTexts(value):
    """@return: the texts of an AMP C{ListOf(Unicode())} value, each a 16-bit length and its bytes."""
    texts, offset = [], 0
    while offset + 2 <= len(value):
        (length,) = struct.unpack_from("!H", value, offset)
        if offset + 2 + length > len(value):
            raise ValueError("a list item runs past its value")
        texts.append(value[offset + 2:offset + 2 + length].decode("utf-8", "replace"))
        offset += 2 + length
    if offset != len(value):
        raise ValueError("a list ends inside an item's length")
    return texts


def decodeFields(box, types):
    """@return: C{box} with each value as C{types} says (a dict: a list of boxes; C{[str]}: a list of texts), else text."""
    fields = {}
    for key, value in box.items():
        kind = types.get(key, str)
        if isinstance(kind, dict):
            fields[key] = [decodeFields(inner, kind) for inner in decodeBoxes(value)]
        elif kind == [str]:
            fields[key] = decodeTexts(value)
        elif kind is str:
            fields[key] = value.decode("utf-8", "replace")
        else:
            fields[key] = kind(value.decode("ascii"))
    return fields


def ask(dataDir, command, types, timeout=5.0):
    """
    Ask the node whose data directory is C{dataDir} a command that takes no arguments.

    @return: the answer's fields, decoded as C{types} says.
    @raise QuickError: no node answers, or it answered with an error.
    """
    path = os.path.join(dataDir, CONTROL_SOCKET)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
            s.sendall(encodeBox({b"_command": command.encode(), b"_ask": b"1"}))
            data = b""
            while True:
                boxes = decodeBoxes(data)
                if boxes:
                    break
                chunk = s.recv(65536)
                if not chunk or len(data) > MAX_ANSWER:
                    raise QuickError(f"the node at {path} did not answer")
                data += chunk
        except socket.timeout:
            raise QuickError(f"the node at {path} did not answer") from None
        except OSError as e:
            raise QuickError(f"no node answers at {path} ({e.strerror or e})") from None
    answer = boxes[0]
    if "_error" in answer:
        raise QuickError(f"the node refused: {answer.get('_error_description', b'').decode('utf-8', 'replace')}")
    try:
        return decodeFields({k: v for k, v in answer.items() if not k.startswith("_")}, types)
    except ValueError as e:
        raise QuickError(f"the answer of the node at {path} does not parse: {e}") from None
