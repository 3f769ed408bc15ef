"""``listen``: stay online and answer contacts: sessions, echoes, files (into a folder) and calls."""

from __future__ import annotations

import argparse

from app.cli.audio_options import add_audio_options, media_config, microphone, speaker
from app.cli.command import Command, user_path
from app.cli.output import EXIT_REFUSED, CliError, Output
from app.cli.peer_hub_runner import add_connection_options, no_media, running_hub
from app.peers.hub import CallPolicy
from app.session.peer_session import PeerSession
from app.transfer.inbox import Inbox
from app.voice.call import MediaFactory
from app.voice.call_media import CallMedia


async def cmd_listen(args: argparse.Namespace, out: Output) -> None:
    """Answer until Ctrl-C (or until the server ends our session)."""
    inbox = Inbox(args.accept_files, accept_from=args.accept_from or None) if args.accept_files else None
    calls: CallPolicy = "answer" if args.answer else "ask" if args.let_ring else "decline"
    media: MediaFactory = no_media
    if args.answer:
        microphone(args)  # a bad file is a usage error now, not when the first call comes

        def media(session: PeerSession) -> CallMedia:
            return CallMedia(session, microphone(args), speaker(args), media_config(args))

    async with running_hub(args, out, inbox=inbox, calls=calls, media=media) as (hub, printer):
        files = f"; files go to {inbox.folder}" if inbox else ""
        out.emit("listening", f"{hub.client.username} is waiting for connections (Ctrl-C to stop){files}")
        reason = await printer.signed_out
    raise CliError(reason, EXIT_REFUSED, "session_ended")


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_options(parser)
    add_audio_options(parser)
    calls = parser.add_mutually_exclusive_group()
    calls.add_argument(
        "--answer", action="store_true", help="answer calls at once (needs --mic and --record)"
    )
    calls.add_argument(
        "--let-ring",
        action="store_true",
        help="let calls ring unanswered (the caller hears 'no answer' after 45 s); default: decline them",
    )
    parser.add_argument("--accept-files", metavar="DIR", type=user_path, help="accept file offers into DIR")
    parser.add_argument(
        "--from",
        dest="accept_from",
        action="append",
        metavar="NAME",
        help="accept files only from NAME (repeatable; default: every contact)",
    )


COMMANDS = [
    Command(
        "listen",
        "answer connections from contacts (echo, and files with --accept-files) until Ctrl-C",
        cmd_listen,
        _arguments,
    )
]
