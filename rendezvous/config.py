"""The rendezvous server's configuration: one frozen dataclass with documented defaults.

Files, environment and the command line are read only in ``rendezvous.__main__``; everything below takes
a `ServerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8765
DEFAULT_STUN_PORT = 3478


@dataclass(frozen=True)
class Limits:
    """Protection against abuse and accidents; the defaults suit a server for a few thousand people."""

    #: Largest WebSocket message accepted; larger frames close the connection (code 1009).
    max_message_bytes: int = 64 * 1024
    #: Token bucket per connection: sustained messages per second, and the burst above that.
    messages_per_second: float = 20.0
    message_burst: int = 60
    #: A connection that keeps flooding after this many refused messages is closed (code 1008).
    rate_violations_before_close: int = 100
    #: WebSocket ping every this many seconds; no pong within ``ping_timeout`` closes the connection.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: A connection that has not signed in (or registered) within this time is closed.
    sign_in_deadline: float = 30.0
    #: Failed sign-ins per account / per IP address before throttling starts, and the longest lock-out.
    failures_before_throttle: int = 5
    max_lockout_seconds: float = 300.0
    #: Accounts one IP address may create per hour.
    registrations_per_ip_per_hour: int = 20
    #: Password hashes computed at once (argon2id uses 64 MiB each); more requests wait.
    concurrent_password_hashes: int = 2
    #: Connections the whole server accepts at once.
    max_connections: int = 20_000
    #: Devices signed in at once per account.
    max_devices_per_user: int = 8
    #: An unused session token expires after this many days.
    token_lifetime_days: int = 60


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens and keeps its data."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: UDP port of the STUN binding service on ``host``; None runs no STUN service.
    stun_port: int | None = DEFAULT_STUN_PORT
    #: Directory for the SQLite database; None keeps everything in memory (tests only).
    data_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    limits: Limits = Limits()
