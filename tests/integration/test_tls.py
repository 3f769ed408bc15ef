"""Signalling over TLS (wss://) with a certificate the client is told to trust."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from app.account.identity import DeviceIdentity
from app.signalling.client import ClientOptions, Credentials, ServerUnreachable, SignallingClient
from rendezvous.server import RendezvousServer, StartupError
from rendezvous.wire import signalling as sig
from tests.helpers.server import PASSWORD, server_config


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "punchline test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_sign_in(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    config = replace(server_config(tmp_path / "data"), tls_cert=cert, tls_key=key)
    async with await RendezvousServer.start(config) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with connect(server.url, ssl=trusted) as ws:
            await ws.send(sig.encode(sig.Register(id=1, username="alice", password=PASSWORD)))
            assert isinstance(sig.decode_server_message(await ws.recv()), sig.Ok)
        client = SignallingClient(
            server.url,
            Credentials("alice", password=PASSWORD),
            DeviceIdentity.generate(),
            options=ClientOptions(ssl_context=trusted),
        )
        await client.start()
        await client.close()

        # Without trusting the certificate, the client refuses to talk (and says why).
        untrusting = SignallingClient(
            server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate()
        )
        with pytest.raises(ServerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await untrusting.start()


async def test_tls_needs_cert_and_key_together(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(StartupError, match="both a certificate"):
        await RendezvousServer.start(replace(server_config(tmp_path), tls_cert=cert))
    with pytest.raises(StartupError, match="Cannot load the TLS certificate"):
        await RendezvousServer.start(
            replace(server_config(tmp_path), tls_cert=cert, tls_key=tmp_path / "missing.pem")
        )
