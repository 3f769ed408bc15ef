"""The core for ``connect``, ``listen``, ``send`` and ``call``: a signed-in `PeerHub`, its events as lines.

These commands run the same `PeerHub` as the desktop app (dialling, answering, sessions, transfers, calls,
retries): this module only builds it from the command line and prints what it says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import get_args

from app.backoff import RetryPolicy
from app.cli.call_output import CallPrinter
from app.cli.output import EXIT_USAGE, CliError, Output
from app.cli.path_output import emit_path_event
from app.cli.signed_in import config_dir, identity, signed_in
from app.cli.transfer_output import TransferPrinter
from app.nat.connect import ConnectOptions
from app.nat.path_events import PathInfo
from app.netcheck.check import resolve_host, run_network_check
from app.peers import events as pe
from app.peers.hub import CallPolicy, Event, HubConfig, PeerHub
from app.session.loss_repair import RepairConfig
from app.session.peer_session import PeerSession, SessionConfig
from app.signalling import events as sev
from app.transfer import events as tev
from app.transfer.inbox import Inbox
from app.voice.call import CallLink, MediaFactory
from app.voice.call_media import CallMedia
from app.voice.call_signalling import CallEvent

_TRANSFER_EVENTS = get_args(tev.TransferEvent)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that connects to a contact."""
    parser.add_argument(
        "--force-relay", action="store_true", help="only use the relay (never reveal your address)"
    )
    parser.add_argument(
        "--netcheck",
        action="store_true",
        help="check the router first and tell peers (a hopeless direct path is then not tried)",
    )
    parser.add_argument(
        "--no-loss-repair",
        action="store_true",
        help="send bare QUIC, without repair of random loss (for measurements)",
    )


def no_media(session: PeerSession) -> CallMedia:
    """The media of a hub that never takes part in calls (calls are declined or never placed)."""
    raise CliError("calls need --mic IN.wav and --record OUT.wav (no sound card is used)", EXIT_USAGE)


@dataclass
class HubPrinter:
    """Prints a hub's events: paths, sessions, transfers, calls, retries, and the signalling ones."""

    out: Output
    hub: PeerHub | None = None
    #: Called with each call event after it is printed (``call`` hangs up after --seconds, sends files).
    on_call: Callable[[CallLink, CallEvent], None] | None = None
    #: Set when the server ends our signed-in session (signed out elsewhere, account removed).
    signed_out: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def __post_init__(self) -> None:
        self._transfers = TransferPrinter(self.out.emit, self.out.as_json, self._path)
        self._calls = CallPrinter(self.out.emit)

    def __call__(self, event: Event) -> None:
        """One event from the hub."""
        emit = self.out.emit
        if isinstance(event, pe.Dialling):
            emit("dialing", f"connecting to {event.peer}...", peer=event.peer)
        elif isinstance(event, pe.PathUpdate):
            emit_path_event(event.peer, event.event, emit)
        elif isinstance(event, pe.SessionEnded):
            emit(
                "session_ended",
                f"session with {event.peer} ended: {event.reason}",
                peer=event.peer,
                reason=event.reason,
            )
        elif isinstance(event, pe.SessionFailed) and event.incoming:
            if event.refused:
                emit(
                    "session_refused", event.reason, peer=event.peer, code="key_changed", reason=event.reason
                )
            else:
                emit("connect_failed", f"an incoming connection failed: {event.reason}", reason=event.reason)
        elif isinstance(event, pe.SendQueued) and event.resumed:
            emit(
                "resuming",
                f"Resuming an unfinished transfer of these files to {event.peer}.",
                transfer=event.transfer,
            )
        elif isinstance(event, pe.SendRetrying):
            emit(
                "retrying",
                f"{event.reason}; trying again in {event.retry_in:.0f} s",
                reason=event.reason,
                retry_in=round(event.retry_in, 1),
            )
        elif isinstance(event, pe.CallUpdate):
            self._calls.event(event.link, event.event)
            if self.on_call is not None:
                self.on_call(event.link, event.event)
        elif isinstance(event, sev.SessionEnded):
            emit("session_ended", event.reason, reason=event.reason)
            if not self.signed_out.done():
                self.signed_out.set_result(event.reason)
        elif isinstance(event, _TRANSFER_EVENTS):
            self._transfers(event)

    def _path(self, peer: str) -> PathInfo | None:
        return self.hub.state(peer).path if self.hub is not None else None


@contextlib.asynccontextmanager
async def running_hub(
    args: argparse.Namespace,
    out: Output,
    *,
    inbox: Inbox | None = None,
    calls: CallPolicy = "decline",
    media: MediaFactory = no_media,
    retry: RetryPolicy | None = None,
    on_call: Callable[[CallLink, CallEvent], None] | None = None,
    close_reason: str = "closed",
) -> AsyncIterator[tuple[PeerHub, HubPrinter]]:
    """Sign in and run a `PeerHub` configured from the command line; close it (and sign out) at the end."""
    async with signed_in(args) as client:
        config = HubConfig(
            connect=ConnectOptions(force_relay=args.force_relay),
            session=SessionConfig(repair=RepairConfig.OFF) if args.no_loss_repair else None,
            calls=calls,
            retry=retry or RetryPolicy(),
        )
        printer = HubPrinter(out, on_call=on_call)
        hub = PeerHub(
            client,
            identity(args),
            config_dir(args),
            inbox=inbox,
            media=media,
            on_event=printer,
            config=config,
        )
        printer.hub = hub
        if args.netcheck and client.stun_server is not None:
            # Our router's behaviour goes with every offer; two hopeless routers then skip direct checks.
            report = await run_network_check(await resolve_host(client.stun_server), port_mapping=False)
            hub.set_network_report(report)
            out.emit("netcheck", report.verdict(), **report.as_dict())
        hub.start()
        try:
            yield hub, printer
        finally:
            await hub.close(close_reason)
