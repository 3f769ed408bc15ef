"""The rendezvous server's configuration: one frozen dataclass with documented defaults.

Files, environment and the command line are read only in ``rendezvous.__main__``; everything below takes
a `ServerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rendezvous.wire.ports import DEFAULT_PORT, DEFAULT_STUN_PORT

#: File in the data directory holding the TURN REST shared secret (created 0600 when missing).
TURN_SECRET_FILE = "turn_secret"  # noqa: S105 - a file name, not a secret


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
class TurnQuotas:
    """Limits of the TURN relay (RFC 8656); the defaults suit a few hundred simultaneous relayed calls."""

    #: Allocation lifetime when the client asks for none or less (RFC 8656 §7.2: 600 s), and the most granted.
    default_lifetime: int = 600
    max_lifetime: int = 3600
    #: Allocations one user (the part after ':' in a REST username) may hold at once (more: 486).
    max_allocations_per_user: int = 10
    #: Allocations the whole server holds at once (more: 508 Insufficient Capacity).
    max_allocations: int = 1000
    #: Peer permissions one allocation may hold (more: 508).
    max_permissions_per_allocation: int = 64
    #: Relayed bytes per second per allocation (both directions together), and the burst above that;
    #: excess datagrams are dropped (a token bucket). 2 MB/s is a fast file transfer, far above a call.
    bytes_per_second: int = 2_000_000
    burst_bytes: int = 512 * 1024


@dataclass(frozen=True)
class TurnConfig:
    """The TURN relay on the STUN port (RFC 8656, UDP and TCP) and the credentials for signed-in users."""

    enabled: bool = True
    #: TURN REST shared secret (coturn's ``static-auth-secret``). None: read or create ``turn_secret`` in the
    #: data directory (0600), or a random one per run without a data directory.
    secret: str | None = field(default=None, repr=False)
    #: File to read the secret from (created 0600 when missing); overrides the data-directory default.
    secret_file: Path | None = None
    #: REALM of the long-term credential mechanism (RFC 8489 §9.2); part of the key, at most 32 bytes.
    realm: str = "punchline"
    #: Address the relay sockets bind to; None: the server's ``host``.
    relay_ip: str | None = None
    #: Address written in XOR-RELAYED-ADDRESS (the relay's public IP behind a NAT, or when ``relay_ip`` is
    #: 0.0.0.0); None: ``relay_ip``.
    external_ip: str | None = None
    #: Host name or IP put in the stun:/turn: URLs of ``get_ice_servers``; None: the host the client used.
    public_host: str | None = None
    #: Also accept TURN over TCP on the STUN port number (RFC 8656 §3.1), for clients whose network blocks
    #: outbound UDP; the relay still talks UDP to peers.
    tcp: bool = True
    #: A TCP connection that holds no allocation is closed after this many seconds.
    tcp_idle_timeout: float = 30.0
    #: Relay ports, inclusive (RFC 8656 §7.2 suggests 49152-65535).
    min_port: int = 49152
    max_port: int = 65535
    #: Lifetime of the credentials ``get_ice_servers`` mints, in seconds.
    credential_ttl: int = 3600
    #: How long a NONCE stays valid before 438 Stale Nonce (RFC 8489 §9.2.4).
    nonce_lifetime: int = 600
    #: Relay to peers on loopback addresses (tests only, like coturn's --allow-loopback-peers).
    allow_loopback_peers: bool = False
    #: Other TURN/STUN servers to advertise, e.g. "turn:turn.example.org:3478": a coturn sharing the secret.
    external_servers: tuple[str, ...] = ()
    quotas: TurnQuotas = TurnQuotas()


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens and keeps its data."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: UDP port of the STUN binding service on ``host``; None runs no STUN service.
    stun_port: int | None = DEFAULT_STUN_PORT
    #: RFC 5780 behaviour discovery: the alternate UDP port answers may come from (0: any free one); None
    #: turns discovery off. ``stun_alt_ip``: a second address of this machine, for "change IP" (optional).
    stun_alt_port: int | None = None
    stun_alt_ip: str | None = None
    #: The alternate port is the default one (not chosen by the operator): if another program holds it
    #: (a coturn on 3479), run without behaviour discovery and say so, instead of refusing to start.
    stun_alt_port_is_default: bool = False
    #: Directory for the SQLite database; None keeps everything in memory (tests only).
    data_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    limits: Limits = Limits()
    #: The TURN relay replaces the plain STUN service on ``stun_port`` when enabled.
    turn: TurnConfig = TurnConfig()
