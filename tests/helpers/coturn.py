"""A real coturn ``turnserver`` for tests: started on 127.0.0.1 ephemeral ports, killed afterwards.

Use `run_coturn` as an async context manager from a fixture. How it is started follows NOTES.md: ``-n`` (no
/etc/turnserver.conf), no CLI/TLS/DTLS/TCP, explicit listening and relay IPs, a wide relay port range (a
narrow one answers 508 while old relay sockets linger) and ``--allow-loopback-peers`` (else relayed data to
127.x peers silently disappears). With a ``secret`` it checks TURN REST credentials (``--use-auth-secret``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.nat.stun_client import StunClientError, discover_public_address
from rendezvous.wire.stun import Address
from tests.helpers.processes import stop

TURNSERVER = shutil.which("turnserver")
#: The realm coturn is told to use (it names it in its 401 challenges).
REALM = "punchline.test"


@dataclass(frozen=True)
class Coturn:
    """A running coturn: where it listens, the REST secret it checks (if any), its log file."""

    address: Address
    secret: str | None
    log_file: Path

    def log_tail(self) -> str:
        """The end of its log, for assertion messages."""
        return tail(self.log_file)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def tail(path: Path, size: int = 2000) -> str:
    """The last ``size`` characters of a log file, or a placeholder."""
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


@contextlib.asynccontextmanager
async def run_coturn(
    directory: Path,
    *,
    secret: str | None = None,
    stun_only: bool = False,
    extra_args: Sequence[str] = (),
    host: str = "127.0.0.1",
) -> AsyncIterator[Coturn]:
    """Start coturn on ``host`` (STUN-only, or TURN checking REST credentials made with ``secret``).

    Skips the test when coturn is not installed; fails it when the server does not answer within 10 s.
    ``directory`` holds its pid file, database and log.
    """
    if TURNSERVER is None:
        pytest.skip("coturn's turnserver (Debian: coturn) is not installed")
    if not stun_only and secret is None:
        raise ValueError("a TURN-mode coturn needs a REST secret (or stun_only=True)")
    port = free_udp_port(host)
    log_file = directory / f"turnserver-{port}.log"
    mode = ["--stun-only"] if stun_only else ["--use-auth-secret", "--static-auth-secret", str(secret)]
    process = await asyncio.create_subprocess_exec(
        TURNSERVER,
        "-n",  # no config file (/etc/turnserver.conf)
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        *mode,
        "--realm",
        REALM,
        "--listening-ip",
        host,
        "--listening-port",
        str(port),
        "--relay-ip",
        host,
        "--min-port",
        "49152",
        "--max-port",
        "65535",
        "--allow-loopback-peers",
        "--pidfile",
        str(directory / f"turnserver-{port}.pid"),
        "--db",
        str(directory / f"turndb-{port}"),
        "--log-file",
        str(log_file),
        "--simple-log",
        "--no-stdout-log",
        *extra_args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            if process.returncode is not None:
                pytest.fail(f"turnserver exited with {process.returncode}: {tail(log_file)}")
            try:
                await discover_public_address((host, port), timeout=0.2)
                break
            except StunClientError:
                if loop.time() > deadline:
                    pytest.fail(f"turnserver did not answer on port {port} within 10 s: {tail(log_file)}")
        yield Coturn((host, port), secret, log_file)
    finally:
        await stop(process)
