"""``send``: files and folders to a contact, resumed after a dropped path or restart until done."""

from __future__ import annotations

import argparse

from app.backoff import RetryPolicy
from app.cli.command import Command, user_path
from app.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, CliError, Output, cli_error
from app.cli.peer_hub_runner import add_connection_options, running_hub
from app.errors import PunchlineError
from app.peers.hub import NoSessionInTime
from app.transfer.outbox import NothingToSend, collect_files


async def cmd_send(args: argparse.Namespace, out: Output) -> None:
    """Send PATHs to --to; wait for the contact, reconnect and resume until done or --give-up-after."""
    try:
        collect_files(args.paths)
    except NothingToSend as exc:
        raise CliError(str(exc), EXIT_USAGE, "nothing_to_send") from exc
    retry = RetryPolicy(give_up_after=args.give_up_after)
    async with running_hub(args, out, retry=retry, close_reason="done") as (hub, _):
        transfer = hub.send_files(args.to, args.paths)
        try:
            finished = await hub.wait_for_send(transfer)
        except NoSessionInTime as exc:
            raise CliError(
                f"gave up after {args.give_up_after:g} s: {exc} (the same command resumes)",
                EXIT_UNREACHABLE,
                "gave_up",
            ) from exc
        except PunchlineError as exc:
            raise cli_error(exc) from exc
    if finished.failed:
        raise CliError(f"{finished.failed} file(s) could not be sent", EXIT_REFUSED, "files_failed")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+", type=user_path, help="files and folders to send")
    parser.add_argument("--to", required=True, metavar="NAME", help="the contact to send to")
    parser.add_argument(
        "--give-up-after",
        type=float,
        default=RetryPolicy().give_up_after,
        metavar="SECONDS",
        help="keep waiting, reconnecting and resuming this long (default %(default)g)",
    )
    add_connection_options(parser)


COMMANDS = [
    Command(
        "send",
        "send files and folders to contact NAME (running 'listen --accept-files' or the app)",
        cmd_send,
        _arguments,
    )
]
