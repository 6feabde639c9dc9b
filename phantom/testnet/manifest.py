"""
The testnet directory and its manifest, the same in every mode: what C{up} writes before any
node starts, and all that C{status} and C{down} need to find the nodes again.

The testnet directory D holds::

    D/testnet.json        the manifest (L{Manifest}), written before any node starts
    D/node01/             node 1's data directory: its keys and control.sock
    D/node01/node.log     node 1's twistd log
    D/node01/twistd.pid   node 1's pidfile

L{layOutNodes} lays out the nodes of a new testnet in D; a mode gives each its address.
"""

import json
import os
from dataclasses import dataclass

from phantom.address import formatHostPort
from phantom.control import CONTROL_SOCKET
from phantom.control import MAX_UNIX_PATH

MANIFEST = "testnet.json"
"""The manifest's file name inside the testnet directory."""

MANIFEST_VERSION = 1

LOG_FILE = "node.log"
"""A node's twistd log file name, inside its data directory."""

PID_FILE = "twistd.pid"
"""A node's pidfile name, inside its data directory."""


class TestnetError(Exception):
    """The testnet cannot do what was asked; the message says why, for the person at the terminal."""


@dataclass(frozen=True)
class NodeSpec:
    """One node of a testnet: where it listens, whom it joins through, where its files are."""

    index: int
    """The node's number, 1 for the first."""
    name: str
    """C{node01}, C{node02}, ...: the name of its data directory."""
    address: str
    """The IP address it listens on and connects from."""
    port: int
    """Its TLS port."""
    dataDir: str
    """Its data directory (absolute)."""
    logFile: str
    """Its twistd log file."""
    pidFile: str
    """Its twistd pidfile."""
    bootstrap: tuple = ()
    """C{host:port} of each node it keeps a PEER link to; empty for the bootstrap node."""

    @property
    def contact(self):
        """C{host:port} where other nodes reach this one."""
        return formatHostPort(self.address, self.port)

    def toJSON(self):
        """@return: this node as a JSON-ready dict (the manifest's form)."""
        return {
            "index": self.index,
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "data_dir": self.dataDir,
            "log": self.logFile,
            "pidfile": self.pidFile,
            "bootstrap": list(self.bootstrap),
        }

    @classmethod
    def fromJSON(cls, data):
        """
        @param data: a dict made by L{toJSON}.
        @raise TestnetError: a field is missing or of the wrong type.
        """
        try:
            node = cls(
                index=data["index"],
                name=data["name"],
                address=data["address"],
                port=data["port"],
                dataDir=data["data_dir"],
                logFile=data["log"],
                pidFile=data["pidfile"],
                bootstrap=tuple(data["bootstrap"]),
            )
        except (KeyError, TypeError) as e:
            raise TestnetError(f"a node entry lacks {e}") from None
        for field, kind in (("index", int), ("port", int), ("name", str), ("address", str), ("dataDir", str),
                            ("logFile", str), ("pidFile", str)):
            if not isinstance(getattr(node, field), kind):
                raise TestnetError(f"node entry {data!r}: {field} is not {kind.__name__}")
        return node


@dataclass(frozen=True)
class Manifest:
    """What a testnet directory holds: the mode, and every node in it."""

    mode: str
    """How the nodes run: the name of a mode, such as C{loopback}."""
    directory: str
    """The testnet directory (absolute)."""
    port: int
    """The port every node listens on."""
    nodes: tuple
    """L{NodeSpec}s, node 1 first."""

    @property
    def path(self):
        """Where the manifest is kept."""
        return manifestPath(self.directory)

    def toJSON(self):
        """@return: the manifest as a JSON-ready dict."""
        return {
            "version": MANIFEST_VERSION,
            "mode": self.mode,
            "directory": self.directory,
            "port": self.port,
            "nodes": [node.toJSON() for node in self.nodes],
        }

    @classmethod
    def fromJSON(cls, data):
        """
        @param data: a dict made by L{toJSON}.
        @raise TestnetError: not a manifest this version understands.
        """
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise TestnetError(f"not a version {MANIFEST_VERSION} testnet manifest")
        try:
            nodes = tuple(NodeSpec.fromJSON(node) for node in data["nodes"])
            manifest = cls(mode=data["mode"], directory=data["directory"], port=data["port"], nodes=nodes)
        except (KeyError, TypeError) as e:
            raise TestnetError(f"the manifest lacks {e}") from None
        if not isinstance(manifest.mode, str) or not isinstance(manifest.directory, str):
            raise TestnetError("the manifest's mode and directory must be strings")
        return manifest

    def write(self):
        """Write the manifest to L{path} atomically, creating the testnet directory if needed."""
        os.makedirs(self.directory, exist_ok=True)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self.toJSON(), f, indent=2)
            f.write("\n")
        os.replace(temporary, self.path)

    @classmethod
    def read(cls, directory):
        """
        Read the manifest of the testnet in C{directory}.

        @raise TestnetError: there is none, or it cannot be read.
        """
        path = manifestPath(directory)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise TestnetError(f"no testnet in {directory}: {path} does not exist") from None
        except (OSError, ValueError) as e:
            raise TestnetError(f"cannot read {path}: {e}") from None
        try:
            return cls.fromJSON(data)
        except TestnetError as e:
            raise TestnetError(f"{path}: {e}") from None


def manifestPath(directory):
    """@return: the path of the manifest of the testnet in C{directory}."""
    return os.path.join(os.path.abspath(directory), MANIFEST)


def layOutNodes(directory, count, port, addressOf):
    """
    Lay out the nodes of a testnet; nothing is written. Node I is named C{nodeI} (with enough
    leading zeros that names sort in node order), keeps its files in its own data directory
    below C{directory}, and listens on C{addressOf(I)}; node 1 is the bootstrap contact of all
    the others.

    @param directory: the testnet directory (absolute); its path must be short, since every
        node's control socket lives below it.
    @param count: how many nodes, at least 1.
    @param port: the port every node listens on.
    @param addressOf: a function from a node's number to its IP address (as text).
    @return: the L{NodeSpec}s, node 1 first.
    @raise TestnetError: C{directory} is too long a path for the control sockets.
    """
    width = max(2, len(str(count)))
    bootstrap = (formatHostPort(addressOf(1), port),)
    nodes = []
    for index in range(1, count + 1):
        name = f"node{index:0{width}d}"
        dataDir = os.path.join(directory, name)
        nodes.append(
            NodeSpec(
                index=index,
                name=name,
                address=addressOf(index),
                port=port,
                dataDir=dataDir,
                logFile=os.path.join(dataDir, LOG_FILE),
                pidFile=os.path.join(dataDir, PID_FILE),
                bootstrap=() if index == 1 else bootstrap,
            )
        )
    socket = os.path.join(nodes[-1].dataDir, CONTROL_SOCKET)
    if len(socket.encode()) > MAX_UNIX_PATH:
        raise TestnetError(
            f"{directory} is too long a path: the control socket {socket} would exceed "
            f"{MAX_UNIX_PATH} bytes; choose a shorter directory such as /tmp/tn"
        )
    return tuple(nodes)
