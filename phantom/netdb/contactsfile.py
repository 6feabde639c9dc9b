"""
C{contacts.json}: the contacts of a node's routing table, kept between runs. Sans-io: the bytes
of the file, and what they give back; L{DhtNode<phantom.netdb.service.DhtNode>} reads and writes.
"""

import json

from phantom.address import AddressError, Contact, addressBytes
from phantom.crypto import NODE_ID_SIZE

MAX_CONTACTS_FILE = 4 * 1024 * 1024
"""
The longest C{contacts.json} a node reads, in bytes: a full routing table (256 buckets of 20
contacts and their replacements) is well under 1 MiB.
"""


def encodeContacts(contacts):
    """@return: the bytes of C{contacts.json} holding C{contacts} (L{Contact}s with node ids)."""
    return json.dumps([{"node_id": c.nodeId.hex(), "host": c.host, "port": c.port} for c in contacts]).encode()


def parseContacts(data):
    """
    The contacts saved in C{contacts.json}.

    @param data: the file's bytes.
    @return: a list of L{Contact}s, each with an IP address, a port from 1 to 65535 and a
        32-byte node id.
    @raise ValueError: the file is longer than L{MAX_CONTACTS_FILE}, is no JSON (nested too
        deep included), or is not a list of such contacts; the message says why.
    """
    if len(data) > MAX_CONTACTS_FILE:
        raise ValueError(f"longer than {MAX_CONTACTS_FILE} bytes")
    try:
        saved = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(saved, list):
        raise ValueError(f"a JSON {type(saved).__name__}, not a list of contacts")
    return [_contactOf(index, entry) for index, entry in enumerate(saved)]


def _contactOf(index, entry):
    if not isinstance(entry, dict):
        raise ValueError(f"entry {index} is a JSON {type(entry).__name__}, not an object")
    host, port, nodeId = entry.get("host"), entry.get("port"), entry.get("node_id")
    if not isinstance(host, str):
        raise ValueError(f"entry {index} has no host")
    try:
        addressBytes(host)
    except AddressError as e:
        raise ValueError(f"entry {index}: {e}") from None
    if type(port) is not int or not 1 <= port <= 0xFFFF:
        raise ValueError(f"entry {index} has no port from 1 to 65535")
    if not isinstance(nodeId, str) or len(nodeId) != 2 * NODE_ID_SIZE:
        raise ValueError(f"entry {index} has no node id of {2 * NODE_ID_SIZE} hex digits")
    return Contact(host, port, bytes.fromhex(nodeId))
