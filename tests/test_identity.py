"""The node's keys in its data directory."""

import os
import stat

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from phantom.crypto import nodeIdOfCertificate
from tests.properties import mutated
from phantom.identity import (
    COMMUNICATION_CERTIFICATE,
    COMMUNICATION_KEY,
    PATH_BUILDING_KEY,
    ROUTING_KEY,
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


PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


class DamagedFileTests(SynchronousTestCase):
    """Every damaged key file gives an L{IdentityError} naming it, never another exception."""

    def setUp(self):
        self.directory = os.path.join(self.mktemp(), "node")
        loadOrCreateIdentity(self.directory)
        with open(os.path.join(self.directory, COMMUNICATION_KEY), "rb") as f:
            self.pem = f.read()

    def assertRefused(self, name, *words):
        with self.assertRaises(IdentityError) as caught:
            loadOrCreateIdentity(self.directory)
        message = str(caught.exception)
        self.assertIn(os.path.join(self.directory, name), message)
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)

    def test_flippedBase64Byte(self):
        """
        A base64 character changed so that the key names an algorithm nobody supports
        (C{UnsupportedAlgorithm}), or Ed448 with an Ed25519 key's bytes (C{InternalError}).
        """
        for oid in (b"K2Vz", b"K2Vx"):
            damaged = self.pem.replace(b"MC4CAQAwBQYDK2Vw", b"MC4CAQAwBQYD" + oid)
            self.assertNotEqual(damaged, self.pem)
            with open(os.path.join(self.directory, COMMUNICATION_KEY), "wb") as f:
                f.write(damaged)
            self.assertRefused(COMMUNICATION_KEY, "not a usable private key")

    def test_directoryInPlace(self):
        """A directory where a key file or the certificate should be."""
        for name in (ROUTING_KEY, COMMUNICATION_CERTIFICATE):
            path = os.path.join(self.directory, name)
            os.remove(path)
            os.mkdir(path)
            self.assertRefused(name, "Is a directory")
            os.rmdir(path)
            loadOrCreateIdentity(self.directory)

    def test_dataDirIsAFile(self):
        """The data directory is a file."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        self.assertRaises(IdentityError, loadOrCreateIdentity, path)

    def test_noTemporaryFilesLeft(self):
        """Writing the files leaves nothing else in the directory."""
        self.assertEqual(
            sorted(os.listdir(self.directory)), sorted([COMMUNICATION_KEY, COMMUNICATION_CERTIFICATE, PATH_BUILDING_KEY, ROUTING_KEY])
        )

    @settings(max_examples=200, deadline=None)
    @given(mutated(st.just(PEM)), st.sampled_from([COMMUNICATION_KEY, PATH_BUILDING_KEY, ROUTING_KEY, COMMUNICATION_CERTIFICATE]))
    def test_anyDamage(self, damaged, name):
        """
        A key file or certificate with a bit flipped, cut short, extended or replaced: the node
        loads an identity (the certificate is then made anew) or refuses with one clear line.
        """
        path = os.path.join(self.directory, name)
        with open(path, "rb") as f:
            original = f.read()
        with open(path, "wb") as f:
            f.write(damaged)
        try:
            loadOrCreateIdentity(self.directory)
        except IdentityError as e:
            self.assertIn(path, str(e))
            self.assertNotEqual(name, COMMUNICATION_CERTIFICATE)
        finally:
            with open(path, "wb") as f:
                f.write(original)
