"""TLS credentials for the peer session, made from the device's long-term identity key.

QUIC needs a certificate on the server side. Ours is self-signed with the identity key itself (Ed25519,
RFC 8410), so the TLS handshake's CertificateVerify (RFC 8446 §4.4.3) proves that the answering peer holds
the private key of the identity the dialler expects. Nobody checks names or issuers: trust comes from the
pinned key (`app.session.trust`), never from a certificate authority.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from qh3._hazmat import Certificate
from qh3._hazmat import Ed25519PrivateKey as TlsEd25519PrivateKey

from app.account.identity import DeviceIdentity

#: The only TLS signature scheme either side offers or accepts (RFC 8446 §4.2.3 ``ed25519``).
ED25519_SCHEME = 0x0807
#: Ed25519 SubjectPublicKeyInfo is a fixed 12-byte prefix followed by the raw 32-byte key (RFC 8410 §4).
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
#: A day of slack for clocks that are wrong; the dates mean nothing to a pinned key.
_VALIDITY = datetime.timedelta(days=1)


def tls_credentials(identity: DeviceIdentity) -> tuple[Certificate, TlsEd25519PrivateKey]:
    """A fresh self-signed certificate over the identity key, and that key in the QUIC library's type."""
    key = identity.private_key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"punchline {identity.device_id}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _VALIDITY)
        .not_valid_after(now + _VALIDITY)
        .sign(key, None)
    )
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Certificate(certificate.public_bytes(serialization.Encoding.DER)), TlsEd25519PrivateKey(pkcs8)


def certificate_identity_key(certificate: Certificate) -> bytes | None:
    """The raw Ed25519 public key a peer's certificate carries, or None if it carries another kind."""
    info = bytes(certificate.public_key())
    if len(info) == len(_ED25519_SPKI_PREFIX) + 32 and info.startswith(_ED25519_SPKI_PREFIX):
        return info[len(_ED25519_SPKI_PREFIX) :]
    return None
