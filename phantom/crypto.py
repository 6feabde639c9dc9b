"""Every cryptographic operation the protocol names, on C{cryptography}."""

import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

NODE_ID_SIZE = 32


def nodeIdOfPublicKey(publicKey):
    """
    A node id: SHA-256 of the communication key's DER SubjectPublicKeyInfo.

    @param publicKey: a C{cryptography} public key.
    @return: 32 bytes.
    """
    spki = publicKey.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def nodeIdOfCertificate(certificate):
    """
    @param certificate: a C{cryptography} X.509 certificate.
    @return: the node id its public key pins.
    """
    return nodeIdOfPublicKey(certificate.public_key())


def apAddressOf(routingPublicKey):
    """
    The AP-address a routing key owns: C{fd} followed by the first 15 bytes of SHA-256 of the
    raw 32-byte Ed25519 public key. Nobody can claim an address without its key.

    @param routingPublicKey: an Ed25519 public key, or its 32 raw bytes.
    @return: 16 bytes.
    """
    if not isinstance(routingPublicKey, bytes):
        routingPublicKey = rawPublicBytes(routingPublicKey)
    return b"\xfd" + hashlib.sha256(routingPublicKey).digest()[:15]


def rawPublicBytes(publicKey):
    """The raw encoding of an Ed25519 or X25519 public key (32 bytes)."""
    return publicKey.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signWithDomain(privateKey, domain, message):
    """
    An Ed25519 signature over C{domain} and C{message}; the domain keeps a signature made for
    one purpose from being valid for another.
    """
    return privateKey.sign(domain + b"\x00" + message)


def verifyWithDomain(publicKeyBytes, domain, message, signature):
    """
    @return: whether C{signature} is the Ed25519 signature of C{domain} and C{message} by the
        key whose raw bytes are C{publicKeyBytes}.
    """
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(publicKeyBytes).verify(signature, domain + b"\x00" + message)
    except (InvalidSignature, ValueError):
        return False
    return True


def isCommunicationKey(publicKey):
    """
    @return: whether C{publicKey} is of the type node communication keys have (Ed25519).
    """
    return isinstance(publicKey, ed25519.Ed25519PublicKey)


def selfSignedCertificate(privateKey):
    """
    A self-signed certificate for an Ed25519 key, valid indefinitely (RFC 5280 §4.1.2.5).

    Peers are authenticated by the hash of the key, never by the certificate's names or dates;
    the certificate is only TLS's way of carrying the key.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phantom node")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(privateKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc))
        .sign(privateKey, None)
    )
