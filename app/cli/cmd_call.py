"""``call``: ring a contact, talk (WAV in, WAV out) until --seconds or a hang-up; optionally send files."""

from __future__ import annotations

import argparse
import asyncio

from app.cli.audio_options import add_audio_options, media_config, microphone, speaker
from app.cli.command import Command, add_name, user_path
from app.cli.output import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, CliError, Output, cli_error
from app.cli.peer_hub_runner import add_connection_options, running_hub
from app.errors import PunchlineError
from app.peers.hub import PeerHub
from app.session.peer_session import PeerSession
from app.transfer.outbox import NothingToSend, collect_files
from app.voice.call import CallLink
from app.voice.call_media import CallMedia
from app.voice.call_signalling import CallEnded, CallEvent, CallStarted


async def cmd_call(args: argparse.Namespace, out: Output) -> None:
    """Call NAME; with --send, the files go on the same session once the call is answered."""
    if args.send:
        try:
            collect_files(args.send)
        except NothingToSend as exc:
            raise CliError(str(exc), EXIT_USAGE, "nothing_to_send") from exc
    mic, recording = microphone(args), speaker(args)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[CallEnded] = loop.create_future()
    hubs: list[PeerHub] = []
    sending: set[asyncio.Task[None]] = set()

    def media(session: PeerSession) -> CallMedia:
        return CallMedia(session, mic, recording, media_config(args))

    def on_call(link: CallLink, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            if args.seconds:
                loop.call_later(args.seconds, link.hangup)
            if args.send:
                task = loop.create_task(_send_during_call(hubs[0], args, out))
                sending.add(task)
                task.add_done_callback(sending.discard)
        elif isinstance(event, CallEnded) and not ended.done():
            ended.set_result(event)

    try:
        async with running_hub(args, out, media=media, on_call=on_call, close_reason="call ended") as (
            hub,
            _,
        ):
            hubs.append(hub)
            try:
                await hub.call(args.name)
            except PunchlineError as exc:
                raise cli_error(exc) from exc
            result = await ended
    finally:
        recording.close()
    if result.reason != "hung up":
        code = EXIT_UNREACHABLE if result.reason in ("vanished", "closed") else EXIT_REFUSED
        raise CliError(result.text, code, result.reason.replace(" ", "_"))


async def _send_during_call(hub: PeerHub, args: argparse.Namespace, out: Output) -> None:
    """Send ``--send`` on the call's session (what is not sent when the call ends resumes next time)."""
    transfer = hub.send_files(args.name, args.send)
    try:
        await hub.wait_for_send(transfer)
    except PunchlineError as exc:
        out.emit("send_failed", f"the files were not sent: {exc}", reason=str(exc))


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_name(parser)
    add_connection_options(parser)
    add_audio_options(parser)
    parser.add_argument("--seconds", type=float, metavar="N", help="hang up N seconds after the answer")
    parser.add_argument(
        "--send", nargs="+", metavar="PATH", type=user_path, help="also send these files during the call"
    )


COMMANDS = [
    Command(
        "call",
        "call contact NAME (running 'listen --answer' or the app), WAV file in and out",
        cmd_call,
        _arguments,
    )
]
