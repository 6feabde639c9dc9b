"""The node's keys in its data directory."""

import os
import stat

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from twisted.trial.unittest import SynchronousTestCase

from phantom.crypto import nodeIdOfCertificate
from phantom.identity import (
    COMMUNICATION_CERTIFICATE,
    COMMUNICATION_KEY,
    PATH_BUILDING_KEY,
    IdentityError,
    loadOrCreateIdentity,
)


class IdentityTests(SynchronousTestCase):
    """Created on first start, reused later, private to the owner."""

    def test_createAndReuse(self):
        """The first start creates the keys; the second finds the same identity."""
        directory = os.path.join(self.mktemp(), "node")
        first = loadOrCreateIdentity(directory)
        second = loadOrCreateIdentity(directory)
        self.assertEqual(first.nodeId, second.nodeId)
        self.assertIsInstance(first.communicationKey, ed25519.Ed25519PrivateKey)
        self.assertIsInstance(first.pathBuildingKey, x25519.X25519PrivateKey)
        self.assertEqual(nodeIdOfCertificate(second.certificate), first.nodeId)
        self.assertEqual(len(first.nodeId), 32)

    def test_ownerOnly(self):
        """The directory and every key file are accessible by the owner only."""
        directory = os.path.join(self.mktemp(), "node")
        loadOrCreateIdentity(directory)
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        for name in (COMMUNICATION_KEY, COMMUNICATION_CERTIFICATE, PATH_BUILDING_KEY):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode), 0o600, name)

    def test_certificateRemade(self):
        """A lost certificate is made anew from the key; the node id does not change."""
        directory = os.path.join(self.mktemp(), "node")
        nodeId = loadOrCreateIdentity(directory).nodeId
        os.remove(os.path.join(directory, COMMUNICATION_CERTIFICATE))
        self.assertEqual(loadOrCreateIdentity(directory).nodeId, nodeId)

    def test_corruptKeyNotOverwritten(self):
        """A key file that cannot be read is an error and is left as it is."""
        directory = os.path.join(self.mktemp(), "node")
        loadOrCreateIdentity(directory)
        path = os.path.join(directory, COMMUNICATION_KEY)
        with open(path, "wb") as f:
            f.write(b"not a key")
        self.assertRaises(IdentityError, loadOrCreateIdentity, directory)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"not a key")

    def test_wrongKeyType(self):
        """A key of the wrong type in a key file is an error."""
        directory = os.path.join(self.mktemp(), "node")
        loadOrCreateIdentity(directory)
        os.replace(os.path.join(directory, PATH_BUILDING_KEY), os.path.join(directory, COMMUNICATION_KEY))
        with self.assertRaises(IdentityError) as caught:
            loadOrCreateIdentity(directory)
        self.assertIn("Ed25519", str(caught.exception))
