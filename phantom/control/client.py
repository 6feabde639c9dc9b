"""
L{ControlClient}: ask a running node, through its control socket, what C{phantomctl} asks.

It imports the control commands and L{phantom.errors} only, never the daemon's services, so a
program that asks nodes (C{phantomctl}, C{phantom-testnet}, the benchmarks) starts quickly.
"""

import os

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.protocols import amp

from phantom.control import CONTROL_SOCKET
from phantom.netdb.interfaces import PutOutcome
from phantom.control.commands import (
    REMOTE_ERRORS,
    DhtGet,
    DhtPut,
    PathBuild,
    PathList,
    Peers,
    RouteLookup,
    Status,
    TunnelList,
    TunnelOpen,
    TunStatus,
)

TIMEOUT = 5.0
"""Seconds to wait for the connection, and again for an answer, by default."""

BUILD_TIMEOUT = 120.0
"""Seconds to wait, by default, for a path to be built or a tunnel to be opened and probed."""


class ControlError(Exception):
    """The node could not be asked, or could not do what it was asked: the message says why."""


def _plain(entries):
    """@return: the entries of an C{AmpList} as plain dicts."""
    return [dict(entry) for entry in entries]


class ControlClient:
    """
    Asks one node on its control socket; each question on a connection of its own.

    Every method returns a Deferred that fails with L{ControlError} when no node answers, the
    node refuses the question, or it cannot do what it was asked.

    @param endpoint: an C{IStreamClientEndpoint} reaching the node's control socket.
    @param clock: an C{IReactorTime} for the answers' timeouts.
    @param where: what the endpoint reaches, for error messages.
    @param timeout: seconds to wait for each answer, unless a method is given its own.
    """

    def __init__(self, endpoint, clock, where="the node", timeout=TIMEOUT):
        self._endpoint = endpoint
        self._clock = clock
        self.where = where
        self.timeout = timeout

    @classmethod
    def forNode(cls, reactor, dataDir, timeout=TIMEOUT):
        """
        @param reactor: provides C{IReactorUNIX} and C{IReactorTime}.
        @param dataDir: the node's data directory; its control socket is there.
        @param timeout: seconds to wait for the connection, and for each answer by default.
        @return: a client of the node whose data directory is C{dataDir}.
        """
        path = os.path.join(dataDir, CONTROL_SOCKET)
        return cls(UNIXClientEndpoint(reactor, path, timeout=timeout), reactor, path, timeout)

    def _ask(self, command, timeout=None, **arguments):
        return Deferred.fromCoroutine(self._askOnce(command, self.timeout if timeout is None else timeout, arguments))

    async def _askOnce(self, command, timeout, arguments):
        try:
            protocol = await connectProtocol(self._endpoint, amp.AMP())
        except ConnectError as e:
            reason = os.strerror(e.osError) if isinstance(e.osError, int) else e.osError or e.__class__.__name__
            raise ControlError(f"no node answers at {self.where} ({reason})") from e
        try:
            return await protocol.callRemote(command, **arguments).addTimeout(timeout, self._clock)
        except amp.RemoteAmpError as e:
            raise ControlError(f"the node refused: {e.description}") from e
        except REMOTE_ERRORS as e:
            raise ControlError(f"the node could not: {e}") from e
        except (ConnectionClosed, TimeoutError) as e:
            raise ControlError(f"the node at {self.where} did not answer") from e
        finally:
            protocol.transport.loseConnection()

    def status(self):
        """
        @return: a Deferred of the node's state: C{node_id}, C{ap_address}, C{listening} and
            C{api} (C{host:port}), C{uptime} (seconds), C{links}, C{connections}, C{kept_paths}
            (dicts with C{kind}, C{wanted}, C{built}, C{building}, C{failures} and
            C{last_error}), C{peers}: dicts with C{node_id}, C{address}, C{inbound} and
            C{outbound}, and C{exit_addresses}: the exit APs it connects out from, the current
            one first.
        """
        return self._ask(Status).addCallback(
            lambda r: {**r, "peers": _plain(r["peers"]), "kept_paths": _plain(r["kept_paths"])}
        )

    def peers(self):
        """
        @return: a Deferred of the routing table: C{contacts} (as L{status}'s C{peers}),
            C{buckets} (C{index}, C{size}, C{replacements}, C{idle} seconds), C{lookups},
            C{lookup_requests} and C{stored} (records).
        """
        return self._ask(Peers).addCallback(lambda r: {**r, "contacts": _plain(r["contacts"]), "buckets": _plain(r["buckets"])})

    def dhtPut(self, key, value, ttl=3600, replication=20):
        """
        Store C{value} under C{key} (32 bytes) as a module-API PUT does.

        @return: a Deferred of a L{PutOutcome}: how many other nodes accepted it, and whether
            the node keeps it too.
        """
        return self._ask(DhtPut, key=key, value=value, ttl=ttl, replication=replication).addCallback(
            lambda r: PutOutcome(r["replicas"], here=r.get("here", True))
        )

    def dhtGet(self, key):
        """@return: a Deferred of the value found under C{key} (32 bytes), or C{None}."""
        return self._ask(DhtGet, key=key).addCallback(lambda r: r["value"] if r["found"] else None)

    def pathBuild(self, kind, x, y, timeout=BUILD_TIMEOUT):
        """
        Have the node build a routing path.

        @param kind: C{"exit"} or C{"entry"}.
        @param x: X-nodes in the path.
        @param y: Y-nodes in the path.
        @return: a Deferred of the path: C{kind}, C{ap_address} (an entry path's, else empty),
            C{nodes} (its X-nodes' ids, hex), C{phases} (seconds by name) and C{seconds}.
        """
        d = self._ask(PathBuild, timeout, kind=str(kind), x=x, y=y)
        return d.addCallback(lambda r: {**r, "phases": {p["name"]: p["seconds"] for p in r["phases"]}})

    def pathList(self):
        """
        @return: a Deferred of the paths the node owns: dicts with C{kind}, C{ap_address},
            C{x0} (C{host:port}), C{age} (seconds), C{length} and C{nodes} (the X-nodes' ids).
        """
        return self._ask(PathList).addCallback(lambda r: _plain(r["paths"]))

    def routeLookup(self, apAddress):
        """
        @param apAddress: an AP-address, as text.
        @return: a Deferred of its verified routing entry: C{found}, C{sequence}, C{expires}
            and C{entry_nodes} (dicts with C{node_id} and C{address}).
        """
        d = self._ask(RouteLookup, ap_address=apAddress)
        return d.addCallback(lambda r: {**r, "entry_nodes": _plain(r["entry_nodes"])})

    def tunnelOpen(self, apAddress, timeout=BUILD_TIMEOUT):
        """
        Have the node open a tunnel to C{apAddress} (text) with end-to-end TLS, time a 1 KiB
        echo through it, and close it.

        @return: a Deferred of C{ap_address}, C{peer} (the AP-address TLS verified),
            C{open_seconds} and C{rtt_seconds} (-1 when no echo came back).
        """
        return self._ask(TunnelOpen, timeout, ap_address=apAddress)

    def tunnelList(self):
        """
        @return: a Deferred of the node's C{ap_address}, the C{tunnels} it owns an end of
            (dicts with C{direction}, C{peer}, C{age}, C{sent}, C{received}), and how many it
            has C{carried} for others, and its C{exit_addresses}.
        """
        return self._ask(TunnelList).addCallback(lambda r: {**r, "tunnels": _plain(r["tunnels"])})

    def tunStatus(self):
        """
        @return: a Deferred of the node's tun C{device} (empty without one), C{ap_address}
            (published), C{exit_addresses} (the exit APs the device carries, the one programs
            connect out from first), the packet C{tunnels} open, and C{counts}: packets by event.
        """
        return self._ask(TunStatus).addCallback(lambda r: {**r, "counts": {c["event"]: c["packets"] for c in r["counts"]}})
