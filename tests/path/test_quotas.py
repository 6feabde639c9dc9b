"""
What one hostile node can make a node spend on path setups: participations held by forged
round-1 packages, and the work of setup arrays; honest builds go on all the same.
"""

import os
import random
from collections import Counter

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import addressBytes
from phantom.config import PathSettings
from phantom.crypto import keystreamXor
from phantom.errors import PathFailed
from phantom.path.array import MAX_TRIALS, Hop, SetupRejected, buildArray, openOwnSlot, slotKey
from phantom.path.interfaces import PathKind
from phantom.path.plan import PathShape
from phantom.path.relay import TRIALS_PER_SECOND, SetupWork, encodeArray, parseArray
from phantom.path.service import PEER_SHARES
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.path import MAX_SLOTS, SIGNATURE_SIZE, SLOT_SIZE, Role
from tests.link.helpers import CollectingHandler
from tests.path.helpers import MemoryPathNetwork


def forgedArray(victim, forger, linkId):
    """
    A valid round-1 array for C{victim} alone, made up by C{forger} (a link service): it comes
    from the forger over C{linkId} and goes back to it, with a construction key of its own.
    """
    host, port = forger.address

    def neighbour(linkId):
        return {"address": addressBytes(host), "port": port, "node_id": forger.nodeId, "link_id": linkId}

    fields = {
        "role": Role.Y, "entry": 0, "success": 0, "previous": neighbour(linkId), "next": neighbour(os.urandom(LINK_ID_SIZE)),
        "key_seed": bytes(32), "key_count": 0, "ap_address": bytes(16),
    }
    built = buildArray([Hop(victim.record.pathBuildingKey, linkId, fields)], 1, ed25519.Ed25519PrivateKey.generate(), random.Random())
    return encodeArray(1, built.initial)


class SlotTrialTests(SynchronousTestCase):
    def test_costliestArray(self):
        """
        An array whose every slot looks real is tried on at most L{MAX_TRIALS} slots; one of
        random slots on about 1 in 16; an honest array's own slot is found.
        """
        key = x25519.X25519PrivateKey.generate()
        linkId = os.urandom(LINK_ID_SIZE)
        for slots, most in ((parseArray(craftedArray(linkId), 1), MAX_TRIALS), ([os.urandom(SLOT_SIZE) for _ in range(MAX_SLOTS)], 24)):
            trials = []
            self.assertRaises(SetupRejected, openOwnSlot, slots, linkId, 1, key, tried=lambda: trials.append(1))
            self.assertLessEqual(len(trials), most)

    def test_setupWork(self):
        """A peer's arrays are refused once it has spent its arrays or its trials; others' are not."""
        clock = task.Clock()
        work = SetupWork(clock.seconds, arrays=2, trials=MAX_TRIALS)
        self.assertEqual([work.admit("mallory") for _ in range(5)], [True] * 4 + [False])
        clock.advance(10)
        for _ in range(2 * MAX_TRIALS + 1):
            work.tried("mallory")
        self.assertFalse(work.admit("mallory"))
        self.assertTrue(work.admit("alice"))
        clock.advance(2)
        self.assertTrue(work.admit("mallory"))


class ForgedPackagesTests(SynchronousTestCase):
    def test_forgedRoundOnePackages(self):
        """
        A node sends 200 forged round-1 packages to a victim and holds every link they open:
        they fill at most the forger's share of the victim's participations (its arrays a
        second bound them too), and the victim still takes part in honest builds.
        """
        network = MemoryPathNetwork(self, 12)
        victim = network.nodes[3]
        forger = network.links.linkService()
        held = []
        forger.registerPurpose(Purpose.SETUP, lambda link: held.append(CollectingHandler(link)) or held[-1])
        for _ in range(200):
            linkId = os.urandom(LINK_ID_SIZE)
            opened = forger.connect(*victim.address, Purpose.SETUP, linkId, victim.nodeId)
            opened.addCallback(lambda link, linkId=linkId: (link.attach(CollectingHandler(link)), link.sendFrame(forgedArray(victim, forger, linkId))))
        network.settle()
        self.assertGreater(victim.paths.helping, 0)
        self.assertLessEqual(victim.paths.helping, victim.paths.peerShare)
        self.assertEqual(len(held), victim.paths.helping, "each forged package it took was valid")
        path = network.buildPath(network.nodes[0], PathKind.EXIT, [victim, network.nodes[5]])
        self.assertEqual(path.nodes[0].nodeId, victim.nodeId)


def craftedArray(linkId, count=MAX_SLOTS):
    """
    An array of C{count} slots, none for anyone, each of which looks real once the layer of
    C{linkId} is off (so that a node would try its key on every one): the costliest array a
    peer that opened link C{linkId} can send.
    """
    key = slotKey(linkId, 1)
    slots = []
    for _ in range(count):
        plain = bytearray(os.urandom(SLOT_SIZE))
        plain[SIGNATURE_SIZE - 1] &= 0x1F
        plain[SIGNATURE_SIZE + 31] &= 0x7F
        slots.append(keystreamXor(key, bytes(plain)))
    return encodeArray(1, slots)


class Flood:
    """
    One identity that keeps C{perTarget} SETUP links open to each of C{targets} and sends on
    each an array every C{interval} seconds: first a forged round-1 package that makes the
    target hold a participation, then the costliest arrays it can craft. A link the target
    closes is opened again at once. (Its forgeries are made once per link id, C{perTarget} of
    them per target, and used again: nothing in them depends on the time.)
    """

    def __init__(self, network, targets, perTarget=200, interval=0.1):
        self.links = network.links.linkService()
        self.links.registerPurpose(Purpose.SETUP, lambda link: CollectingHandler(link))
        self.targets = targets
        self.perTarget = perTarget
        self.open = {target.nodeId: {} for target in targets}
        self.opening = {target.nodeId: 0 for target in targets}
        self.forged = {}
        for target in targets:
            linkIds = [os.urandom(LINK_ID_SIZE) for _ in range(perTarget)]
            self.forged[target.nodeId] = [(linkId, forgedArray(target, self.links, linkId), craftedArray(linkId)) for linkId in linkIds]
        self.sent = 0
        self._interval = interval
        self._loop = task.LoopingCall(self.step)
        self._loop.clock = network.clock

    def start(self):
        self._loop.start(self._interval)

    def stop(self):
        self._loop.stop()

    def step(self):
        for target in self.targets:
            links = self.open[target.nodeId]
            for link, crafted in list(links.items()):
                if link.closed:
                    del links[link]
                else:
                    link.sendFrame(crafted)
                    self.sent += 1
            for _ in range(self.perTarget - len(links) - self.opening[target.nodeId]):
                self._connect(target)

    def _connect(self, target):
        forgeries = self.forged[target.nodeId]
        linkId, forged, crafted = forgeries.pop(0)
        forgeries.append((linkId, forged, crafted))
        self.opening[target.nodeId] += 1

        def opened(link):
            link.attach(CollectingHandler(link))
            link.sendFrame(forged)
            self.sent += 1
            self.open[target.nodeId][link] = crafted

        def settled(result):
            self.opening[target.nodeId] -= 1
            return result

        d = self.links.connect(*target.address, Purpose.SETUP, linkId, target.nodeId)
        d.addBoth(settled).addCallbacks(opened, lambda failure: None)


class SetupFloodTests(SynchronousTestCase):
    def test_oneIdentityFloodsFourNodes(self):
        """
        One identity holds 200 SETUP links to each of 4 nodes of a 16-node network and sends
        arrays on them as fast as it can: at least 95 % of 40 honest path builds still
        succeed, and it makes each of the 4 try its key on no more slots than its share.
        """
        tried = Counter()
        realTried = SetupWork.tried

        def counting(work, peer):
            tried[peer] += 1
            realTried(work, peer)

        self.patch(SetupWork, "tried", counting)
        network = MemoryPathNetwork(self, 16, PathSettings(roundTimeout=5.0, attempts=3, diversity="off"))
        targets = network.nodes[12:]
        flood = Flood(network, targets)
        flood.start()
        network.runFor(1)
        started = network.clock.seconds()
        built = failed = 0
        for batch in range(8):
            owners = network.nodes[batch % 3 * 4 : batch % 3 * 4 + 5]
            builds = [Deferred.fromCoroutine(owner.paths.build(PathKind.EXIT, PathShape(2, 3))) for owner in owners]
            for d in builds:
                try:
                    network.run(d)
                    built += 1
                except PathFailed:
                    failed += 1
            network.runFor(0.1)
        elapsed = network.clock.seconds() - started + 1
        flood.stop()
        self.assertEqual(built + failed, 40)
        self.assertGreaterEqual(built, 38, f"{failed} of 40 builds failed")
        self.assertGreater(flood.sent, 4 * 200)
        self.assertLessEqual(tried[flood.links.nodeId], len(targets) * (2 * TRIALS_PER_SECOND + elapsed * TRIALS_PER_SECOND + MAX_TRIALS))


class SybilParticipationTests(SynchronousTestCase):
    def hold(self, network, victim, sybils, perSybil):
        """Each of C{sybils} (link services) opens C{perSybil} SETUP links to C{victim} and holds them, sending nothing."""
        for sybil in sybils:
            sybil.registerPurpose(Purpose.SETUP, CollectingHandler)
            for _ in range(perSybil):
                opened = sybil.connect(*victim.address, Purpose.SETUP, os.urandom(LINK_ID_SIZE), victim.nodeId)
                opened.addCallbacks(lambda link: link.attach(CollectingHandler(link)), lambda failure: None)
        network.settle()

    def test_sybilsOnOneAddress(self):
        """
        Four identities (node ids are free: a key pair each) on one address hold SETUP links
        to a victim: together they take at most one peer's share of its participations, and
        the victim still takes part in an honest build.
        """
        network = MemoryPathNetwork(self, 12)
        victim = network.nodes[3]
        share = victim.paths.peerShare
        sybils = [network.links.linkService(host="10.9.9.9", port=7402 + i) for i in range(4)]
        self.hold(network, victim, sybils, share)
        self.assertLessEqual(victim.paths.helping, share)
        path = network.buildPath(network.nodes[0], PathKind.EXIT, [victim, network.nodes[5]])
        self.assertEqual(path.nodes[0].nodeId, victim.nodeId)

    def test_sybilsOnManyAddresses(self):
        """
        Identities on as many addresses as fill the victim's participations between them: the
        participations of the address holding the most give way to an honest build's.
        """
        network = MemoryPathNetwork(self, 12)
        victim = network.nodes[3]
        share = victim.paths.peerShare
        sybils = [network.links.linkService(host=f"10.9.9.{i + 1}") for i in range(PEER_SHARES)]
        self.hold(network, victim, sybils, share)
        self.assertEqual(victim.paths.helping, victim.paths.settings.maxParticipations)
        path = network.buildPath(network.nodes[0], PathKind.EXIT, [victim, network.nodes[5]])
        self.assertEqual(path.nodes[0].nodeId, victim.nodeId)
