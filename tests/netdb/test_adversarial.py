"""
Nodes that lie: forged records served or stored, contacts with ids they do not hold. Nothing
they say is stored or believed, and honest lookups still succeed. In memory, on a driven clock
(bad bytes over real TLS: L{tests.netdb.test_rpc} and L{tests.link.test_service}).
"""

import os

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import Contact, addressBytes
from phantom.identity import Identity
from phantom.netdb import K
from phantom.netdb.lookup import MAX_LOOKUP_REQUESTS
from phantom.netdb.records import RoutingEntry
from phantom.netdb.rpc import DhtLinks
from phantom.netdb.service import DhtNode
from phantom.wire import dht as wireDht
from phantom.wire.dht import RpcKind, Table
from tests.netdb.helpers import START, MemoryDht

NOW = START


class ForgingNode(DhtNode):
    """Answers every FIND_VALUE with a forged version of the record asked for, if it has one to forge."""

    forged = None
    served = 0

    def respond(self, sender, kind, content):
        if kind == RpcKind.FIND_VALUE and self.forged is not None:
            self.served += 1
            return RpcKind.VALUE, {"value": self.forged}
        return super().respond(sender, kind, content)


class StaleNode(DhtNode):
    """Keeps serving the routing entries it holds: it says it stores newer ones, and drops them."""

    def respond(self, sender, kind, content):
        if kind == RpcKind.STORE and int(content.table) == Table.ROUTE:
            return RpcKind.STORED, {"accepted": 1}
        return super().respond(sender, kind, content)


class LyingNode(DhtNode):
    """Answers FIND_NODE and FIND_VALUE with contacts whose ids it made up, at real addresses."""

    def respond(self, sender, kind, content):
        if kind in (RpcKind.FIND_NODE, RpcKind.FIND_VALUE):
            fakes = [
                {"node_id": os.urandom(32), "address": addressBytes(c.host), "port": c.port}
                for c in self.table.closest(os.urandom(32), 20)
            ]
            return RpcKind.NODES, {"contacts": fakes}
        return super().respond(sender, kind, content)


def closestIdentity(key, nodes):
    """An identity whose node id is closer to C{key} than any of C{nodes}' ids."""
    target = int.from_bytes(key, "big")
    best = min(int.from_bytes(node.nodeId, "big") ^ target for node in nodes)
    while True:
        identity = Identity.generate()
        if int.from_bytes(identity.nodeId, "big") ^ target < best:
            return identity


def flip(data, position):
    data = bytearray(data)
    data[position] ^= 0x01
    return bytes(data)


class AdversarialTests(SynchronousTestCase):
    def setUp(self):
        self.dht = MemoryDht(self)

    def test_forgedRoutingEntryNotBelieved(self):
        """A node serving a forged routing entry is not believed; the real entry is found."""
        nodes = self.dht.start(10)
        routingKey = ed25519.Ed25519PrivateKey.generate()
        entry = RoutingEntry.create(routingKey, 1, NOW + 3600, [Contact("127.0.0.9", 7402, nodes[1].nodeId)], NOW)
        liar = self.dht.startNode(30, bootstrap=[Contact(*nodes[0].address)], cls=ForgingNode, identity=closestIdentity(entry.key, nodes))
        self.dht.run(liar.joined)
        liar.forged = wireDht.RouteSet.build({"entries": [flip(entry.encoded, 40)]})
        self.dht.run(nodes[2].storeRecord(Table.ROUTE, entry.key, entry.encoded, replication=2))
        seekers = [node for node in nodes if node.store.get(Table.ROUTE, entry.key) is None]
        self.assertGreater(len(seekers), 4)
        for node in seekers:
            found = self.dht.run(node.findRecord(Table.ROUTE, entry.key))
            self.assertEqual(found.entries, (entry,))
        self.assertGreater(liar.served, 0)

    def test_olderEntryNearTheKey(self):
        """
        The node nearest an AP-address's key keeps serving an older, valid routing entry, and
        an honest node near it missed the newer one: every lookup still returns the newest
        entry, and the honest node is sent it.
        """
        nodes = self.dht.start(10)
        routingKey = ed25519.Ed25519PrivateKey.generate()
        entryNode = Contact("127.0.0.9", 7402, nodes[1].nodeId)
        old = RoutingEntry.create(routingKey, 1, NOW + 3600, [entryNode], NOW)
        new = RoutingEntry.create(routingKey, 2, NOW + 3600, [entryNode], NOW)
        stale = self.dht.startNode(30, bootstrap=[Contact(*nodes[0].address)], cls=StaleNode, identity=closestIdentity(old.key, nodes))
        self.dht.run(stale.joined)
        stale.store.put(Table.ROUTE, old.key, old.encoded)
        self.dht.run(nodes[2].storeRecord(Table.ROUTE, new.key, new.encoded, replication=3))
        behind = next(node for node in nodes if node.store.get(Table.ROUTE, old.key) is None)
        behind.store.put(Table.ROUTE, old.key, old.encoded)
        seekers = [node for node in nodes if node.store.get(Table.ROUTE, old.key) is None]
        self.assertGreater(len(seekers), 4)
        for node in seekers:
            self.assertEqual(self.dht.run(node.findRecord(Table.ROUTE, old.key)).sequence, 2)
        self.dht.runFor(1)
        self.assertEqual(behind.store.get(Table.ROUTE, old.key).entries, (new,))
        self.assertEqual(stale.store.get(Table.ROUTE, old.key).entries, (old,))

    def test_onlyForgeriesFindNothing(self):
        """If only forgeries exist, the lookup finds nothing rather than believing one."""
        nodes = self.dht.start(6)
        routingKey = ed25519.Ed25519PrivateKey.generate()
        entry = RoutingEntry.create(routingKey, 1, NOW + 3600, [Contact("127.0.0.9", 7402, nodes[1].nodeId)], NOW)
        liar = self.dht.startNode(30, bootstrap=[Contact(*nodes[0].address)], cls=ForgingNode)
        self.dht.run(liar.joined)
        liar.forged = wireDht.RouteSet.build({"entries": [flip(entry.encoded, len(entry.encoded) - 1)]})
        self.assertIsNone(self.dht.run(nodes[3].findRecord(Table.ROUTE, entry.key)))
        self.assertEqual(liar.served, 1)

    def test_forgedStoresRefused(self):
        """STOREs of forged node records and routing entries are refused; nothing is stored."""
        nodes = self.dht.start(4)
        victim, attacker = nodes[1], nodes[2]
        routingKey = ed25519.Ed25519PrivateKey.generate()
        entry = RoutingEntry.create(routingKey, 1, NOW + 3600, [Contact("127.0.0.9", 7402, nodes[0].nodeId)], NOW)
        ownRecord = victim.store.get(Table.NODE, victim.nodeId)
        forgeries = [
            ("ROUTE", entry.key, flip(entry.encoded, 50)),
            ("ROUTE", os.urandom(32), entry.encoded),
            ("NODE", victim.nodeId, flip(ownRecord.encoded, 30)),
            ("NODE", os.urandom(32), ownRecord.encoded),
        ]
        contact = Contact(*victim.address, victim.nodeId)
        for table, key, value in forgeries:
            kind, content = self.dht.run(attacker.rpc.call(contact, RpcKind.STORE, {"port": 0, "table": table, "key": key, "ttl": 60, "value": value}))
            self.assertEqual((kind, content.accepted), (RpcKind.STORED, 0))
        self.assertIsNone(victim.store.get(Table.ROUTE, entry.key))
        self.assertEqual(victim.store.get(Table.NODE, victim.nodeId), ownRecord)

    def test_madeUpIdsNotBelieved(self):
        """Contacts with made-up ids at real addresses never enter a table or a lookup result."""
        nodes = self.dht.start(8)
        liar = self.dht.startNode(30, bootstrap=[Contact(*nodes[0].address)], cls=LyingNode)
        self.dht.run(liar.joined)
        real = {node.nodeId for node in nodes} | {liar.nodeId}
        for node in nodes:
            search = self.dht.run(node.lookup(os.urandom(32)))
            self.assertTrue({c.nodeId for c in search.result} <= real)
            self.assertTrue({c.nodeId for c in node.table} <= real)
        key = os.urandom(32)
        nodes[1].put(key, b"still found", 60, 3)
        for node in nodes[2:]:
            self.assertEqual(self.dht.run(node.get(key)), b"still found")


class Rung:
    """
    One rung of a ladder of nodes near a key (ids ground out of key pairs: cheap while the
    network is small): asked for anything, it names the next twenty rungs, each closer to the key.
    """

    def __init__(self, network, clock, nodeId, ladder):
        self.links = network.linkService(nodeId=nodeId)
        self.nodeId, self.address = nodeId, self.links.address
        self.ladder, self.rung = ladder, len(ladder)
        self.rpc = DhtLinks(self.links, self, clock)

    served = None
    """A route set it serves (FIND_VALUE) on every other rung, if set."""
    stores = 0

    def respond(self, sender, kind, content):
        if kind == RpcKind.STORE:
            self.stores += 1
            return RpcKind.STORED, {"accepted": 1}
        if kind == RpcKind.FIND_VALUE and self.served is not None and self.rung % 2:
            return RpcKind.VALUE, {"value": self.served}
        if kind in (RpcKind.FIND_NODE, RpcKind.FIND_VALUE):
            rungs = self.ladder[self.rung + 1 : self.rung + 21]
            return RpcKind.NODES, {"contacts": [{"node_id": r.nodeId, "address": addressBytes(r.address[0]), "port": r.address[1]} for r in rungs]}
        return RpcKind.PONG, None


class LadderTests(SynchronousTestCase):
    def test_lookupWorkBounded(self):
        """
        Nodes that each name twenty nodes closer to the key than themselves would keep a lookup
        going as long as they have rungs: it stops after L{MAX_LOOKUP_REQUESTS}, whatever the
        ladder's length, and an honest lookup takes far fewer.
        """
        dht = MemoryDht(self)
        nodes = dht.start(8)
        honest = dht.run(nodes[4].lookup(os.urandom(32), Table.ROUTE))
        self.assertLess(honest.requests, MAX_LOOKUP_REQUESTS / 2)
        key = os.urandom(32)
        target = int.from_bytes(key, "big")
        ladder = []
        for rung in range(1500):
            ladder.append(Rung(dht.network, dht.clock, (target ^ ((1 << 240) - rung * (1 << 228))).to_bytes(32, "big"), ladder))
        seeker = nodes[3]
        seeker.table.seen(Contact(*ladder[0].address, ladder[0].nodeId))
        search = dht.run(seeker.lookup(key, Table.ROUTE))
        self.assertLessEqual(search.requests, MAX_LOOKUP_REQUESTS)

    def test_staleHoldersBounded(self):
        """
        A ladder whose every other rung serves an older route set: the node that looks up
        sends what they lack only to the k closest of them that answered, not to every one.
        """
        dht = MemoryDht(self)
        nodes = dht.start(8)
        routingKey = ed25519.Ed25519PrivateKey.generate()
        entryNode = Contact("127.0.0.9", 7402, nodes[1].nodeId)
        old = RoutingEntry.create(routingKey, 1, NOW + 3600, [entryNode], NOW)
        new = RoutingEntry.create(routingKey, 2, NOW + 3600, [entryNode], NOW)
        target = int.from_bytes(old.key, "big")
        ladder = []
        for rung in range(300):
            ladder.append(Rung(dht.network, dht.clock, (target ^ ((1 << 240) - rung * (1 << 228))).to_bytes(32, "big"), ladder))
            ladder[-1].served = wireDht.RouteSet.build({"entries": [old.encoded]})
        seeker = nodes[3]
        seeker.store.put(Table.ROUTE, new.key, new.encoded)
        seeker.table.seen(Contact(*ladder[0].address, ladder[0].nodeId))
        found = dht.run(seeker.findRecord(Table.ROUTE, new.key))
        self.assertEqual(found.entries, (new,))
        dht.runFor(10)
        self.assertGreater(sum(1 for rung in ladder if rung.stores), 0)
        self.assertLessEqual(sum(rung.stores for rung in ladder), K)
