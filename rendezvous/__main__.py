"""``punchline-rendezvous``: run the rendezvous server (signalling, presence, STUN and TURN).

The command line is read here and nowhere else; everything below takes a `ServerConfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import platformdirs

from rendezvous import log as server_log
from rendezvous.config import ServerConfig, TurnConfig
from rendezvous.server import StartupError, run
from rendezvous.wire.ports import DEFAULT_PORT, DEFAULT_STUN_PORT


def default_data_dir() -> Path:
    """Where the server keeps its database unless told otherwise (per user, e.g. ~/.local/share)."""
    return Path(platformdirs.user_data_dir("punchline")) / "rendezvous"


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _stun_port(text: str) -> int | None:
    return None if text.lower() in ("off", "none") else _port(text)


def _alt_port(alt: int | None, stun_port: int | None) -> int | None:
    """--stun-alt-port: the STUN port + 1 unless given (any free one with --stun-port 0), or off."""
    if alt is None or stun_port is None:
        return None
    if alt == -1:
        return stun_port + 1 if stun_port else 0
    return alt


def _port_range(text: str) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    try:
        ports = (int(low), int(high))
    except ValueError:
        ports = (0, 0)
    if not dash or not 1 <= ports[0] <= ports[1] <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range such as 49152-65535")
    return ports


def _turn_url(text: str) -> str:
    if not text.startswith(("turn:", "turns:", "stun:")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a turn:, turns: or stun: URL (RFC 7064/7065)")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with every default spelled out in --help."""
    parser = argparse.ArgumentParser(
        prog="punchline-rendezvous",
        description="Punchline's rendezvous server: accounts, contacts, presence, signalling and STUN.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="WebSocket (TCP) port")
    parser.add_argument(
        "--stun-port", type=_stun_port, default=DEFAULT_STUN_PORT, help="STUN (UDP) port, or 'off'"
    )
    parser.add_argument(
        "--stun-alt-port",
        type=_stun_port,
        default=-1,
        help="alternate UDP port for NAT behaviour discovery (RFC 5780), or 'off' (default: STUN port + 1)",
    )
    parser.add_argument(
        "--stun-alt-ip", help="a second address of this machine, so clients can test 'change IP' (RFC 5780)"
    )
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="directory for the database")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain; enables wss://")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    turn = parser.add_argument_group(
        "TURN relay (RFC 8656, on the STUN port: UDP, and TCP for UDP-blocked clients)"
    )
    turn.add_argument("--no-turn", action="store_true", help="answer STUN only; relay nothing")
    turn.add_argument(
        "--no-turn-tcp", action="store_true", help="do not accept TURN over TCP on the STUN port number"
    )
    turn.add_argument(
        "--turn-secret-file",
        type=Path,
        help="file with the TURN REST shared secret (coturn's static-auth-secret); created 0600 if missing; "
        "none means turn_secret in the data directory",
    )
    turn.add_argument("--turn-realm", default=TurnConfig.realm, help="realm of the TURN credentials")
    turn.add_argument("--relay-ip", help="address relay sockets bind to; none means --host")
    turn.add_argument(
        "--external-ip", help="relay address to advertise, when --relay-ip is 0.0.0.0 or behind a NAT"
    )
    turn.add_argument(
        "--public-host", help="host name clients reach STUN/TURN by; none means the one they used"
    )
    turn.add_argument(
        "--relay-ports",
        type=_port_range,
        default=f"{TurnConfig.min_port}-{TurnConfig.max_port}",
        metavar="MIN-MAX",
        help="relay port range",
    )
    turn.add_argument(
        "--turn-server",
        type=_turn_url,
        action="append",
        default=[],
        metavar="URL",
        help="also advertise this TURN server (e.g. turn:host:3478, a coturn sharing the secret); repeatable",
    )
    turn.add_argument(
        "--allow-loopback-peers", action="store_true", help="relay to 127.x peers (testing only)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; exit 0 after a clean shutdown, 1 if it cannot start."""
    args = parse_args(argv)
    server_log.configure(getattr(logging, args.log_level.upper()))
    config = ServerConfig(
        host=args.host,
        port=args.port,
        stun_port=args.stun_port,
        stun_alt_port=_alt_port(args.stun_alt_port, args.stun_port),
        stun_alt_ip=args.stun_alt_ip,
        stun_alt_port_is_default=args.stun_alt_port == -1,
        data_dir=args.data,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        turn=TurnConfig(
            enabled=not args.no_turn,
            tcp=not args.no_turn_tcp,
            secret_file=args.turn_secret_file,
            realm=args.turn_realm,
            relay_ip=args.relay_ip,
            external_ip=args.external_ip,
            public_host=args.public_host,
            min_port=args.relay_ports[0],
            max_port=args.relay_ports[1],
            allow_loopback_peers=args.allow_loopback_peers,
            external_servers=tuple(args.turn_server),
        ),
    )
    try:
        asyncio.run(run(config))
    except StartupError as exc:
        print(f"punchline-rendezvous: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
