"""``connect``: find a path to a contact (running ``listen`` or the app) and measure it with echo probes."""

from __future__ import annotations

import argparse

from app.cli.command import Command, add_name
from app.cli.output import EXIT_REFUSED, CliError, Output, cli_error
from app.cli.peer_hub_runner import add_connection_options, running_hub
from app.errors import PunchlineError
from app.session.echo import measure_echoes


async def cmd_connect(args: argparse.Namespace, out: Output) -> None:
    """Dial NAME, print the path as it is found and changes, one line per echo, and a summary."""
    async with running_hub(args, out) as (hub, _):
        try:
            line = await hub.session_with(args.name)
        except PunchlineError as exc:
            raise cli_error(exc) from exc
        connection = line.connection

        def replied(seq: int, rtt_ms: float) -> None:
            path = connection.link.selected_path
            out.emit(
                "echo",
                f"echo {seq} from {connection.peer}: {rtt_ms:.2f} ms" + (f" ({path.kind})" if path else ""),
                seq=seq,
                rtt_ms=round(rtt_ms, 3),
                kind=path.kind if path else None,
            )

        summary = await measure_echoes(
            line.session, count=args.count, interval=args.interval, on_reply=replied
        )
        out.emit(
            "summary",
            f"{summary.received}/{summary.sent} echoes answered"
            + (f", median round trip {summary.rtt_ms_median} ms" if summary.received else ""),
            peer=connection.peer,
            sent=summary.sent,
            received=summary.received,
            loss=summary.loss,
            rtt_ms_median=summary.rtt_ms_median,
        )
    if summary.received == 0:
        raise CliError(f"{args.name} answered no echo packets", EXIT_REFUSED, "no_echo")


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_name(parser)
    add_connection_options(parser)
    parser.add_argument("--count", type=int, default=10, help="echo packets to send")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between echo packets")


COMMANDS = [
    Command(
        "connect",
        "find a path to contact NAME (running 'listen' or the app) and exchange echo packets",
        cmd_connect,
        _arguments,
    )
]
