"""
A Kademlia node of the network database.

L{DhtNode} answers the DHT requests of other nodes, runs iterative lookups (driving the sans-io
L{Lookup}), keeps its L{RoutingTable} by the least-recently-seen rule, stores records for the
network in its L{RecordStore}, publishes its own node record, samples random nodes for path
building, and serves opaque values to the VoidPhone module API as an L{IValueStore}. Joining,
bucket refresh, republishing and expiry run on the injected clock.
"""

import collections
import os
import random

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phantom.address import Contact, addressBytes, isIPAddress
from phantom.config import DhtSettings
from phantom.netdb import ALPHA, K
from phantom.netdb.contactsfile import MAX_CONTACTS_FILE, encodeContacts, parseContacts
from phantom.netdb.interfaces import IValueStore, PutOutcome
from phantom.netdb.lookup import Lookup
from phantom.netdb.records import InvalidRecord, NodeRecord, RouteSet, contactOf, parseFound
from phantom.netdb.routing import RoutingTable, distance
from phantom.netdb.rpc import Deadlines, DhtLinks, RpcFailed, Unreachable
from phantom.netdb.storage import RecordStore, StoreFull
from phantom.statefiles import writeAtomically
from phantom.wire.dht import RpcKind, Table

CONTACTS_FILE = "contacts.json"
"""Where a node keeps the contacts of its routing table between runs, in its data directory."""

UNANSWERED_KEPT = 4096
"""The most node ids a node remembers as unreachable by its last request (the oldest forgotten first)."""

UNANSWERED_ADDRESSES = 4
"""The most addresses a node remembers one unreachable node id failed at (the oldest forgotten first)."""

JOIN_RETRY_INITIAL = 0.5
JOIN_RETRY_MAXIMUM = 60.0
"""A node that could reach none of its contacts tries again after 0.5 s, doubling up to a minute."""


_OUTCOMES = {kind: ((kind.name, "answered"), (kind.name, "failed")) for kind in RpcKind}
"""The keys of L{LookupStats.rpcs} for each kind of request."""


def _wireContact(contact):
    return {"node_id": contact.nodeId, "address": addressBytes(contact.host), "port": contact.port}


def _endpoint(host, port):
    """C{(host, port)} with an IP address in one form of its many."""
    return (addressBytes(host) if isIPAddress(host) else host), int(port)


class LookupStats:
    """
    Counts of the lookups a node ran: how many, and how many requests they sent; and of the
    requests it sent, by kind and outcome.

    @ivar rpcs: a C{collections.Counter} of C{(kind name, "answered" or "failed")}.
    """

    def __init__(self):
        self.lookups = 0
        self.requests = 0
        self.rpcs = collections.Counter()
        self._watchers = []

    def onLookup(self, f):
        """Call C{f(seconds)} with how long each lookup took, when it ends."""
        self._watchers.append(f)

    def record(self, lookup, seconds=0.0):
        self.lookups += 1
        self.requests += lookup.requests
        for watcher in self._watchers:
            watcher(seconds)


@implementer(IValueStore)
class DhtNode(Service):
    """
    The node's part of the network database.

    @param identity: the node's L{phantom.identity.Identity}.
    @param links: the node's L{phantom.link.service.LinkService}.
    @param clock: C{IReactorTime} for timeouts and maintenance.
    @param settings: L{DhtSettings}.
    @param address: C{(host, port)} other nodes reach this node at, or C{None} when it accepts
        no links (it then publishes no node record and asks not to be added to tables).
    @param bootstrap: L{Contact}s to join through; a contact's node id may be C{None}.
    @param dataDir: where the contacts are saved, or C{None} not to save them.
    @param random: a C{random.Random} for refresh targets and sampling.
    @param resolve: C{resolve(contacts) -> awaitable list of Contact}: the bootstrap contacts
        with host names replaced by addresses, asked again on every try to join; by default
        contacts are taken as they are.
    """

    log = Logger()

    def __init__(self, identity, links, clock, settings=DhtSettings(), address=None, bootstrap=(), dataDir=None, random=random.SystemRandom(), resolve=None):
        self.identity = identity
        self._resolve = resolve
        self.nodeId = identity.nodeId
        self.settings = settings
        self._links = links
        self._clock = clock
        self._random = random
        self.address = address
        self._port = address[1] if address else 0
        self._bootstrap = tuple(bootstrap)
        self._contactsPath = os.path.join(dataDir, CONTACTS_FILE) if dataDir else None
        self.table = RoutingTable(self.nodeId, clock, random)
        self.store = RecordStore(
            clock, settings.maxValueTtl, settings.maxStoreBytes, settings.maxStoreBytesPerPeer, settings.storeReserveBytes, self.responsibleFor
        )
        self.rpc = DhtLinks(links, self, clock, timeout=settings.rpcTimeout, idleClose=settings.idleLinkTimeout)
        self._gets = Deadlines(clock, settings.getTimeout)
        self.stats = LookupStats()
        self._published = {}
        self._unanswered = collections.OrderedDict()
        self._lastRepublish = clock.seconds()
        self._lastNodeRecord = None
        self._maintenance = None
        self.joined = Deferred()
        self.publishing = self.republishing = self.refreshing = succeed(None)

    # Service

    @property
    def contact(self):
        """This node as a L{Contact}, or C{None} when it is not reachable."""
        return Contact(self.address[0], self.address[1], self.nodeId) if self.address else None

    def reachableAt(self, host, port):
        """Set the address other nodes reach this node at (known once its port listens)."""
        self.address = (host, port)
        self._port = port

    def startService(self):
        super().startService()
        saved = self._loadContacts()
        for contact in saved:
            self.table.seen(contact)
        self._maintenance = LoopingCall(self.maintain)
        self._maintenance.clock = self._clock
        self._maintenance.start(self.settings.maintenanceInterval, now=False)
        self._joinDelay = JOIN_RETRY_INITIAL
        self._joining = None
        self._tryJoin(self._bootstrap + tuple(saved))

    def _tryJoin(self, contacts):
        self._joining = None
        if not self.running:
            return
        Deferred.fromCoroutine(self._resolveAndJoin(contacts)).addBoth(self._joinedOrNot, contacts)

    async def _resolveAndJoin(self, contacts):
        if self._resolve is not None:
            resolved = await self._resolve(contacts)
            if contacts and not resolved:
                return 0
            contacts = resolved
        return await self.join(contacts)

    def _joinedOrNot(self, result, contacts):
        if isinstance(result, Failure):
            self.log.failure("joining the network", result)
        if len(self.table) or not contacts:
            self._isolated("saving the contacts", self.saveContacts)
            if not self.joined.called:
                self.joined.callback(len(self.table))
            return
        if self.running:
            self._joining = self._clock.callLater(self._joinDelay, self._tryJoin, contacts)
            self._joinDelay = min(self._joinDelay * 2, JOIN_RETRY_MAXIMUM)

    def stopService(self):
        super().stopService()
        if self._joining is not None and self._joining.active():
            self._joining.cancel()
        if self._maintenance is not None and self._maintenance.running:
            self._maintenance.stop()
        self._gets.expireAll()
        self._isolated("saving the contacts", self.saveContacts)

    # Answering other nodes

    def respond(self, sender, kind, content):
        """
        Answer one request from C{sender} (a L{Contact}, port 0 if it accepts no links).

        @return: the reply as C{(RpcKind, content)}.
        """
        if sender.port:
            self._heardFrom(sender)
        if kind == RpcKind.PING:
            return RpcKind.PONG, None
        if kind == RpcKind.FIND_NODE:
            return self._nodesReply(content.target, sender)
        if kind == RpcKind.FIND_VALUE:
            record = self.store.get(int(content.table), content.key)
            if record is not None:
                return RpcKind.VALUE, {"value": record.encoded}
            return self._nodesReply(content.key, sender)
        if kind == RpcKind.STORE:
            try:
                self.store.put(int(content.table), content.key, content.value, content.ttl, storer=sender.nodeId)
            except InvalidRecord as e:
                self.log.info("refused a STORE from {peer}: {why}", peer=str(sender), why=str(e))
                return RpcKind.STORED, {"accepted": 0}
            return RpcKind.STORED, {"accepted": 1}
        if kind == RpcKind.SAMPLE:
            records = self.store.records(Table.NODE)
            records = [record for record in records if record.nodeId != sender.nodeId]
            if records:
                return RpcKind.VALUE, {"value": self._random.choice(records).encoded}
            return RpcKind.NODES, {"contacts": []}
        raise ValueError(f"{kind.name} is not a request")

    def responsibleFor(self, table, key):
        """
        Whether a record is a node record or routing entry this node must keep even when its
        store is full: it is among the K closest nodes it knows to the key.
        """
        if Table(table) == Table.VALUE:
            return False
        closest = self.table.closest(key, K)
        return len(closest) < K or distance(self.nodeId, key) < distance(closest[-1].nodeId, key)

    def _nodesReply(self, target, sender):
        closest = self.table.closest(target, K, exclude=(sender.nodeId,))
        return RpcKind.NODES, {"contacts": [_wireContact(contact) for contact in closest]}

    # Asking other nodes

    def unanswered(self, nodeId, address=None):
        """
        Whether this node's last request to C{nodeId} found it unreachable (no link to it could
        be opened) and nothing was heard from it since: what this node's own traffic knows of
        a node gone, asking nobody anything. A request that timed out on an open link says
        nothing here: its node may only be slow.

        @param address: C{(host, port)}, where the node itself says it is (its node record):
            only a request to that address counts. Lookups also ask contacts other nodes
            named, and anyone can name an honest node's id at an address where nothing listens.
        """
        failedAt = self._unanswered.get(nodeId)
        return failedAt is not None and (address is None or _endpoint(*address) in failedAt)

    def _heardFrom(self, contact):
        self._unanswered.pop(contact.nodeId, None)
        toPing = self.table.seen(contact)
        if toPing is not None:
            self._call(toPing, RpcKind.PING, {}).addErrback(lambda failure: None)

    def _call(self, contact, kind, content):
        """
        One request to C{contact}; its answer or failure updates the routing table.

        @return: a Deferred firing with the reply C{(RpcKind, content)}, or failing with L{RpcFailed}.
        """

        def answered(reply):
            self._answeredBy(contact, kind)
            return reply

        def failed(failure):
            self.stats.rpcs[_OUTCOMES[kind][1]] += 1
            failure.trap(RpcFailed)
            self._failedBy(contact, failure.value)
            return failure

        return self.rpc.call(contact, kind, dict(content, port=self._port)).addCallbacks(answered, failed)

    def _answeredBy(self, contact, kind):
        """C{contact} answered a request of C{kind}."""
        self.stats.rpcs[_OUTCOMES[kind][0]] += 1
        self._heardFrom(contact)

    def _failedBy(self, contact, error):
        """A request to C{contact} failed with the L{RpcFailed} C{error} (counted by the caller)."""
        self.table.failed(contact)
        if isinstance(error, Unreachable):
            # Every address it failed at since it was last heard from (a few): a contact
            # another node made up must not hide that the node's own address failed.
            endpoint = _endpoint(contact.host, contact.port)
            failedAt = tuple(other for other in self._unanswered.pop(contact.nodeId, ()) if other != endpoint)
            self._unanswered[contact.nodeId] = (failedAt + (endpoint,))[-UNANSWERED_ADDRESSES:]
            if len(self._unanswered) > UNANSWERED_KEPT:
                self._unanswered.popitem(last=False)

    def lookup(self, target, table=None):
        """
        An iterative lookup: FIND_NODE for C{target}, or FIND_VALUE in C{table} if given. A
        FIND_VALUE of the ROUTE table collects the route sets of all the closest nodes.

        @return: a Deferred firing with the finished L{Lookup}; for FIND_VALUE its C{value} is
            the validated record object (a L{RouteSet} for the ROUTE table), or C{None}.
        """
        finished = Deferred()
        _LookupRun(self, self._newLookup(target, table), table, finished.callback)
        return finished

    def _newLookup(self, target, table):
        """The L{Lookup} of C{target} (in C{table}, or FIND_NODE if C{None}), from the closest contacts known."""
        self.table.lookedUp(target)
        start = self.table.closestMeasured(target, K, replacements=True)
        return Lookup(target, start, self.nodeId, K, ALPHA, findValue=table is not None, collect=table == Table.ROUTE, measured=True)

    # Storing and finding

    async def storeRecord(self, table, key, encoded, ttl=None, replication=K):
        """
        Store a record here, if there is room, and on the C{replication} nodes closest to C{key}.

        @return: how many other nodes accepted it.
        @raise InvalidRecord: the record is not valid (it is then sent nowhere).
        """
        self._keep(table, key, encoded, ttl)
        return await self._replicate(table, key, encoded, ttl, replication)

    def _keep(self, table, key, encoded, ttl):
        """
        Store a record of this node's own here, if there is room.

        @return: whether it is stored here.
        @raise InvalidRecord: the record is not valid.
        """
        try:
            self.store.put(table, key, encoded, ttl)
        except StoreFull as e:
            self.log.info("not keeping a {table} record here, only sending it: {why}", table=Table(table).name, why=str(e))
            return False
        return True

    async def _replicate(self, table, key, encoded, ttl, replication):
        search = await self.lookup(key)
        targets = search.result[:replication]
        content = {"table": Table(table).name, "key": key, "ttl": int(ttl or 0), "value": encoded}
        replies = await DeferredList([self._call(contact, RpcKind.STORE, content) for contact in targets], consumeErrors=True)
        return sum(1 for ok, reply in replies if ok and reply[0] == RpcKind.STORED and reply[1].accepted)

    async def findRecord(self, table, key):
        """
        The valid record under C{key} in C{table}: the local copy, else one found by lookup
        (and cached on the closest node that lacked it, as the Kademlia paper does).

        @return: the record object, or C{None}.
        """
        record = self.store.get(table, key)
        if Table(table) == Table.ROUTE:
            return await self._findRoutes(key, record)
        if record is not None:
            return record
        return self._cacheFound(await self.lookup(key, Table(table)), table, key)

    def _cacheFound(self, search, table, key):
        """
        Send the value a FIND_VALUE lookup found (if any) to the closest node that answered
        without it, as the Kademlia paper does, unless it is a node record.

        @return: the value, or C{None}.
        """
        if search.value is not None and search.closestWithoutValue is not None and table != Table.NODE:
            content = {"table": Table(table).name, "key": key, "ttl": int(self._remainingOf(search.value)), "value": search.value.encoded}
            self._call(search.closestWithoutValue, RpcKind.STORE, content).addErrback(lambda failure: None)
        return search.value

    async def _findRoutes(self, key, local):
        """
        The route set of an AP-address: the newest entry of each entry node among the local
        set (C{local}, or C{None}) and those of every node the lookup reached, the highest
        sequence first. A node among the k closest that served an older set, and the closest
        that had none, are sent the entries they lack, so that stale entries are replaced where
        they are kept.

        @return: the L{RouteSet}, or C{None} when no valid entry was found.
        """
        search = await self.lookup(key, Table.ROUTE)
        entries = [entry for _, found in search.values for entry in found.entries]
        if local is not None:
            entries.extend(local.entries)
        if not entries:
            return None
        merged = RouteSet.of(entries)
        closest = {contact.nodeId for contact in search.result}
        behind = [(contact, found) for contact, found in search.values if contact.nodeId in closest]
        if search.closestWithoutValue is not None:
            behind.append((search.closestWithoutValue, RouteSet(())))
        for contact, found in behind:
            for entry in found.lacks(merged):
                content = {"table": Table.ROUTE.name, "key": key, "ttl": int(self._remainingOf(entry)), "value": entry.encoded}
                self._call(contact, RpcKind.STORE, content).addErrback(lambda failure: None)
        return merged

    def _remainingOf(self, record):
        if record.table == Table.VALUE:
            return self.settings.maxValueTtl
        return max(record.expires - self._clock.seconds(), 1)

    def put(self, key, value, ttl, replication):
        """
        L{IValueStore}: keep C{value} here (if the store has room) and on max(C{replication},
        minReplication) of the closest nodes (at most K); invalid values are dropped with a log
        line, and so is a value that no node stored.

        @return: a Deferred that fires with a L{PutOutcome}: how many other nodes accepted the
            value once it was sent to them, and whether this node keeps it; callers that only
            need the local copy may ignore it.
        """
        try:
            kept = self._keep(Table.VALUE, key, value, ttl)
        except InvalidRecord as e:
            self.log.warn("module API value not stored: {why}", why=str(e))
            return succeed(PutOutcome(0, here=False))
        ttl = min(max(int(ttl), 1), self.settings.maxValueTtl)
        replication = min(max(int(replication), self.settings.minReplication), K)
        self._published[(Table.VALUE, key)] = (value, ttl, replication, self._clock.seconds() + ttl)
        d = Deferred.fromCoroutine(self._replicate(Table.VALUE, key, value, ttl, replication))
        d.addErrback(lambda failure: self.log.failure("replicating a module API value", failure) or 0)

        def stored(accepted):
            if not kept and not accepted:
                self.log.warn("module API value for {key} stored on no node: this store is full and no other node took it", key=key.hex())
            return PutOutcome(accepted, here=kept)

        return d.addCallback(stored)

    def get(self, key):
        """L{IValueStore}: the value under C{key}, or C{None}; fires within the GET timeout."""
        local = self.store.get(Table.VALUE, key)
        if local is not None:
            return succeed(local.encoded)
        result = Deferred()
        _Get(self, self._newLookup(key, Table.VALUE), result)
        return result

    # Path building

    async def sampleNodes(self, count, exclude=()):
        """
        Node records of C{count} distinct nodes, one from each node asked per request, the nodes
        asked found by lookups of random ids and not asked again while others are left
        (paper §7.4.2).

        @param exclude: node ids not to return (this node is never returned).
        @return: a list of verified L{NodeRecord}s; shorter than C{count} only when the network
            did not yield enough after a bounded number of lookups.
        """
        excluded = set(exclude) | {self.nodeId}
        found = {}
        asked = set()
        fruitless = 0
        for _ in range(max(4, 2 * count)):
            if len(found) >= count or fruitless >= 2:
                break
            before = len(found)
            target = self._random.getrandbits(256).to_bytes(32, "big")
            search = await self.lookup(target)
            # Nodes not asked yet first; in a small network, once all were asked, ask them again.
            responders = [contact for contact in search.result if contact.nodeId not in asked] or search.result
            asked.update(contact.nodeId for contact in responders)
            replies = await DeferredList([self._call(contact, RpcKind.SAMPLE, {}) for contact in responders], consumeErrors=True)
            for ok, reply in replies:
                if not ok or reply[0] != RpcKind.VALUE:
                    continue
                try:
                    record = NodeRecord.parseSelfKeyed(reply[1].value, self._clock.seconds())
                except InvalidRecord:
                    continue
                if record.nodeId not in excluded:
                    found.setdefault(record.nodeId, record)
            # A small network runs out of nodes to find: stop after two rounds that found none.
            fruitless = fruitless + 1 if len(found) == before else 0
        return list(found.values())[:count]

    # Joining and upkeep

    async def join(self, contacts):
        """
        Join through C{contacts}: greet each, look up our own id, refresh every bucket up to our
        nearest neighbour's, publish our node record.

        @return: how many contacts the routing table then holds.
        """
        for contact in contacts:
            if (contact.host, contact.port) == self.address:
                continue
            try:
                channel = await self.rpc.channelToAddress(contact.host, contact.port, contact.nodeId)
                await channel.request(RpcKind.PING, {"port": self._port})
            except RpcFailed as e:
                self.log.info("contact {contact} unreachable: {why}", contact=str(contact), why=str(e))
                continue
            self._heardFrom(Contact(contact.host, contact.port, channel.link.nodeId))
        if not len(self.table):
            if contacts:
                return 0
            await self.publishNodeRecord()
            self.log.info("no contacts to join through: this node starts a network")
            return 0
        await self.lookup(self.nodeId)
        await gatherResults([self.lookup(target) for target in self.table.refreshTargets(self._clock.seconds(), 0)])
        await self.publishNodeRecord()
        self.log.info("joined the network: {count} contacts", count=len(self.table))
        return len(self.table)

    async def publishNodeRecord(self):
        """Publish this node's signed node record on the nodes closest to its id."""
        if self.address is None:
            return 0
        now = self._clock.seconds()
        self._lastNodeRecord = now
        record = NodeRecord.create(self.identity, self.address[0], self.address[1], int(now))
        return await self.storeRecord(Table.NODE, self.nodeId, record.encoded, replication=K)

    def maintain(self):
        """
        The periodic upkeep: expire records, close idle links, save contacts, and start what is
        due: bucket refreshes, the node record, republishing. C{refreshing}, C{publishing} and
        C{republishing} are Deferreds of the last ones started.
        """
        now = self._clock.seconds()
        self._isolated("expiring records", self.store.expire)
        self._isolated("closing idle links", self.rpc.closeIdle)
        self._isolated("saving the contacts", self.saveContacts)
        targets = self.table.refreshTargets(now, self.settings.refreshInterval)
        if targets:
            self.refreshing = DeferredList([self.lookup(target) for target in targets])
        if self._lastNodeRecord is not None and now - self._lastNodeRecord >= self.settings.nodeRecordInterval:
            self.publishing = self._background(self.publishNodeRecord(), "publishing the node record")
        if now - self._lastRepublish >= self.settings.republishInterval:
            self._lastRepublish = now
            self.republishing = self._background(self.republish(), "republishing")

    def _isolated(self, what, step):
        """Run one step of the upkeep; its failure is logged and stops nothing else."""
        try:
            step()
        except Exception:
            self.log.failure(what)

    def _background(self, coroutine, what):
        """Run C{coroutine} on its own, logging its failure. @return: a Deferred of its end."""
        return Deferred.fromCoroutine(coroutine).addErrback(lambda failure: self.log.failure(what, failure))

    async def republish(self):
        """
        Send again every record this node holds, and every value it published and that has
        not expired, to the nodes now closest to its key.
        """
        now = self._clock.seconds()
        notHeld = []
        for (table, key), (value, ttl, replication, until) in list(self._published.items()):
            if until <= now:
                del self._published[(table, key)]
                continue
            try:
                if not self._keep(table, key, value, until - now):
                    notHeld.append((table, key, value, until - now, replication))
            except InvalidRecord as e:
                self.log.warn("not republishing a value: {why}", why=str(e))
        for record in self.store.records():
            if record.table == Table.NODE and record.nodeId == self.nodeId:
                continue
            ttl = self.store.remaining(record.table, record.key)
            replication = self._published.get((record.table, record.key), (None, None, K))[2]
            await self._replicate(record.table, record.key, record.encoded, ttl, replication)
        for table, key, value, ttl, replication in notHeld:
            await self._replicate(table, key, value, ttl, replication)

    def saveContacts(self):
        """
        Write the routing table's contacts to the data directory, atomically and durably; a
        write that fails (a full disk, a directory in the way) is a warning, and the old file
        stays as it was.
        """
        if self._contactsPath is None:
            return
        try:
            writeAtomically(self._contactsPath, encodeContacts(self.table))
        except OSError as e:
            self.log.warn("could not save {path}: {why}", path=self._contactsPath, why=str(e))

    def _loadContacts(self):
        if self._contactsPath is None:
            return []
        try:
            with open(self._contactsPath, "rb") as f:
                return parseContacts(f.read(MAX_CONTACTS_FILE + 1))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            self.log.warn("ignoring unreadable {path}: {why}", path=self._contactsPath, why=str(e))
            return []


class _LookupRun:
    """
    One lookup of a L{DhtNode} over its RPCs: sends the requests its L{Lookup} names and
    reports each outcome, until the lookup is done. It is the receiver of its requests'
    outcomes (L{phantom.netdb.rpc.RpcChannel.ask}): a reply is a call, not a Deferred's
    callbacks. (Closures calling one another would leave a cycle of cells and functions behind
    every lookup, for the garbage collector to find.)
    """

    def __init__(self, node, search, table, finished):
        """
        @param finished: called with the L{Lookup} once it is done.
        """
        self._node = node
        self._search = search
        self._table = table
        if table is None:
            self._kind = RpcKind.FIND_NODE
            self._content = {"target": search.target, "port": node._port}
        else:
            self._kind = RpcKind.FIND_VALUE
            self._content = {"table": table, "key": search.target, "port": node._port}
        self._began = node._clock.seconds()
        self._finished = finished
        self._step()

    def replied(self, contact, kind, content):
        """A contact answered (L{phantom.netdb.rpc.RpcChannel.ask})."""
        search, node = self._search, self._node
        node._answeredBy(contact, self._kind)
        if search.done:
            return self._step()
        if kind == RpcKind.VALUE:
            try:
                record = parseFound(self._table, search.target, content.value, node._clock.seconds())
            except InvalidRecord as e:
                node.log.warn("node {peer} served an invalid record: {why}", peer=str(contact), why=str(e))
                node.table.failed(contact)
                search.failed(contact)
            else:
                search.found(contact, record)
        else:
            try:
                search.responded(contact, [contactOf(c) for c in content.contacts])
            except ValueError:
                search.failed(contact)
        self._step()

    def failed(self, contact, error):
        """A request failed with the L{RpcFailed} C{error} (L{phantom.netdb.rpc.RpcChannel.ask})."""
        node = self._node
        node.stats.rpcs[_OUTCOMES[self._kind][1]] += 1
        node._failedBy(contact, error)
        if not self._search.done:
            self._search.failed(contact)
        self._step()

    def _step(self):
        if self._finished is None:
            return
        search = self._search
        if search.done:
            return self._finish()
        queries = search.nextQueries()
        if not queries:
            return None if search.inFlight else self._finish()
        # The closest first, on its own: the others leave on the reactor's next turn, so that
        # the first request is on its way (and its answer read, where all the nodes share one
        # process) before the others are even encoded. The same requests leave, a turn apart.
        self._node.rpc.ask(queries[0], self._kind, self._content, self, queries[0])
        if len(queries) > 1:
            self._node._clock.callLater(0, self._askAll, queries[1:])

    def _askAll(self, contacts):
        ask, kind, content = self._node.rpc.ask, self._kind, self._content
        for contact in contacts:
            ask(contact, kind, content, self, contact)

    def _finish(self):
        node, finished = self._node, self._finished
        self._finished = None
        node.stats.record(self._search, node._clock.seconds() - self._began)
        finished(self._search)


class _Get:
    """
    One GET that runs a lookup: C{result} fires with the value found, or C{None} once the
    lookup ended without one or the GET timeout passed (on the node's L{Deadlines} of GETs,
    one timer for all of them). The value found is cached as L{DhtNode.findRecord} caches it,
    once the GET has its result. A GET that answered lets go of its result at once: its
    deadline's entry stays until the timer comes by, and must not keep the value alive.
    """

    def __init__(self, node, search, result):
        self._node = node
        self._result = result
        node._gets.add(self, None)
        _LookupRun(node, search, Table.VALUE, self._found)

    def awaits(self, _):
        """L{Deadlines}: whether the GET still waits for its lookup."""
        return self._result is not None

    def expire(self, _):
        """L{Deadlines}: the GET timeout passed."""
        self._answer(None)

    def _answer(self, value):
        result, self._result = self._result, None
        result.callback(value)

    def _found(self, search):
        if self._result is None:
            return  # too late: the GET has answered None (its timeout), and caches nothing
        value = search.value
        self._answer(value.encoded if value is not None else None)
        self._node._cacheFound(search, Table.VALUE, search.target)
