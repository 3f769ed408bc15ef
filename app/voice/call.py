"""Calls on a peer session: the signalling machine's asyncio adapter, and the desk that answers invites.

`CallLink` drives one `CallSignalling` over a `PeerSession`: the peer's ``call-*`` control messages in, the
machine's messages out, one re-armed timer, path events (a dead path ends the call after 10 s) and the
session's end; it starts the call's `CallMedia` when the call is answered and stops it when it ends.
`CallDesk` is an app's phone line: it places and answers calls, one at a time, ``call-busy`` for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from app.nat.path_events import PathEvent, PathLost, PathRecovered, PathSelected
from app.session.peer_session import PeerSession, SessionError
from app.voice.call_media import CallMedia
from app.voice.call_messages import CALL_MESSAGES, CallMessage, CallProtocolError, Invite
from app.voice.call_signalling import (
    CallEnded,
    CallEvent,
    CallSignalling,
    CallStarted,
    busy_reply,
)

MediaFactory = Callable[[PeerSession], CallMedia]
EventHandler = Callable[["CallLink", CallEvent], None]

log = logging.getLogger("punchline.voice")


class CallLink:
    """One call on one session, from invite to the end."""

    def __init__(
        self,
        session: PeerSession,
        machine: CallSignalling,
        media: MediaFactory,
        on_event: EventHandler,
    ) -> None:
        self.session = session
        self.machine = machine
        self.media: CallMedia | None = None
        self._media_factory = media
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[CallEnded] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._media_task: asyncio.Task[None] | None = None

    @property
    def call(self) -> str:
        """The call's id."""
        return self.machine.call

    # --- inputs ------------------------------------------------------------------------------------------

    def receive(self, message: CallMessage) -> None:
        """A call message from the peer."""
        self.machine.receive(message)
        self._flush()

    def accept(self) -> None:
        """Answer (callee)."""
        self.machine.accept()
        self._flush()

    def decline(self) -> None:
        """Decline (callee)."""
        self.machine.decline()
        self._flush()

    def hangup(self) -> None:
        """End the call, or stop calling / ringing before an answer."""
        self.machine.hangup()
        self._flush()

    def path_event(self, event: PathEvent) -> None:
        """What the path manager says: a lost path starts the 10 s countdown, a working one stops it."""
        if isinstance(event, PathLost):
            self.machine.path_lost(self._loop.time())
        elif isinstance(event, PathRecovered | PathSelected):
            self.machine.path_recovered()
        self._flush()

    async def run(self) -> CallEnded:
        """Send what is pending, then wait for the call to end (the session ending ends it too)."""
        self._flush()
        try:
            with contextlib.suppress(SessionError):
                await self.session.unless_closed(asyncio.shield(self._ended))
            if not self._ended.done():
                self.machine.session_closed()
                self._flush()
            return await self._ended
        finally:
            await self._stop_media()

    # --- the machine's outputs ---------------------------------------------------------------------------

    def _flush(self) -> None:
        for message in self.machine.messages_to_send():
            with contextlib.suppress(SessionError):
                self.session.send_message(CALL_MESSAGES.encode(message))
        while (event := self.machine.next_event()) is not None:
            if isinstance(event, CallStarted):
                self.media = self._media_factory(self.session)
                self._media_task = asyncio.create_task(self.media.run())
            elif isinstance(event, CallEnded) and self.media is not None:
                self.media.stop()
            self._on_event(self, event)
            if isinstance(event, CallEnded) and not self._ended.done():
                self._ended.set_result(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.machine.handle_timer(self._loop.time())
        self._flush()

    async def _stop_media(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.media is not None:
            self.media.stop()
        if self._media_task is not None:
            with contextlib.suppress(asyncio.CancelledError, SessionError):
                await self._media_task


class CallDesk:
    """An app's calls: rings (or answers at once with ``answer``), places calls, says busy while in one."""

    def __init__(self, media: MediaFactory, on_event: EventHandler, *, answer: bool) -> None:
        self.current: CallLink | None = None
        self._media = media
        self._on_event = on_event
        self._answer = answer
        self._tasks: set[asyncio.Task[CallEnded]] = set()

    def attach(self, session: PeerSession) -> None:
        """Take the call messages of ``session`` (a contact's session, once it is authenticated)."""
        session.set_message_receiver(CALL_MESSAGES.types, lambda message: self._message(session, message))

    def _message(self, session: PeerSession, raw: dict[str, Any]) -> None:
        try:
            message = CALL_MESSAGES.decode(raw)
        except CallProtocolError as exc:  # the peer's mistake: that message is dropped, the session goes on
            log.warning("bad call message from %s: %s", session.connection.peer, exc)
            return
        current = self.current
        if current is not None and current.session is session and message.call == current.call:
            current.receive(message)
            return
        if not isinstance(message, Invite):
            return  # about a call that is over, or not ours
        if current is not None:
            with contextlib.suppress(SessionError):
                session.send_message(CALL_MESSAGES.encode(busy_reply(message)))
            return
        peer = session.peer.name if session.peer else session.connection.peer
        machine = CallSignalling.incoming(message, peer, asyncio.get_running_loop().time())
        link = CallLink(session, machine, self._media, self._event)
        self._run(link)
        if self._answer:
            link.accept()

    def place(self, session: PeerSession, peer: str) -> CallLink:
        """Call ``peer`` on ``session`` (attached): the desk is busy for others until this call ends."""
        if self.current is not None:
            raise RuntimeError("already in a call")
        machine = CallSignalling.start(peer, asyncio.get_running_loop().time())
        link = CallLink(session, machine, self._media, self._event)
        self._run(link)
        return link

    def _run(self, link: CallLink) -> None:
        self.current = link
        task = asyncio.create_task(link.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def path_event(self, session: PeerSession, event: PathEvent) -> None:
        """A path event of ``session``'s connection, for the call on it (if any)."""
        if self.current is not None and self.current.session is session:
            self.current.path_event(event)

    def _event(self, link: CallLink, event: CallEvent) -> None:
        if isinstance(event, CallEnded) and self.current is link:
            self.current = None
        self._on_event(link, event)
