"""
Per-exit-path client identities: L{ExitIdentities} alone, and what servers see of their
clients on the in-memory network.
"""

from dataclasses import replace

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from phantom.errors import TunnelFailed
from phantom.link.ending import Ending, Goes
from phantom.netdb.records import routeKey
from phantom.path.interfaces import PathKind
from phantom.tunnel.identities import ExitIdentities
from phantom.tunnel.transport import TunnelAddress
from phantom.wire.dht import Table
from tests.tunnel.helpers import acceptInto
from tests.tunnel.memory import MemoryTunnelNetwork
from tests.tunnel.test_network import NetworkTestCase

EXIT, ENTRY = PathKind.EXIT, PathKind.ENTRY


class FakePath(Goes):
    def __init__(self, kind=EXIT):
        self.kind = kind
        self.ending = Ending()


class FakeTunnel:
    def __init__(self):
        self.whenClosed = []

    def close(self):
        for f in self.whenClosed:
            f()


class ExitIdentitiesTests(SynchronousTestCase):
    def setUp(self):
        self.exits = ExitIdentities()
        self.changes = []
        self.exits.watch(lambda: self.changes.append(list(self.exits.addresses)))

    def test_pendingUntilAnExitPath(self):
        """
        Before any exit path, the current identity is the pending one, which the next exit path
        takes; a new one then waits. An entry path takes none.
        """
        pending = self.exits.current
        self.assertIs(pending, self.exits.pending)
        self.exits.pathBuilt(FakePath(ENTRY))
        self.assertIs(self.exits.pending, pending)
        path = FakePath()
        self.exits.pathBuilt(path)
        self.assertIs(self.exits.ofPath(path), pending)
        self.assertIs(self.exits.current, pending)
        self.assertIsNot(self.exits.pending, pending)
        self.assertNotEqual(self.exits.pending.apAddress, pending.apAddress)
        self.assertEqual(self.changes, [[pending.apAddress]])

    def test_keptWhileTunnelsAreOpen(self):
        """
        A newer exit path's identity becomes current; an older one is kept while its path lives
        or a tunnel opened with it is open, and dropped after.
        """
        old, new = FakePath(), FakePath()
        self.exits.pathBuilt(old)
        first = self.exits.ofPath(old)
        tunnel = FakeTunnel()
        self.exits.tunnelOpened(first, tunnel)
        self.exits.pathBuilt(new)
        second = self.exits.ofPath(new)
        self.assertIs(self.exits.current, second)
        self.assertEqual(self.exits.addresses, [second.apAddress, first.apAddress])
        old.ending.end()
        self.assertEqual(self.exits.addresses, [second.apAddress, first.apAddress])
        self.assertIs(self.exits.ofTunnel(tunnel), first)
        tunnel.close()
        self.assertEqual(self.exits.addresses, [second.apAddress])
        self.assertIsNone(self.exits.ofAddress(first.apAddress))
        self.assertIsNone(self.exits.ofTunnel(tunnel))
        new.ending.end()
        self.assertEqual(self.exits.addresses, [self.exits.pending.apAddress])

    def test_choose(self):
        """
        A tunnel from an exit AP goes over that AP's exit path; from the pending AP, over the
        exit path built for it; never over a path that is gone, nor from an address that is not
        an exit AP of this node.
        """
        path = FakePath()
        pending = self.exits.pending

        def build():
            self.exits.pathBuilt(path)
            return succeed(path)

        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.exits.choose(pending.apAddress, build))), (pending, path))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.exits.choose(None, lambda: succeed(path)))), (pending, path))
        stranger = b"\xfd" + bytes(15)
        self.failureResultOf(Deferred.fromCoroutine(self.exits.choose(stranger, build)), TunnelFailed)
        tunnel = FakeTunnel()
        self.exits.tunnelOpened(pending, tunnel)
        path.ending.end()
        failure = self.failureResultOf(Deferred.fromCoroutine(self.exits.choose(pending.apAddress, lambda: succeed(FakePath()))), TunnelFailed)
        self.assertIn("no exit path", failure.getErrorMessage())
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(self.exits.choose(None, None))), (self.exits.pending, None))


class ClientIdentityTests(NetworkTestCase):
    def setUp(self):
        self.network = MemoryTunnelNetwork(self, 12)
        self.server, self.client = self.network.nodes[:2]
        self.network.buildPath(self.server, ENTRY, self.network.nodes[2:5])

    def test_serverNeverSeesThePublishedApAddress(self):
        """
        The certificate a client presents over an exit path is not that of its published
        AP-address (the address of its own hidden service), but its exit path's exit AP.
        """
        path = self.network.buildPath(self.client, EXIT, self.network.nodes[5:8])
        intact, peer = self.endToEndEcho(self.network, self.client, self.server)
        self.assertTrue(intact)
        self.assertNotEqual(peer.apAddress, self.client.apAddress)
        self.assertEqual(peer.apAddress, self.client.tunnels.exits.ofPath(path).apAddress)

    def test_newIdentityPerExitPath(self):
        """
        Tunnels over one exit path share its exit AP; tunnels over its replacement show another;
        a tunnel keeps its identity until it closes, though a newer exit path exists.
        """
        exits = self.client.tunnels.exits
        first = self.network.buildPath(self.client, EXIT, self.network.nodes[5:8])
        seen = {self.endToEndEcho(self.network, self.client, self.server)[1].apAddress for _ in range(3)}
        self.assertEqual(seen, {exits.ofPath(first).apAddress})

        self.client.paths.retire(first)
        second = self.network.buildPath(self.client, EXIT, self.network.nodes[8:11])
        self.network.settle()
        later = {self.endToEndEcho(self.network, self.client, self.server)[1].apAddress for _ in range(3)}
        self.assertEqual(later, {exits.ofPath(second).apAddress})
        self.assertFalse(seen & later)
        self.assertNotIn(self.client.apAddress, seen | later)

    def test_tunnelKeepsItsIdentity(self):
        """
        A tunnel opened over an older exit path keeps that path's exit AP while a newer one is
        current, and the older AP stays in use until the tunnel closes.
        """
        exits = self.client.tunnels.exits
        acceptInto(self.server, [])
        first = self.network.buildPath(self.client, EXIT, self.network.nodes[5:8])
        tunnel = self.opened(self.network, self.client, self.server.apAddress)
        old = exits.ofPath(first)
        second = self.network.buildPath(self.client, EXIT, self.network.nodes[8:11])
        self.assertIs(exits.current, exits.ofPath(second))
        self.assertEqual(exits.addresses, [exits.ofPath(second).apAddress, old.apAddress])
        self.assertEqual(tunnel.getHost(), TunnelAddress(old.apAddress))
        self.assertIs(exits.ofTunnel(tunnel), old)
        fromOld = self.client.tunnels.open(self.server.apAddress, source=old.apAddress)
        self.network.settle()
        self.assertEqual(self.successResultOf(fromOld).getHost(), TunnelAddress(old.apAddress))
        self.client.paths.retire(first)
        self.network.settle()
        self.assertEqual(exits.addresses, [exits.ofPath(second).apAddress])
        self.failureResultOf(self.client.tunnels.open(self.server.apAddress, source=old.apAddress), TunnelFailed)

    def test_tunnelOutlivesItsPathsRenewal(self):
        """
        An exit path renewed while a tunnel runs over it stays open, no longer handed out,
        until that tunnel closes: the tunnel keeps its exit AP and stays open; new tunnels take the
        new exit path's; then the old path closes and its exit AP goes.
        """
        exits = self.client.tunnels.exits
        acceptInto(self.server, [])
        self.client.paths.settings = replace(self.client.paths.settings, lifetime=100.0, renewAhead=60.0)
        first = self.network.buildPath(self.client, EXIT, self.network.nodes[5:8])
        old = exits.ofPath(first)
        tunnel = self.opened(self.network, self.client, self.server.apAddress)
        self.network.runFor(45)
        [second] = self.client.paths.paths
        self.assertIsNot(second, first)
        self.assertFalse(first.gone)
        self.assertIs(exits.current, exits.ofPath(second))
        self.assertEqual(exits.addresses, [exits.ofPath(second).apAddress, old.apAddress])
        self.assertIn(tunnel, self.client.tunnels.tunnels)
        self.assertEqual(self.opened(self.network, self.client, self.server.apAddress).getHost(), TunnelAddress(exits.ofPath(second).apAddress))
        tunnel.loseConnection()
        self.network.settle()
        self.assertTrue(first.gone)
        self.assertNotIn(old.apAddress, exits.addresses)

    def test_pendingIdentityTakesTheExitPathBuiltForIt(self):
        """
        With no exit path, a tunnel from the pending exit AP (where a program on the tun device
        connects from) builds an exit path, which takes that identity.
        """
        exits = self.client.tunnels.exits
        acceptInto(self.server, [])
        pending = exits.current.apAddress
        opening = self.client.tunnels.open(self.server.apAddress, source=pending)
        self.network.runFor(60)
        tunnel = self.successResultOf(opening)
        self.assertEqual(tunnel.getHost(), TunnelAddress(pending))
        [path] = self.client.paths.paths
        self.assertEqual(exits.ofPath(path).apAddress, pending)

    def test_exitApsNeverPublished(self):
        """No routing entry is stored for an exit AP; the published AP-address's is."""
        path = self.network.buildPath(self.client, EXIT, self.network.nodes[5:8])
        self.endToEndEcho(self.network, self.client, self.server)
        store = self.network.database.store
        self.assertIsNone(store.get(Table.ROUTE, routeKey(self.client.tunnels.exits.ofPath(path).apAddress)))
        self.assertIsNone(store.get(Table.ROUTE, routeKey(self.client.tunnels.exits.pending.apAddress)))
        self.assertIsNotNone(store.get(Table.ROUTE, routeKey(self.server.apAddress)))
