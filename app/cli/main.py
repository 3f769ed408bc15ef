"""``punchline-cli``: the headless client.

Accounts and contacts from a terminal or a script. Passwords come from ``--password-file`` or the
``PUNCHLINE_PASSWORD`` environment variable (or a prompt on a terminal), never from the command line, where
other users could read them. After ``login`` the session token is saved (owner-only) so that later commands
need no password. ``--json`` prints one JSON object per line.

Exit status: 0 done, 1 the server refused, 2 bad usage or local problem, 3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import platformdirs

from app.account import AccountError, register, sign_in
from app.cli.call_output import CallPrinter
from app.cli.echo import echo_client, echo_server, print_path_events
from app.cli.sessions import SavedSessions
from app.cli.transfer_output import TransferPrinter
from app.identity import DeviceIdentity, IdentityError, load_or_create_identity
from app.nat.connect import Connection, ConnectOptions, Connector, NoPath
from app.nat.path_events import PathEvent
from app.netcheck.check import LIFETIME_STEPS, resolve_host, run_network_check
from app.netcheck.report import describe_report
from app.peers.hub import listed_key
from app.session.loss_repair import RepairConfig
from app.session.peer_session import PeerSession, SessionConfig, SessionError, SessionRefused
from app.session.trust import TrustStore, safety_number
from app.signalling import events as ev
from app.signalling.client import (
    DEFAULT_SERVER,
    ClientOptions,
    Credentials,
    NotConnected,
    ServerError,
    SignallingClient,
)
from app.stun_client import StunClientError, discover_public_address
from app.transfer.endpoint import TransferEndpoint, TransferRefused
from app.transfer.events import TransferFinished
from app.transfer.inbox import Inbox
from app.transfer.outbox import NothingToSend, OutgoingTransfers, SourceFile, collect_files
from app.voice.audio_io import AudioFileError, WavMicrophone, WavSpeaker
from app.voice.call import CallDesk, CallLink
from app.voice.call_media import CallMedia, MediaConfig
from app.voice.call_signalling import MESSAGE_PREFIX, CallEvent, CallRinging, CallSignalling, CallStarted
from app.voice.opus_codec import CodecSettings
from rendezvous.wire.signalling import Contact

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


Command = Callable[[argparse.Namespace, "Output"], Coroutine[Any, Any, None]]


class CliError(Exception):
    """A failure to report as one line and an exit status."""

    def __init__(self, message: str, status: int, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Output:
    """Prints results as sentences for people or, with ``--json``, as one JSON object per line."""

    def __init__(self, as_json: bool, stream: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self._stream = stream

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """One result line."""
        if self.as_json:
            print(json.dumps({"event": event, **fields}, default=str), file=self._stream, flush=True)
        else:
            print(text, file=self._stream, flush=True)


# ---------------------------------------------------------------------------------------------- commands


async def cmd_register(args: argparse.Namespace, out: Output) -> None:
    """Create an account (does not sign in)."""
    user = _require_user(args)
    password = _password(args, confirm=True)
    try:
        await register(args.server, user, password, ssl_context=_ssl_context(args))
    except AccountError as exc:
        if exc.code == "unreachable":
            raise CliError(exc.message, EXIT_UNREACHABLE) from exc
        raise CliError(exc.message, EXIT_REFUSED, exc.code) from exc
    out.emit("registered", f"Registered {user} on {args.server}. Sign in with 'login'.", user=user)


async def cmd_login(args: argparse.Namespace, out: Output) -> None:
    """Sign in with the password and save the session token for later commands."""
    async with _signed_in(args, force_password=True) as client:
        out.emit("signed_in", f"Signed in as {client.username}.", user=client.username)


async def cmd_logout(args: argparse.Namespace, out: Output) -> None:
    """Revoke the saved session on the server and forget it here."""
    async with _signed_in(args) as client:
        await client.sign_out()
    _sessions(args).forget(args.server, client.username)
    out.emit("signed_out", f"Signed out {client.username}.", user=client.username)


async def cmd_contacts(args: argparse.Namespace, out: Output) -> None:
    """List contacts with presence, and pending requests."""
    async with _signed_in(args) as client:
        contacts = await client.list_contacts()
    if not contacts and not out.as_json:
        out.emit("contact", "No contacts yet. Add one with: punchline-cli add NAME")
    for contact in contacts:
        out.emit("contact", _describe_contact(contact), **_contact_fields(contact))


def _contact_action(
    action: Callable[[SignallingClient, str], Awaitable[None]], done: str, event: str
) -> Command:
    async def command(args: argparse.Namespace, out: Output) -> None:
        async with _signed_in(args) as client:
            await action(client, args.name)
            contact = client.contacts.get(args.name.lower())
        relation = contact.relation if contact else "none"
        out.emit(event, done.format(name=args.name), user=args.name.lower(), relation=relation)

    command.__doc__ = done
    return command


cmd_add = _contact_action(SignallingClient.add_contact, "Contact request sent to {name}.", "requested")
cmd_accept = _contact_action(SignallingClient.accept_contact, "{name} is now a contact.", "accepted")
cmd_decline = _contact_action(SignallingClient.decline_contact, "Declined {name}'s request.", "declined")
cmd_remove = _contact_action(SignallingClient.remove_contact, "Removed {name}.", "removed")
cmd_block = _contact_action(SignallingClient.block_contact, "Blocked {name}.", "blocked")
cmd_unblock = _contact_action(SignallingClient.unblock_contact, "Unblocked {name}.", "unblocked")


async def cmd_whoami(args: argparse.Namespace, out: Output) -> None:
    """Print who we are signed in as and our public address as the STUN server sees it."""
    async with _signed_in(args) as client:
        stun_server = _stun_server(args, client)
    try:
        found = await discover_public_address(stun_server, timeout=args.timeout)
    except StunClientError as exc:
        raise CliError(str(exc), EXIT_UNREACHABLE, "stun_failed") from exc
    public = f"{found.public[0]}:{found.public[1]}"
    out.emit(
        "whoami",
        f"{client.username} on device {client.device_id}; public address {public}"
        f" (local {found.local[0]}:{found.local[1]}, STUN {stun_server[0]}:{stun_server[1]},"
        f" {found.rtt * 1000:.1f} ms)",
        user=client.username,
        device=client.device_id,
        public_address=public,
        local_address=f"{found.local[0]}:{found.local[1]}",
        stun_server=f"{stun_server[0]}:{stun_server[1]}",
        rtt_ms=round(found.rtt * 1000, 2),
    )


async def cmd_netcheck(args: argparse.Namespace, out: Output) -> None:
    """How this network's router maps and filters UDP (RFC 5780 against the server), in plain words."""
    if args.stun:
        stun_server = _stun_server(args, None)
    else:
        async with _signed_in(args) as client:
            stun_server = _stun_server(args, client)
    try:
        resolved = await resolve_host(stun_server)
    except OSError as exc:
        raise CliError(f"Cannot resolve the STUN server {stun_server[0]}: {exc}", EXIT_UNREACHABLE) from exc
    steps = tuple(args.lifetime_steps or LIFETIME_STEPS) if args.lifetime else ()
    if args.lifetime and not out.as_json:
        print(
            f"Probing how long the router keeps an idle mapping (up to {sum(steps):.0f} s)...",
            file=sys.stderr,
        )
    report = await run_network_check(resolved, lifetime_steps=steps)
    if out.as_json:
        out.emit("netcheck", report.verdict(), server=f"{resolved[0]}:{resolved[1]}", **report.as_dict())
        return
    print(report.verdict())
    for label, value in describe_report(report):
        print(f"  {label + ':':<18} {value}")
    if not report.udp:
        raise CliError("UDP is blocked on this network", EXIT_UNREACHABLE, "udp_blocked")


async def cmd_watch(args: argparse.Namespace, out: Output) -> None:
    """Stay signed in and print contact, presence and signal events until interrupted."""
    async with _signed_in(args) as client:
        for contact in client.contacts.values():
            out.emit("contact", _describe_contact(contact), **_contact_fields(contact))
        while True:
            event = await client.next_event()
            _print_event(event, out)
            if isinstance(event, ev.SessionEnded):
                raise CliError(event.reason, EXIT_REFUSED, "session_ended")


async def cmd_connect(args: argparse.Namespace, out: Output) -> None:
    async with _connecting(args, out) as (client, connector):
        out.emit("dialing", f"connecting to {args.name}...", peer=args.name)
        try:
            connection = await connector.dial(args.name)
        except NoPath as exc:
            raise CliError(str(exc), EXIT_REFUSED, "no_path") from exc
        events = asyncio.create_task(print_path_events(connection, out.emit))
        try:
            session = await _start_session(args, client, connection)
            try:
                summary = await echo_client(session, out.emit, count=args.count, interval=args.interval)
            finally:
                await session.close()
        finally:
            events.cancel()
            connection.close()
        if summary["received"] == 0:
            raise CliError(f"{args.name} answered no echo packets", EXIT_REFUSED, "no_echo")


async def cmd_listen(args: argparse.Namespace, out: Output) -> None:
    inbox = None
    if args.accept_files:
        inbox = Inbox(args.accept_files, accept_from=args.accept_from or None)
    desk = _call_desk(args, out)
    async with _connecting(args, out) as (client, connector):
        files = f"; files go to {inbox.folder}" if inbox else ""
        out.emit("listening", f"{client.username} is waiting for connections (Ctrl-C to stop){files}")
        sessions: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    connection = await connector.accept()
                except NoPath as exc:
                    out.emit("connect_failed", f"an incoming connection failed: {exc}", reason=str(exc))
                    continue
                task = asyncio.create_task(_serve(args, client, connection, out, inbox=inbox, desk=desk))
                sessions.add(task)
                task.add_done_callback(sessions.discard)
        finally:
            for task in sessions:
                task.cancel()


@contextlib.asynccontextmanager
async def _connecting(
    args: argparse.Namespace, out: Output
) -> AsyncIterator[tuple[SignallingClient, Connector]]:
    """Sign in and run a `Connector` fed with this session's signals; stop both at the end."""
    async with _signed_in(args) as client:
        options = ConnectOptions(force_relay=args.force_relay, allow_loopback=args.allow_loopback)
        connector = Connector(client.send_signal, client.get_ice_servers, options)
        if args.netcheck and client.stun_server is not None:
            # Our router's behaviour goes with every offer; two hopeless routers then skip direct checks.
            server = await resolve_host(client.stun_server)
            report = await run_network_check(server, port_mapping=False)
            connector.set_network(*report.declared())
            out.emit("netcheck", report.verdict(), **report.as_dict())
        router = asyncio.create_task(_route_signals(client, connector, out))
        try:
            yield client, connector
        finally:
            router.cancel()
            await connector.close()


async def _serve(
    args: argparse.Namespace,
    client: SignallingClient,
    connection: Connection,
    out: Output,
    *,
    inbox: Inbox | None,
    desk: CallDesk,
) -> None:
    """One incoming connection: start the session, answer echoes, file offers and calls; print it all."""
    session: PeerSession | None = None

    def forward(event: PathEvent) -> None:
        if session is not None:
            desk.path_event(session, event)

    events = asyncio.create_task(print_path_events(connection, out.emit, forward))
    try:
        try:
            session = await _start_session(args, client, connection)
        except CliError as exc:
            out.emit("session_refused", str(exc), peer=connection.peer, code=exc.code, reason=str(exc))
            return
        desk.attach(session)
        printer = TransferPrinter(out.emit, out.as_json, lambda: connection.link.selected_path)
        endpoint = TransferEndpoint(session, inbox=inbox, on_event=printer)
        echo = asyncio.create_task(echo_server(session))
        try:
            reason = await endpoint.run()
            out.emit(
                "session_ended",
                f"session with {connection.peer} ended: {reason}",
                peer=connection.peer,
                reason=reason,
            )
        finally:
            echo.cancel()
            await session.close()
    finally:
        events.cancel()
        connection.close()


def _call_desk(args: argparse.Namespace, out: Output) -> CallDesk:
    """Who answers calls in ``listen``: with --answer, at once, from --mic into --record; else declined."""
    printer = CallPrinter(out.emit)
    if not args.answer:

        def decline(link: CallLink, event: CallEvent) -> None:
            printer.event(link, event)
            if isinstance(event, CallRinging):
                link.decline()  # nobody here to pick up

        return CallDesk(lambda session: _no_media(), decline, answer=False)
    _microphone(args)  # a bad file is a usage error now, not when the first call comes

    def media(session: PeerSession) -> CallMedia:
        return CallMedia(session, _microphone(args), _speaker(args), _media_config(args))

    return CallDesk(media, printer.event, answer=True)


def _no_media() -> CallMedia:
    raise AssertionError("a declined call has no audio")


def _microphone(args: argparse.Namespace) -> WavMicrophone:
    if not args.mic or not args.record:
        raise CliError("calls need --mic IN.wav and --record OUT.wav (no sound card is used)", EXIT_USAGE)
    try:
        return WavMicrophone(args.mic, _media_config(args).codec)
    except AudioFileError as exc:
        raise CliError(str(exc), EXIT_USAGE, "bad_audio_file") from exc


def _media_config(args: argparse.Namespace) -> MediaConfig:
    return MediaConfig(codec=CodecSettings(frame_ms=args.frame_ms))


def _speaker(args: argparse.Namespace) -> WavSpeaker:
    try:
        return WavSpeaker(args.record)
    except AudioFileError as exc:
        raise CliError(str(exc), EXIT_USAGE, "bad_audio_file") from exc


async def cmd_call(args: argparse.Namespace, out: Output) -> None:
    """Call a contact: ring, talk (WAV in, WAV out) for --seconds or until either side hangs up.

    With --send, the files go to the contact on the same session once the call is answered.
    """
    files: list[SourceFile] = []
    if args.send:
        try:
            files = collect_files(args.send)
        except NothingToSend as exc:
            raise CliError(str(exc), EXIT_USAGE, "nothing_to_send") from exc
    microphone = _microphone(args)
    speaker = _speaker(args)
    loop = asyncio.get_running_loop()
    printer = CallPrinter(out.emit)
    link: CallLink | None = None
    sending: list[asyncio.Task[Any]] = []

    def forward(event: PathEvent) -> None:
        if link is not None:
            link.path_event(event)

    def on_event(call: CallLink, event: CallEvent) -> None:
        printer.event(call, event)
        if isinstance(event, CallStarted):
            if args.seconds:
                loop.call_later(args.seconds, call.hangup)
            if files:
                sending.append(asyncio.create_task(_send_during_call(args, call.session, files, out)))

    try:
        async with _connecting(args, out) as (client, connector):
            out.emit("dialing", f"calling {args.name}...", peer=args.name)
            try:
                connection = await connector.dial(args.name)
            except NoPath as exc:
                raise CliError(str(exc), EXIT_REFUSED, "no_path") from exc
            events = asyncio.create_task(print_path_events(connection, out.emit, forward))
            try:
                session = await _start_session(args, client, connection)
                machine = CallSignalling.start(args.name, loop.time())
                config = _media_config(args)
                link = CallLink(
                    session, machine, lambda s: CallMedia(s, microphone, speaker, config), on_event
                )
                session.set_message_receiver(MESSAGE_PREFIX, link.receive)
                ended = await link.run()
                for task in sending:
                    task.cancel()
                await asyncio.gather(*sending, return_exceptions=True)
                await session.close("call ended")
            finally:
                events.cancel()
                connection.close()
    finally:
        speaker.close()
    if ended.reason != "hung up":
        code = EXIT_UNREACHABLE if ended.reason in ("vanished", "closed") else EXIT_REFUSED
        raise CliError(ended.text, code, ended.reason.replace(" ", "_"))


async def _send_during_call(
    args: argparse.Namespace, session: PeerSession, files: list[SourceFile], out: Output
) -> None:
    """Send ``files`` on the call's session (what is not sent when the call ends resumes next time)."""
    outbox = OutgoingTransfers(_config_dir(args) / "transfers")
    transfer, _ = outbox.transfer_id(args.name, files)
    printer = TransferPrinter(out.emit, out.as_json, lambda: session.connection.link.selected_path)
    endpoint = TransferEndpoint(session, on_event=printer)
    runner = asyncio.create_task(endpoint.run())
    try:
        await endpoint.send(transfer, files)
        outbox.finished(args.name, files)
    except (TransferRefused, SessionError) as exc:
        out.emit("send_failed", f"the files were not sent: {exc}", reason=str(exc))
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def cmd_send(args: argparse.Namespace, out: Output) -> None:
    """Send files to a contact; reconnect and resume after a dropped path, until done or --give-up-after."""
    try:
        files = collect_files(args.paths)
    except NothingToSend as exc:
        raise CliError(str(exc), EXIT_USAGE, "nothing_to_send") from exc
    outbox = OutgoingTransfers(_config_dir(args) / "transfers")
    transfer, resumed = outbox.transfer_id(args.to, files)
    if resumed:
        out.emit(
            "resuming", f"Resuming an unfinished transfer of these files to {args.to}.", transfer=transfer
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.give_up_after
    delay = 1.0
    async with _connecting(args, out) as (client, connector):
        while True:
            try:
                finished = await _send_once(
                    args, client=client, connector=connector, transfer=transfer, files=files, out=out
                )
                break
            except TransferRefused as exc:
                outbox.finished(args.to, files)
                raise CliError(str(exc), EXIT_REFUSED, "declined") from exc
            except (NoPath, SessionError, NotConnected, ServerError) as exc:
                if isinstance(exc, ServerError) and exc.code != "offline":
                    raise  # refused by the server (not a contact...): trying again will not help
                if loop.time() + delay > deadline:
                    raise CliError(
                        f"gave up after {args.give_up_after:g} s: {exc} (the same command resumes)",
                        EXIT_UNREACHABLE,
                        "gave_up",
                    ) from exc
                out.emit("retrying", f"{exc}; trying again in {delay:.0f} s", reason=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
    outbox.finished(args.to, files)
    if finished.failed:
        raise CliError(f"{finished.failed} file(s) could not be sent", EXIT_REFUSED, "files_failed")


async def _send_once(
    args: argparse.Namespace,
    *,
    client: SignallingClient,
    connector: Connector,
    transfer: str,
    files: list[SourceFile],
    out: Output,
) -> TransferFinished:
    """One session's attempt: dial, start the session, offer and send; errors go to the retry loop."""
    out.emit("dialing", f"connecting to {args.to}...", peer=args.to)
    connection = await connector.dial(args.to)
    events = asyncio.create_task(print_path_events(connection, out.emit))
    try:
        session = await _start_session(args, client, connection)
        printer = TransferPrinter(out.emit, out.as_json, lambda: connection.link.selected_path)
        endpoint = TransferEndpoint(session, on_event=printer)
        runner = asyncio.create_task(endpoint.run())
        try:
            return await endpoint.send(transfer, files)
        finally:
            await session.close("done")
            await runner
    finally:
        events.cancel()
        connection.close()


async def cmd_trust(args: argparse.Namespace, out: Output) -> None:
    """Accept the new identity key a contact presented, after comparing the safety number."""
    store = TrustStore(_config_dir(args))
    identity = _identity(args)
    pinned = store.get(args.name)
    if pinned is None:
        raise CliError(f"No key is pinned for {args.name} yet: it will be on your first session.", EXIT_USAGE)
    if pinned.pending is None:
        number = safety_number(identity.public_key_bytes, pinned.key)
        out.emit(
            "trusted",
            f"{args.name}'s key is pinned; safety number {number}.",
            user=args.name,
            safety_number=number,
            changed=False,
        )
        return
    number = safety_number(identity.public_key_bytes, pinned.pending)
    store.accept_pending(args.name)
    out.emit(
        "trusted",
        f"Accepted {args.name}'s new key; safety number {number}.",
        user=args.name,
        safety_number=number,
        changed=True,
    )


async def _start_session(
    args: argparse.Namespace, client: SignallingClient, connection: Connection
) -> PeerSession:
    """The encrypted session on a connection, checked against the key the server lists and our pin."""
    try:
        return await PeerSession.start(
            connection,
            _identity(args),
            TrustStore(_config_dir(args)),
            expected_key=listed_key(client.contacts, connection),
            config=SessionConfig(repair=RepairConfig.OFF) if args.no_loss_repair else None,
        )
    except SessionRefused as exc:
        raise CliError(str(exc), EXIT_REFUSED, "key_changed") from exc


async def _route_signals(client: SignallingClient, connector: Connector, out: Output) -> None:
    """Give connection signals to the connector; end the command if the session ends."""
    while True:
        event = await client.next_event()
        if isinstance(event, ev.SignalReceived):
            connector.handle_signal(event)
        elif isinstance(event, ev.SessionEnded):
            out.emit("session_ended", event.reason, reason=event.reason)
            return


# ---------------------------------------------------------------------------------------------- plumbing


@contextlib.asynccontextmanager
async def _signed_in(
    args: argparse.Namespace, *, force_password: bool = False
) -> AsyncIterator[SignallingClient]:
    """Sign in (saved token first, else the password), save the new token, and close at the end."""
    user = _require_user(args)
    sessions = _sessions(args)
    token = None if force_password else sessions.token(args.server, user)
    password = None
    if token is None:
        password = _password(args)
    try:
        client = await sign_in(
            args.server,
            Credentials(user, password=password, token=token),
            _identity(args),
            options=ClientOptions(ssl_context=_ssl_context(args)),
        )
    except AccountError as exc:
        if exc.unreachable:
            raise CliError(exc.message, EXIT_UNREACHABLE, "unreachable") from exc
        if token is not None and exc.code == "auth_failed":
            sessions.forget(args.server, user)
            raise CliError(f"{exc.message} (run 'punchline-cli login')", EXIT_REFUSED, exc.code) from exc
        raise CliError(exc.message, EXIT_REFUSED, exc.code) from exc
    if client.token:
        sessions.save(args.server, client.username, client.token)
    try:
        yield client
    except ServerError as exc:
        raise CliError(str(exc), EXIT_REFUSED, exc.code) from exc
    except NotConnected as exc:
        raise CliError(str(exc), EXIT_UNREACHABLE, "unreachable") from exc
    finally:
        await client.close()


def _print_event(event: ev.SignallingEvent, out: Output) -> None:
    if isinstance(event, ev.ContactChanged):
        out.emit("contact", _describe_contact(event.contact), **_contact_fields(event.contact))
    elif isinstance(event, ev.PresenceChanged):
        out.emit(
            "presence",
            f"{event.username} is {event.status}",
            user=event.username,
            status=event.status,
            devices=[asdict(d) for d in event.devices],
        )
    elif isinstance(event, ev.SignalReceived):
        out.emit(
            "signal",
            f"signal from {event.sender}: {json.dumps(event.payload)}",
            sender=event.sender,
            sender_device=event.sender_device,
            payload=event.payload,
        )
    elif isinstance(event, ev.Disconnected):
        out.emit(
            "disconnected",
            f"Disconnected ({event.reason}); retrying in {event.retry_in:.1f} s",
            reason=event.reason,
            retry_in=round(event.retry_in, 2),
        )
    elif isinstance(event, ev.SignedIn):
        out.emit("signed_in", f"Signed in again as {event.username}.", user=event.username, reconnected=True)


def _describe_contact(contact: Contact) -> str:
    labels = {
        "mutual": contact.status,
        "incoming": "wants to be your contact (accept NAME / decline NAME)",
        "outgoing": "request sent, waiting for an answer",
        "blocked": "blocked",
        "none": "no longer a contact",
    }
    return f"{contact.username:<20} {labels[contact.relation]}"


def _contact_fields(contact: Contact) -> dict[str, Any]:
    return {
        "user": contact.username,
        "relation": contact.relation,
        "status": contact.status,
        "devices": [asdict(d) for d in contact.devices],
    }


def _stun_server(args: argparse.Namespace, client: SignallingClient | None) -> tuple[str, int]:
    """``--stun HOST:PORT`` (or ``[V6]:PORT``), else the signed-in server's own STUN service."""
    if args.stun:
        host, _, port = args.stun.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"{args.stun!r} is not HOST:PORT", EXIT_USAGE)
        return (host.strip("[]"), int(port))
    if client is None or client.stun_server is None:
        raise CliError("The server runs no STUN service; name one with --stun HOST:PORT.", EXIT_USAGE)
    return client.stun_server


def _require_user(args: argparse.Namespace) -> str:
    user: str | None = args.user or _sessions(args).last_user(args.server)
    if not user:
        raise CliError("Say who you are with --user NAME (or PUNCHLINE_USER).", EXIT_USAGE)
    return user.strip().lower()


def _password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"Cannot read the password file: {exc}", EXIT_USAGE) from exc
    from_env = os.environ.get("PUNCHLINE_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Password again: ") != password:
            raise CliError("The two passwords differ.", EXIT_USAGE)
        return password
    raise CliError(
        "No password: use --password-file FILE or set PUNCHLINE_PASSWORD (or 'login' once).", EXIT_USAGE
    )


def _config_dir(args: argparse.Namespace) -> Path:
    return Path(args.config_dir) if args.config_dir else Path(platformdirs.user_config_dir("punchline"))


def _identity(args: argparse.Namespace) -> DeviceIdentity:
    try:
        return load_or_create_identity(_config_dir(args))
    except IdentityError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def _sessions(args: argparse.Namespace) -> SavedSessions:
    return SavedSessions(_config_dir(args))


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.server.startswith("wss:"):
        return None
    return ssl.create_default_context(cafile=args.ca_file)


COMMANDS: dict[str, tuple[Command, str]] = {
    "register": (cmd_register, "create an account"),
    "login": (cmd_login, "sign in with the password and remember the session"),
    "logout": (cmd_logout, "sign out and forget the saved session"),
    "contacts": (cmd_contacts, "list contacts with presence, and pending requests"),
    "add": (cmd_add, "send a contact request to NAME"),
    "accept": (cmd_accept, "accept NAME's contact request"),
    "decline": (cmd_decline, "decline NAME's contact request"),
    "remove": (cmd_remove, "remove NAME from your contacts (or cancel your request)"),
    "block": (cmd_block, "block NAME"),
    "unblock": (cmd_unblock, "unblock NAME"),
    "whoami": (cmd_whoami, "show your account and public address (from STUN)"),
    "netcheck": (cmd_netcheck, "check how your router treats UDP: mapping, filtering, verdict (RFC 5780)"),
    "watch": (cmd_watch, "print contact, presence and signal events until Ctrl-C"),
    "connect": (cmd_connect, "find a path to contact NAME (running 'listen') and exchange echo packets"),
    "listen": (
        cmd_listen,
        "answer connections from contacts (echo, and files with --accept-files) until Ctrl-C",
    ),
    "send": (cmd_send, "send files and folders to contact NAME (running 'listen --accept-files')"),
    "call": (cmd_call, "call contact NAME (running 'listen --answer'), WAV file in and out"),
    "trust": (cmd_trust, "accept the new identity key NAME presented (compare the safety number first)"),
}
NAMED = {"add", "accept", "decline", "remove", "block", "unblock", "connect", "trust", "call"}


def _user_path(text: str) -> Path:
    return Path(text).expanduser()


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
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common])
        if name in NAMED:
            sub.add_argument("name", metavar="NAME")
        if name in ("whoami", "netcheck"):
            sub.add_argument("--stun", help="STUN server HOST:PORT (default: the rendezvous server's)")
        if name == "netcheck":
            sub.add_argument(
                "--lifetime", action="store_true", help="also probe how long idle mappings live (minutes)"
            )
            sub.add_argument(  # tests: short idle times for a router with a short UDP timeout
                "--lifetime-steps", type=lambda t: [float(s) for s in t.split(",")], help=argparse.SUPPRESS
            )
        if name == "whoami":
            sub.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for STUN")
        if name in ("connect", "listen", "send", "call"):
            sub.add_argument(
                "--force-relay", action="store_true", help="only use the relay (never reveal your address)"
            )
            sub.add_argument(
                "--allow-loopback", action="store_true", help=argparse.SUPPRESS
            )  # one-host tests
            sub.add_argument(
                "--netcheck",
                action="store_true",
                help="check the router first and tell peers (a hopeless direct path is then not tried)",
            )
            sub.add_argument(
                "--no-loss-repair",
                action="store_true",
                help="send bare QUIC, without repair of random loss (for measurements)",
            )
        if name == "send":
            sub.add_argument(
                "paths", metavar="PATH", nargs="+", type=_user_path, help="files and folders to send"
            )
            sub.add_argument("--to", required=True, metavar="NAME", help="the contact to send to")
            sub.add_argument(
                "--give-up-after",
                type=float,
                default=600.0,
                metavar="SECONDS",
                help="keep reconnecting and resuming this long (default 600)",
            )
        if name in ("listen", "call"):
            sub.add_argument(
                "--frame-ms", type=int, choices=(10, 20), default=20, help="audio frame length (default 20)"
            )
            sub.add_argument(
                "--mic", metavar="IN.wav", type=_user_path, help="48 kHz mono WAV to send as the microphone"
            )
            sub.add_argument(
                "--record", metavar="OUT.wav", type=_user_path, help="write what you hear to this WAV"
            )
        if name == "call":
            sub.add_argument("--seconds", type=float, metavar="N", help="hang up N seconds after the answer")
            sub.add_argument(
                "--send",
                nargs="+",
                metavar="PATH",
                type=_user_path,
                help="also send these files during the call",
            )
        if name == "listen":
            sub.add_argument(
                "--answer", action="store_true", help="answer calls at once (needs --mic and --record)"
            )
            sub.add_argument(
                "--accept-files", metavar="DIR", type=_user_path, help="accept file offers into DIR"
            )
            sub.add_argument(
                "--from",
                dest="accept_from",
                action="append",
                metavar="NAME",
                help="accept files only from NAME (repeatable; default: every contact)",
            )
        if name == "connect":
            sub.add_argument("--count", type=int, default=10, help="echo packets to send")
            sub.add_argument("--interval", type=float, default=0.2, help="seconds between echo packets")
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
    command = COMMANDS[args.command][0]
    try:
        asyncio.run(command(args, out))
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
