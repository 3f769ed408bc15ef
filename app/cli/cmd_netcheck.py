"""``netcheck``: how this network's router maps and filters UDP (RFC 5780 against the server), in words."""

from __future__ import annotations

import argparse

from app.cli.command import Command
from app.cli.output import EXIT_UNREACHABLE, CliError, Output
from app.cli.signed_in import signed_in
from app.cli.stun_option import add_stun_option, stun_server
from app.netcheck.check import LIFETIME_STEPS, resolve_host, run_network_check
from app.netcheck.report import describe_report


async def cmd_netcheck(args: argparse.Namespace, out: Output) -> None:
    """Run the network check and print its verdict and findings."""
    if args.stun:
        server = stun_server(args, None)
    else:
        async with signed_in(args) as client:
            server = stun_server(args, client)
    try:
        resolved = await resolve_host(server)
    except OSError as exc:
        raise CliError(f"Cannot resolve the STUN server {server[0]}: {exc}", EXIT_UNREACHABLE) from exc
    steps = tuple(args.lifetime_steps or LIFETIME_STEPS) if args.lifetime else ()
    if args.lifetime:
        out.note(f"Probing how long the router keeps an idle mapping (up to {sum(steps):.0f} s)...")
    report = await run_network_check(resolved, lifetime_steps=steps)
    if out.as_json:
        out.emit("netcheck", report.verdict(), server=f"{resolved[0]}:{resolved[1]}", **report.as_dict())
        return
    print(report.verdict())
    for label, value in describe_report(report):
        print(f"  {label + ':':<18} {value}")
    if not report.udp:
        raise CliError("UDP is blocked on this network", EXIT_UNREACHABLE, "udp_blocked")


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_stun_option(parser)
    parser.add_argument(
        "--lifetime", action="store_true", help="also probe how long idle mappings live (minutes)"
    )
    parser.add_argument(  # tests: short idle times for a router with a short UDP timeout
        "--lifetime-steps", type=lambda t: [float(s) for s in t.split(",")], help=argparse.SUPPRESS
    )


COMMANDS = [
    Command(
        "netcheck",
        "check how your router treats UDP: mapping, filtering, verdict (RFC 5780)",
        cmd_netcheck,
        _arguments,
    )
]
