"""
What one hostile node can make a node spend on path setups: participations held by forged
round-1 packages, and the work of setup arrays; honest builds go on all the same.
"""

import os
import random

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial.unittest import SynchronousTestCase

from phantom.address import addressBytes
from phantom.path.array import Hop, buildArray
from phantom.path.interfaces import PathKind
from phantom.path.relay import encodeArray
from phantom.wire.link import LINK_ID_SIZE, Purpose
from phantom.wire.path import Role
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


class ForgedPackagesTests(SynchronousTestCase):
    def test_forgedRoundOnePackages(self):
        """
        A node sends 200 forged round-1 packages to a victim and holds every link they open:
        they fill only the forger's share of the victim's participations, and the victim still
        takes part in honest builds.
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
        self.assertEqual(victim.paths.helping, victim.paths.peerShare)
        self.assertEqual(len(held), victim.paths.peerShare, "each forged package it took was valid")
        path = network.buildPath(network.nodes[0], PathKind.EXIT, [victim, network.nodes[5]])
        self.assertEqual(path.nodes[0].nodeId, victim.nodeId)
