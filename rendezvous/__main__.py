"""``punchline-rendezvous``: run the rendezvous server (signalling, presence, STUN).

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
from rendezvous.config import DEFAULT_PORT, DEFAULT_STUN_PORT, ServerConfig
from rendezvous.server import StartupError, run


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
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="directory for the database")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain; enables wss://")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; exit 0 after a clean shutdown, 1 if it cannot start."""
    args = parse_args(argv)
    server_log.configure(getattr(logging, args.log_level.upper()))
    config = ServerConfig(
        host=args.host,
        port=args.port,
        stun_port=args.stun_port,
        data_dir=args.data,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    try:
        asyncio.run(run(config))
    except StartupError as exc:
        print(f"punchline-rendezvous: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
