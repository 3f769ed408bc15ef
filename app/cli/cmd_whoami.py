"""``whoami``: your account, this device, and your public address as the STUN server sees it."""

from __future__ import annotations

import argparse

from app.cli.command import Command
from app.cli.output import EXIT_UNREACHABLE, CliError, Output
from app.cli.signed_in import signed_in
from app.cli.stun_option import add_stun_option, stun_server
from app.nat.stun_client import StunClientError, discover_public_address


async def cmd_whoami(args: argparse.Namespace, out: Output) -> None:
    """Print who we are signed in as and our public address as the STUN server sees it."""
    async with signed_in(args) as client:
        server = stun_server(args, client)
    try:
        found = await discover_public_address(server, timeout=args.timeout)
    except StunClientError as exc:
        raise CliError(str(exc), EXIT_UNREACHABLE, "stun_failed") from exc
    public = f"{found.public[0]}:{found.public[1]}"
    out.emit(
        "whoami",
        f"{client.username} on device {client.device_id}; public address {public}"
        f" (local {found.local[0]}:{found.local[1]}, STUN {server[0]}:{server[1]},"
        f" {found.rtt * 1000:.1f} ms)",
        user=client.username,
        device=client.device_id,
        public_address=public,
        local_address=f"{found.local[0]}:{found.local[1]}",
        stun_server=f"{server[0]}:{server[1]}",
        rtt_ms=round(found.rtt * 1000, 2),
    )


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_stun_option(parser)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for STUN")


COMMANDS = [Command("whoami", "show your account and public address (from STUN)", cmd_whoami, _arguments)]
