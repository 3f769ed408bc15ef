"""``punchline-cli``: the headless client, on the same core as the desktop app.

Accounts and contacts from a terminal or a script; ``connect``, ``listen``, ``send`` and ``call`` run the
app's `app.peers.hub.PeerHub`. Each command is its own module (``app/cli/cmd_*.py``) that adds its own
arguments. Passwords come from ``--password-file`` or ``PUNCHLINE_PASSWORD`` (or a prompt on a terminal),
never from the command line. ``--json`` prints one JSON object per line.

Exit status: 0 done, 1 refused, 2 bad usage or local problem, 3 the server or the contact could not be
reached (`app.cli.output`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from app.cli import (
    cmd_account,
    cmd_call,
    cmd_connect,
    cmd_contacts,
    cmd_listen,
    cmd_netcheck,
    cmd_send,
    cmd_trust,
    cmd_watch,
    cmd_whoami,
)
from app.cli.command import Command
from app.cli.output import EXIT_OK, CliError, Output
from app.signalling.client import DEFAULT_SERVER

COMMANDS: dict[str, Command] = {
    command.name: command
    for module in (
        cmd_account,
        cmd_contacts,
        cmd_whoami,
        cmd_netcheck,
        cmd_watch,
        cmd_connect,
        cmd_listen,
        cmd_send,
        cmd_call,
        cmd_trust,
    )
    for command in module.COMMANDS
}


def build_parser() -> argparse.ArgumentParser:
    """The command line; global options may come before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"rendezvous server URL (default $PUNCHLINE_SERVER or {DEFAULT_SERVER})",
    )
    common.add_argument("--user", default=argparse.SUPPRESS, help="your username (default $PUNCHLINE_USER)")
    common.add_argument("--password-file", default=argparse.SUPPRESS, help="read the password from this file")
    common.add_argument("--config-dir", default=argparse.SUPPRESS, help="where keys and sessions are kept")
    common.add_argument("--ca-file", default=argparse.SUPPRESS, help="CA certificate to trust for wss://")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON lines output")
    parser = argparse.ArgumentParser(
        prog="punchline-cli", description="Punchline's headless client.", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sub = commands.add_parser(command.name, help=command.help, description=command.help, parents=[common])
        command.add_arguments(sub)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and fill the defaults that come from the environment."""
    args = build_parser().parse_args(argv)
    defaults = {
        "server": os.environ.get("PUNCHLINE_SERVER", DEFAULT_SERVER),
        "user": os.environ.get("PUNCHLINE_USER"),
        "password_file": None,
        "config_dir": os.environ.get("PUNCHLINE_CONFIG_DIR"),
        "ca_file": None,
        "json": False,
    }
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; print its result or one line saying what went wrong."""
    args = parse_args(argv)
    out = Output(args.json)
    try:
        asyncio.run(COMMANDS[args.command].run(args, out))
    except CliError as exc:
        if out.as_json:
            out.emit("error", str(exc), code=exc.code, message=str(exc))
        else:
            print(f"punchline-cli: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
