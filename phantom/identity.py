"""
The node's keys and certificate, kept in its data directory.

On first start a node creates an Ed25519 communication key with a self-signed certificate
(its TLS identity), an X25519 path-building key (setup packages are sealed to it) and an Ed25519
routing key (its AP-address is derived from it); later starts reuse them. Key files are readable by the owner only.
"""

import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from phantom.crypto import nodeIdOfPublicKey, selfSignedCertificate
from phantom.statefiles import writeAtomically

COMMUNICATION_KEY = "communication-key.pem"
COMMUNICATION_CERTIFICATE = "communication-cert.pem"
PATH_BUILDING_KEY = "path-building-key.pem"
ROUTING_KEY = "routing-key.pem"


class IdentityError(Exception):
    """The data directory holds key material that cannot be used."""


@dataclass(frozen=True)
class Identity:
    """A node's long-term keys."""

    communicationKey: ed25519.Ed25519PrivateKey
    certificate: x509.Certificate
    pathBuildingKey: x25519.X25519PrivateKey
    routingKey: ed25519.Ed25519PrivateKey = None
    """The routing key of the node's AP-address (its entry paths' routing entries are signed with it)."""

    @property
    def nodeId(self):
        """SHA-256 of the communication key's SubjectPublicKeyInfo (32 bytes)."""
        return nodeIdOfPublicKey(self.communicationKey.public_key())

    @classmethod
    def generate(cls):
        """A fresh identity that lives only in memory."""
        key = ed25519.Ed25519PrivateKey.generate()
        return cls(key, selfSignedCertificate(key), x25519.X25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate())


def loadOrCreateIdentity(dataDir):
    """
    Load the identity kept in C{dataDir}, creating the directory and any missing key.

    A certificate that is missing, unparsable or does not match the communication key is made
    anew from the key; a key file that exists but cannot be read is an error, never overwritten.

    @param dataDir: path of the node's data directory.
    @raise IdentityError: the directory or a file in it cannot be read or written (a directory
        in a file's place, no permission, a full disk), or a key file holds no usable key of its
        type. Its message names the path and why, in one line.
    """
    try:
        return _loadOrCreateIdentity(dataDir)
    except OSError as e:
        raise IdentityError(f"{e.filename or dataDir}: {e.strerror or e}") from e


def _loadOrCreateIdentity(dataDir):
    os.makedirs(dataDir, mode=0o700, exist_ok=True)
    communicationKey = _loadOrCreateKey(
        os.path.join(dataDir, COMMUNICATION_KEY), ed25519.Ed25519PrivateKey
    )
    pathBuildingKey = _loadOrCreateKey(os.path.join(dataDir, PATH_BUILDING_KEY), x25519.X25519PrivateKey)
    routingKey = _loadOrCreateKey(os.path.join(dataDir, ROUTING_KEY), ed25519.Ed25519PrivateKey)
    certificatePath = os.path.join(dataDir, COMMUNICATION_CERTIFICATE)
    certificate = _loadCertificate(certificatePath)
    if certificate is None or nodeIdOfPublicKey(certificate.public_key()) != nodeIdOfPublicKey(
        communicationKey.public_key()
    ):
        certificate = selfSignedCertificate(communicationKey)
        writeAtomically(certificatePath, certificate.public_bytes(serialization.Encoding.PEM))
    return Identity(communicationKey, certificate, pathBuildingKey, routingKey)


def _loadOrCreateKey(path, keyType):
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except FileNotFoundError:
        key = keyType.generate()
        writeAtomically(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        return key
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, InternalError) as e:
        # OpenSSL's InternalError says, over several lines, that it knows no more.
        why = "its bytes do not fit the algorithm it names" if isinstance(e, InternalError) else " ".join(str(e).split())
        raise IdentityError(f"{path}: not a usable private key ({why})") from e
    if not isinstance(key, keyType):
        raise IdentityError(f"{path}: expected a {keyType.__name__[:-10]} key, found {type(key).__name__}")
    return key


def _loadCertificate(path):
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except (FileNotFoundError, ValueError):
        return None
