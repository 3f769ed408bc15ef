"""A signed-in client's sessions with its contacts: made when needed, serving files, calls and echoes.

`PeerHub` is the one core of the desktop app *and* of ``punchline-cli`` (connect, listen, send, call): it
holds no Qt and prints nothing. It is the one reader of the signalling client's events: connection signals
go to its `Connector`, everything else is passed on. Sending files or calling a contact dials them (once:
later actions reuse the session); a contact who dials us is answered. Each session gets a
`TransferEndpoint` (offers go to the `Inbox`: asked, accepted into a folder, or accepted from named
contacts), the one `CallDesk` (calls rung, answered at once, or declined: `HubConfig.calls`) and an echo
responder. Everything a front-end shows arrives through ``on_event``: signalling events, transfer events
and `app.peers.events` (link state, raw path events, sessions, queued/retrying sends, call updates).

A send survives the contact being offline, quitting or the path dropping: it retries under the one
`RetryPolicy` (pauses growing to 10 s; at once when the contact comes back online), says why it waits,
and resumes from the receiver's verified offsets (`app.transfer.outbox`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from app.account.identity import DeviceIdentity
from app.backoff import Retry, RetryPolicy
from app.errors import FinalError, PunchlineError, TryAgainLater
from app.nat.connect import Connection, ConnectOptions, Connector, NoPath
from app.nat.path_events import PathChanged, PathEvent, PathLost, PathRecovered, PathSelected, PathStats
from app.netcheck.report import NetworkReport
from app.peers import events as pe
from app.session.echo import answer_echoes
from app.session.peer_session import PeerSession, SessionConfig, SessionRefused
from app.session.trust import TrustStore, safety_number
from app.signalling import events as sev
from app.signalling.client import ContactOffline, SignallingClient
from app.transfer import events as tev
from app.transfer.endpoint import TransferEndpoint, TransferRefused, settle_outcome
from app.transfer.inbox import Inbox
from app.transfer.outbox import OutgoingTransfers, SourceFile, collect_files
from app.voice.call import CallDesk, CallLink, MediaFactory
from app.voice.call_signalling import CallEvent, CallRinging
from rendezvous.wire.signalling import Contact

log = logging.getLogger("punchline.peers")

Event = sev.SignallingEvent | tev.TransferEvent | pe.HubEvent
#: What happens to an incoming call: ``ask`` rings (the user answers), ``answer`` picks up at once,
#: ``decline`` says "not now" (nobody is there to answer: ``punchline-cli listen`` without ``--answer``).
CallPolicy = Literal["ask", "answer", "decline"]


@dataclass(frozen=True)
class HubConfig:
    """How a hub connects, runs sessions, treats incoming calls and retries sends (documented defaults)."""

    connect: ConnectOptions = field(default_factory=ConnectOptions)
    session: SessionConfig | None = None
    calls: CallPolicy = "ask"
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class NoSessionInTime(TryAgainLater):
    """A send found no working session within the retry policy's time; sending again resumes it."""


def listed_key(contacts: dict[str, Contact], connection: Connection) -> bytes | None:
    """The identity key the rendezvous lists for the device on the other end of ``connection``, if any."""
    contact = contacts.get(connection.peer)
    for device in contact.devices if contact else ():
        if device.device_id == connection.peer_device:
            with contextlib.suppress(ValueError):
                return base64.b64decode(device.identity_key, validate=True)
    return None


@dataclass
class PeerLine:
    """One live session with a contact and what serves it."""

    connection: Connection
    session: PeerSession
    endpoint: TransferEndpoint
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class _Send:
    """Files the user sent to a contact: kept until they all arrived, so that a retry resumes them."""

    peer: str
    files: list[SourceFile]
    task: asyncio.Task[None] | None = None
    #: Its end: the receiver's `TransferFinished`, or `TransferRefused` / `NoSessionInTime`.
    outcome: asyncio.Future[tev.TransferFinished] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: Set when the contact comes back online: a waiting retry goes at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class PeerHub:
    """See the module docstring. `start` it after sign-in, `close` it before signing out."""

    def __init__(
        self,
        client: SignallingClient,
        identity: DeviceIdentity,
        config_dir: Path,
        *,
        inbox: Inbox | None,
        media: MediaFactory,
        on_event: Callable[[Event], None],
        config: HubConfig | None = None,
    ) -> None:
        self.client = client
        self.identity = identity
        self.inbox = inbox
        self.config = config or HubConfig()
        self._trust = TrustStore(config_dir)
        self._outbox = OutgoingTransfers(config_dir / "transfers")
        self._emit = on_event
        self._connector = Connector(client.send_signal, client.get_ice_servers, self.config.connect)
        self.desk = CallDesk(media, self._call_event, answer=self.config.calls == "answer")
        self._lines: dict[str, PeerLine] = {}
        self._dialling: dict[str, asyncio.Future[PeerLine]] = {}
        self._states: dict[str, pe.PeerState] = {}
        self._sends: dict[str, _Send] = {}
        self._transfer_peers: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin reading signalling events and answering contacts who dial us."""
        self._spawn(self._read_signalling())
        self._spawn(self._answer_incoming())

    async def close(self, reason: str = "signed out") -> None:
        """Hang up, stop sending (unfinished transfers stay resumable) and close every session."""
        self._closed = True
        call = self.desk.current
        if call is not None:
            call.hangup()  # sent now; the session's close below waits for it to be acknowledged
        for send in self._sends.values():
            if send.task is not None:
                send.task.cancel()
        lines = list(self._lines.values())
        await asyncio.gather(*(line.session.close(reason) for line in lines), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._connector.close()

    def set_network_report(self, report: NetworkReport) -> None:
        """Our router's behaviour (the network check): told to contacts with each connection offer."""
        self._connector.set_network(*report.declared())

    def state(self, peer: str) -> pe.PeerState:
        """How we are connected to ``peer`` now."""
        return self._states.get(peer) or pe.PeerState(peer)

    # --- files -----------------------------------------------------------------------------------------

    def send_files(self, peer: str, paths: list[Path]) -> str:
        """Send files and folders to ``peer``; returns the transfer id (progress comes as events).

        Raises `app.transfer.outbox.NothingToSend` (with a sentence) when the paths hold nothing to send.
        """
        files = collect_files(paths)
        transfer, resumed = self._outbox.transfer_id(peer, files)
        entries = tuple(tev.FileEntry(i, f.name, f.size) for i, f in enumerate(files))
        self._transfer_peers[transfer] = peer
        send = self._sends.get(transfer)
        if send is not None and send.task is not None and not send.task.done():
            return transfer  # already on its way
        send = self._sends[transfer] = _Send(peer, files)
        total = sum(f.size for f in files)
        self._emit(pe.SendQueued(transfer, peer, entries, total, resumed, tuple(str(p) for p in paths)))
        send.task = self._spawn(self._send(transfer, send))
        return transfer

    async def wait_for_send(self, transfer: str) -> tev.TransferFinished:
        """Wait until the send ends: the receiver's result, or `TransferRefused` / `NoSessionInTime`."""
        send = self._sends.get(transfer)
        if send is None:
            raise KeyError(transfer)
        return await asyncio.shield(send.outcome)

    def resume(self, transfer: str) -> bool:
        """Start an interrupted or given-up send again (it resumes where it stopped); False if unknown."""
        send = self._sends.get(transfer)
        if send is None or (send.task is not None and not send.task.done()):
            return False
        if send.outcome.done():
            send.outcome = asyncio.get_running_loop().create_future()
        send.task = self._spawn(self._send(transfer, send))
        return True

    async def cancel(self, transfer: str) -> None:
        """Cancel a transfer either way; the receiver deletes its partial files."""
        send = self._sends.pop(transfer, None)
        peer = self._transfer_peers.get(transfer)
        line = self._lines.get(peer) if peer else None
        if line is not None:
            await line.endpoint.cancel(transfer)
        if send is not None:
            self._outbox.finished(send.peer, send.files)
            if send.task is not None and not send.task.done():
                # Waiting to connect or to retry: no endpoint knows it, so say it here (a repeat of the
                # endpoint's own event is harmless).
                send.task.cancel()
                self._emit(tev.TransferCancelled(transfer, send.peer, "send", "us", "cancelled"))
            settle_outcome(send.outcome, error=TransferRefused("cancelled"))

    async def _send(self, transfer: str, send: _Send) -> None:
        loop = asyncio.get_running_loop()
        retry = Retry(self.config.retry, loop.time())
        while True:
            try:
                line = await self.session_with(send.peer)
                finished = await line.endpoint.send(transfer, send.files)
            except TransferRefused as exc:
                # Declined or cancelled (the endpoint said so): never sent again by itself.
                self._outbox.finished(send.peer, send.files)
                self._sends.pop(transfer, None)
                settle_outcome(send.outcome, error=exc)
                return
            except FinalError as exc:  # not a contact, a changed key...: waiting will not help
                self._emit(pe.SendGaveUp(transfer, send.peer, str(exc)))
                settle_outcome(send.outcome, error=exc)
                return
            except TryAgainLater as exc:
                reason = str(exc)
                delay = retry.next_delay(loop.time())
                if delay is None:
                    self._emit(pe.SendGaveUp(transfer, send.peer, reason))
                    settle_outcome(send.outcome, error=NoSessionInTime(reason))
                    return
                offline = isinstance(exc, ContactOffline)
                self._emit(pe.SendRetrying(transfer, send.peer, reason, delay, offline))
                send.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await send.wake.wait()  # the contact came back online: try now
                continue
            if finished.failed:
                settle_outcome(send.outcome, result=finished)
                return  # kept: "resume" sends the failed files again
            break
        self._outbox.finished(send.peer, send.files)
        self._sends.pop(transfer, None)
        settle_outcome(send.outcome, result=finished)

    def _transfer_event(self, event: tev.TransferEvent) -> None:
        self._transfer_peers[event.transfer] = event.peer
        self._emit(event)

    # --- calls -----------------------------------------------------------------------------------------

    async def call(self, peer: str) -> CallLink:
        """Call ``peer`` (dialling them first if needed); the call's progress comes as `CallUpdate` events."""
        if self.desk.current is not None:
            raise RuntimeError("Hang up the current call first.")
        line = await self.session_with(peer)
        return self.desk.place(line.session, peer)

    def _call_event(self, link: CallLink, event: CallEvent) -> None:
        self._emit(pe.CallUpdate(link.machine.peer, link, event))
        if (
            self.config.calls == "decline"
            and isinstance(event, CallRinging)
            and link.machine.role == "callee"
        ):
            link.decline()  # nobody here to pick up

    # --- sessions --------------------------------------------------------------------------------------

    async def session_with(self, peer: str) -> PeerLine:
        """The live session with ``peer``, dialling them if there is none (one dial at a time per peer).

        Raises `TryAgainLater` (offline, no path, session lost) or `FinalError` (refused) kinds.
        """
        line = self._lines.get(peer)
        if line is not None and not line.session.is_closed:
            return line
        pending = self._dialling.get(peer)
        if pending is None:
            pending = asyncio.ensure_future(self._dial(peer))
            self._dialling[peer] = pending
            pending.add_done_callback(lambda _f: self._dialling.pop(peer, None))
        return await asyncio.shield(pending)

    async def _dial(self, peer: str) -> PeerLine:
        self._update(peer, state="connecting", problem=None)
        self._emit(pe.Dialling(peer))
        try:
            connection = await self._connector.dial(peer)
            return await self._adopt(connection)
        except PunchlineError as exc:
            problem = f"{peer} is offline" if isinstance(exc, ContactOffline) else str(exc)
            self._update(peer, state="failed", problem=problem)
            self._emit(
                pe.SessionFailed(peer, problem, refused=isinstance(exc, SessionRefused), incoming=False)
            )
            if isinstance(exc, ContactOffline):
                raise ContactOffline(exc.code, problem) from exc
            raise

    async def _answer_incoming(self) -> None:
        while True:
            try:
                connection = await self._connector.accept()
            except NoPath as exc:
                log.info("an incoming connection failed: %s", exc)
                self._emit(pe.SessionFailed("", str(exc), refused=False, incoming=True))
                continue
            self._spawn(self._adopt_incoming(connection))

    async def _adopt_incoming(self, connection: Connection) -> None:
        self._update(connection.peer, state="connecting", problem=None)
        try:
            await self._adopt(connection)
        except PunchlineError as exc:
            self._update(connection.peer, state="failed", problem=str(exc))
            self._emit(
                pe.SessionFailed(
                    connection.peer, str(exc), refused=isinstance(exc, SessionRefused), incoming=True
                )
            )

    async def _adopt(self, connection: Connection) -> PeerLine:
        """Start the session on a connection that found a path, and serve it."""
        path_events = self._spawn(self._follow_path(connection))
        try:
            session = await PeerSession.start(
                connection,
                self.identity,
                self._trust,
                expected_key=listed_key(self.client.contacts, connection),
                config=self.config.session,
            )
        except BaseException:
            path_events.cancel()
            connection.close()
            raise
        endpoint = TransferEndpoint(session, inbox=self.inbox, on_event=self._transfer_event)
        self.desk.attach(session)
        answer_echoes(session)
        line = PeerLine(connection, session, endpoint, [path_events])
        self._lines[connection.peer] = line
        line.tasks.append(self._spawn(self._serve(line)))
        assert session.peer is not None
        how = (
            "first contact: compare the safety number"
            if session.peer.trust == "first-contact"
            else "key pinned"
        )
        self._update(
            connection.peer,
            state="connected",
            path=connection.link.selected_path,
            encryption=f"End-to-end encrypted (QUIC, TLS 1.3; {how})",
            safety_number=safety_number(self.identity.public_key_bytes, session.peer.key),
            pair_verdict=" — ".join(verdict) if (verdict := connection.pair_verdict()) else None,
            problem=None,
        )
        return line

    async def _serve(self, line: PeerLine) -> None:
        peer = line.connection.peer
        try:
            reason = await line.endpoint.run()
        finally:
            await line.session.close()
            for task in line.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            line.connection.close()
        if self._lines.get(peer) is line:
            del self._lines[peer]
            self._emit(pe.SessionEnded(peer, reason))
            if not self._closed:
                self._update(peer, state="idle", path=None, rtt_ms=None, loss=None, problem=_ended(reason))

    async def _follow_path(self, connection: Connection) -> None:
        peer = connection.peer
        while True:
            event = await connection.link.next_event()
            line = self._lines.get(peer)
            if line is not None and line.connection is connection:
                self.desk.path_event(line.session, event)
            elif line is not None:
                continue  # an older connection to the same contact
            self._emit(pe.PathUpdate(peer, event))
            self._path_event(peer, event)

    def _path_event(self, peer: str, event: PathEvent) -> None:
        if isinstance(event, PathSelected | PathChanged | PathRecovered):
            self._update(peer, path=event.path, problem=None)
        elif isinstance(event, PathStats):
            self._update(peer, path=event.path, rtt_ms=round(event.rtt_ms, 1), loss=event.loss)
        elif isinstance(event, PathLost):
            self._update(peer, problem=f"The connection to {peer} is lost: {event.reason}")

    def _update(self, peer: str, **changes: object) -> None:
        state = replace(self.state(peer), **changes)  # type: ignore[arg-type]
        if state != self._states.get(peer):
            self._states[peer] = state
            self._emit(pe.PeerUpdated(state))

    # --- signalling ------------------------------------------------------------------------------------

    async def _read_signalling(self) -> None:
        while True:
            event = await self.client.next_event()
            if isinstance(event, sev.SignalReceived) and self._connector.handle_signal(event):
                continue
            if isinstance(event, sev.PresenceChanged) and event.status != "offline":
                for send in self._sends.values():
                    if send.peer == event.username:
                        send.wake.set()
            self._emit(event)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer hub task failed", exc_info=task.exception())


def _ended(reason: str) -> str | None:
    """A session's end reason as the status panel says it (a normal close says nothing)."""
    return (
        None
        if reason in ("closed", "done", "stopped", "signed out", "call ended")
        else f"Session ended: {reason}"
    )
