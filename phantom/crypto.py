"""Every cryptographic operation the protocol names, on C{cryptography}."""

import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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


ZERO_NONCE = bytes(12)
ZERO_COUNTER = bytes(16)


def deriveKey(secret, info, length=32):
    """HKDF-SHA256 of C{secret} for the purpose named by C{info}."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def keystreamXor(key, data):
    """
    C{data} XORed with the AES-256-CTR keystream of C{key} from counter zero: encryption and
    decryption alike. Each key must encrypt one message only; callers derive a fresh key each time.
    """
    return Cipher(algorithms.AES(key), modes.CTR(ZERO_COUNTER)).encryptor().update(data)


def pseudorandomBytes(seed, length):
    """C{length} bytes of AES-CTR keystream under C{seed} (16 bytes): reproducible by whoever has the seed."""
    return Cipher(algorithms.AES(seed), modes.CTR(ZERO_COUNTER)).encryptor().update(bytes(length))


def sealTo(recipientPublicKey, plaintext, domain):
    """
    Encrypt C{plaintext} so that only the holder of the X25519 private key for
    C{recipientPublicKey} (32 raw bytes) can read it: an ephemeral X25519 key, HKDF, AES-256-GCM.

    @return: the ephemeral public key (32 bytes), the ciphertext and the 16-byte tag.
    """
    ephemeral = x25519.X25519PrivateKey.generate()
    ephemeralPublic = rawPublicBytes(ephemeral.public_key())
    shared = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(recipientPublicKey))
    key = deriveKey(shared, domain + ephemeralPublic + recipientPublicKey)
    return ephemeralPublic + AESGCM(key).encrypt(ZERO_NONCE, plaintext, None)


def openSealed(privateKey, sealed, domain):
    """
    Decrypt what L{sealTo} made for C{privateKey}'s public key.

    @return: the plaintext, or C{None} if it was not sealed to this key or was altered.
    """
    ephemeralPublic, ciphertext = sealed[:32], sealed[32:]
    try:
        shared = privateKey.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeralPublic))
    except ValueError:
        return None
    key = deriveKey(shared, domain + ephemeralPublic + rawPublicBytes(privateKey.public_key()))
    try:
        return AESGCM(key).decrypt(ZERO_NONCE, ciphertext, None)
    except InvalidTag:
        return None
