"""Every cryptographic operation the protocol names, on C{cryptography}."""

import datetime
import hashlib

from cryptography import x509
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
