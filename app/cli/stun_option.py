"""``--stun HOST:PORT``: the STUN server ``whoami`` and ``netcheck`` ask (default: the rendezvous's own)."""

from __future__ import annotations

import argparse

from app.cli.output import EXIT_USAGE, CliError
from app.signalling.client import SignallingClient


def add_stun_option(parser: argparse.ArgumentParser) -> None:
    """The ``--stun`` option."""
    parser.add_argument("--stun", help="STUN server HOST:PORT (default: the rendezvous server's)")


def stun_server(args: argparse.Namespace, client: SignallingClient | None) -> tuple[str, int]:
    """``--stun HOST:PORT`` (or ``[V6]:PORT``), else the signed-in server's own STUN service."""
    if args.stun:
        host, _, port = args.stun.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"{args.stun!r} is not HOST:PORT", EXIT_USAGE)
        return (host.strip("[]"), int(port))
    if client is None or client.stun_server is None:
        raise CliError("The server runs no STUN service; name one with --stun HOST:PORT.", EXIT_USAGE)
    return client.stun_server
