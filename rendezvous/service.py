"""The signalling service: what the server does with each client message.

It knows nothing of WebSockets: a connection is anything with ``send`` and ``close`` (`Connection`), so the
transport adapter (``rendezvous.websocket``) stays thin. The service owns the in-memory map of who is signed
in on which device, derives presence from it, and keeps durable state in the `Store`.

Rules worth knowing (the schema is in ``rendezvous.wire.signalling``):

* Presence is per account: ``online`` if any device is online, ``away`` if every signed-in device is away,
  ``offline`` otherwise. It is pushed to mutual contacts only, at once, and only when it changes.
* A request to a user who blocked the sender is stored but never shown to them. A blocked user learns
  nothing beyond the contact disappearing; a declined request disappears from the requester's list.
* A device that signs in again while its old connection lingers (a reconnect after a network change)
  replaces the old connection instead of counting twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rendezvous import accounts
from rendezvous.config import Limits, TurnConfig
from rendezvous.log import log_event, monotonic
from rendezvous.store import Store, UsernameTaken
from rendezvous.throttle import FailureThrottle, WindowCounter
from rendezvous.wire import signalling as sig
from rendezvous.wire.signalling import Contact, Device, ErrorCode, IceServer, ServerMessage
from rendezvous.wire.turn import make_rest_credentials

log = logging.getLogger("punchline.rendezvous")

# WebSocket close codes the service uses (4000-4999 are for applications, RFC 6455 §7.4.2).
CLOSE_NORMAL = 1000
CLOSE_REPLACED = 4002
CLOSE_SESSION_REVOKED = 4001


@functools.cache
def _dummy_hash() -> str:
    """Checked when an account does not exist, so "no such user" costs as much as a wrong password."""
    return accounts.hash_password("not a real password, only spends the same time")


SERVER_VERSION = "punchline-rendezvous/0.1"


class Connection(Protocol):
    """One client connection, as the service sees it."""

    @property
    def remote(self) -> str:
        """The client's IP address (for throttling and logs)."""

    @property
    def host(self) -> str:
        """The host name or IP the client connected to (what it can reach us by)."""

    def send(self, message: ServerMessage) -> None:
        """Queue a message to the client; never blocks."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection after the queued messages."""


class RequestFailed(Exception):
    """A request the service refuses; becomes an ``error`` reply with this code and message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Session:
    """A signed-in connection."""

    connection: Connection
    username: str
    device: Device
    token_digest: str
    status: Literal["online", "away"]


class SignallingService:
    """Handles client messages and connection ends; sends replies and pushes through each `Connection`."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        *,
        stun_port: int | None,
        turn: TurnConfig | None = None,
        turn_secret: str | None = None,
        turn_port: int | None = None,
        clock: Callable[[], float] = monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``turn_port`` is our relay's port when it runs; ``turn_secret`` signs credentials for it and for
        ``turn.external_servers``."""
        self._store = store
        self._limits = limits
        self._stun_port = stun_port
        self._turn = turn or TurnConfig(enabled=False)
        self._turn_secret = turn_secret
        self._turn_port = turn_port
        self._clock = clock
        self._wall_clock = wall_clock
        self._sessions: dict[Connection, Session] = {}
        self._by_user: dict[str, dict[str, Session]] = {}  # username → device_id → session
        self._sign_in_failures = FailureThrottle(limits.failures_before_throttle, limits.max_lockout_seconds)
        self._registrations = WindowCounter(limits.registrations_per_ip_per_hour, 3600.0)
        self._hashing = asyncio.Semaphore(limits.concurrent_password_hashes)
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[ServerMessage | None]]] = {
            sig.Register: self._register,
            sig.SignIn: self._sign_in,
            sig.SignOut: self._sign_out,
            sig.ChangePassword: self._change_password,
            sig.SetStatus: self._set_status,
            sig.ListContacts: self._list_contacts,
            sig.ContactRequest: self._contact_request,
            sig.ContactAccept: self._contact_accept,
            sig.ContactDecline: self._contact_decline,
            sig.ContactRemove: self._contact_remove,
            sig.ContactBlock: self._contact_block,
            sig.ContactUnblock: self._contact_unblock,
            sig.SendSignal: self._send_signal,
            sig.GetIceServers: self._get_ice_servers,
        }

    # ------------------------------------------------------------------------------------------ entry points

    def is_signed_in(self, connection: Connection) -> bool:
        """Whether ``connection`` has a session."""
        return connection in self._sessions

    def online_count(self) -> int:
        """Signed-in connections right now."""
        return len(self._sessions)

    async def handle(self, connection: Connection, message: sig.ClientMessage) -> None:
        """Carry out one request and send exactly one reply for it."""
        try:
            if connection not in self._sessions and not isinstance(message, sig.Register | sig.SignIn):
                raise RequestFailed(ErrorCode.NOT_SIGNED_IN, "Sign in first.")
            reply = await self._handlers[type(message)](connection, message)
        except RequestFailed as failure:
            reply = sig.Error(re=message.id, code=failure.code, message=failure.message)
        except Exception:
            # Our bug, not the client's: log it, tell the client something went wrong, keep serving.
            log.exception("request failed", extra={"fields": {"type": message.TYPE}})
            reply = sig.Error(re=message.id, code=ErrorCode.INTERNAL, message="Internal server error.")
        if reply is not None:
            connection.send(reply)

    def disconnected(self, connection: Connection) -> None:
        """Forget a connection that closed, updating presence if it was signed in."""
        session = self._sessions.get(connection)
        if session is None:
            return
        before = self._presence_of(session.username)
        self._remove_session(session)
        log_event(log, "signed_off", user=session.username, device=session.device.device_id)
        self._announce_presence(session.username, before)

    # ------------------------------------------------------------------------------------------ accounts

    async def _register(self, connection: Connection, msg: sig.Register) -> ServerMessage:
        username = accounts.normalise_username(msg.username)
        problem = accounts.username_problem(username)
        if problem:
            raise RequestFailed(ErrorCode.INVALID_USERNAME, problem)
        problem = accounts.password_problem(msg.password, username)
        if problem:
            raise RequestFailed(ErrorCode.WEAK_PASSWORD, problem)
        if self._store.user_exists(username):
            raise RequestFailed(ErrorCode.USERNAME_TAKEN, f"The username {username!r} is taken.")
        if not self._registrations.allow(connection.remote, self._clock()):
            raise RequestFailed(ErrorCode.THROTTLED, "Too many new accounts from your address; try later.")
        password_hash = await self._off_loop(accounts.hash_password, msg.password)
        try:
            self._store.create_user(username, password_hash)
        except UsernameTaken:
            raise RequestFailed(ErrorCode.USERNAME_TAKEN, f"The username {username!r} is taken.") from None
        log_event(log, "registered", user=username, remote=connection.remote)
        return sig.Ok(re=msg.id)

    async def _sign_in(self, connection: Connection, msg: sig.SignIn) -> ServerMessage | None:
        if connection in self._sessions:
            raise RequestFailed(ErrorCode.ALREADY_SIGNED_IN, "This connection is already signed in.")
        username = accounts.normalise_username(msg.username)
        if not sig.valid_device_id(msg.device_id):
            raise RequestFailed(ErrorCode.INVALID_ARGUMENT, "The device id is not valid.")
        if not sig.valid_identity_key(msg.identity_key):
            raise RequestFailed(ErrorCode.INVALID_ARGUMENT, "The identity key must be a base64 Ed25519 key.")
        if (msg.password is None) == (msg.token is None):
            raise RequestFailed(ErrorCode.BAD_MESSAGE, "sign_in needs either a password or a token.")
        keys = (f"user:{username}", f"ip:{connection.remote}")
        now = self._clock()
        wait = max(self._sign_in_failures.retry_after(key, now) for key in keys)
        if wait > 0:
            raise RequestFailed(
                ErrorCode.THROTTLED, f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds."
            )

        if msg.token is not None:
            digest = accounts.token_digest(msg.token)
            owner = self._store.use_token(digest, self._limits.token_lifetime_days)
            ok = owner is not None and owner.username == username and owner.device_id == msg.device_id
            failure = "This session has expired or was signed out. Sign in with your password."
        else:
            stored = self._store.password_hash(username)
            matches = await self._off_loop(
                accounts.verify_password, stored or _dummy_hash(), msg.password or ""
            )
            ok = stored is not None and matches
            digest = ""
            failure = "Wrong username or password."
        if not ok:
            for key in keys:
                self._sign_in_failures.failed(key, self._clock())
            log_event(log, "sign_in_failed", user=username, remote=connection.remote)
            raise RequestFailed(ErrorCode.AUTH_FAILED, failure)
        self._sign_in_failures.succeeded(keys[0])

        devices = self._by_user.get(username, {})
        if msg.device_id not in devices and len(devices) >= self._limits.max_devices_per_user:
            raise RequestFailed(
                ErrorCode.BUSY, f"{len(devices)} devices are signed in already; sign one out first."
            )
        if connection in self._sessions:  # another sign_in on this connection finished while we hashed
            raise RequestFailed(ErrorCode.ALREADY_SIGNED_IN, "This connection is already signed in.")
        token = msg.token
        if token is None:
            token = accounts.new_token()
            digest = accounts.token_digest(token)
            self._store.add_token(digest, username, msg.device_id)
        self._store.register_device(username, msg.device_id, msg.identity_key)

        before = self._presence_of(username)
        old = devices.get(msg.device_id)
        if old is not None:
            self._remove_session(old)
            old.connection.close(CLOSE_REPLACED, "This device signed in again on a new connection.")
        session = Session(connection, username, Device(msg.device_id, msg.identity_key), digest, msg.status)
        self._sessions[connection] = session
        self._by_user.setdefault(username, {})[msg.device_id] = session
        log_event(
            log,
            "signed_in",
            user=username,
            device=msg.device_id,
            method="token" if msg.token else "password",
            remote=connection.remote,
        )
        connection.send(
            sig.Welcome(
                re=msg.id,
                username=username,
                device_id=msg.device_id,
                token=token,
                contacts=self._contacts_of(username),
                stun_port=self._stun_port,
                server_version=SERVER_VERSION,
            )
        )
        self._announce_presence(username, before)
        return None  # the welcome went out above, before the presence pushes it causes

    async def _sign_out(self, connection: Connection, msg: sig.SignOut) -> ServerMessage | None:
        session = self._sessions[connection]
        self._store.delete_token(session.token_digest)
        connection.send(sig.Ok(re=msg.id))
        self.disconnected(connection)
        connection.close(CLOSE_NORMAL, "Signed out.")
        return None

    async def _change_password(self, connection: Connection, msg: sig.ChangePassword) -> ServerMessage:
        session = self._sessions[connection]
        username = session.username
        stored = self._store.password_hash(username)
        if stored is None or not await self._off_loop(accounts.verify_password, stored, msg.old_password):
            self._sign_in_failures.failed(f"user:{username}", self._clock())
            raise RequestFailed(ErrorCode.AUTH_FAILED, "The current password is wrong.")
        problem = accounts.password_problem(msg.new_password, username)
        if problem:
            raise RequestFailed(ErrorCode.WEAK_PASSWORD, problem)
        self._store.set_password_hash(
            username, await self._off_loop(accounts.hash_password, msg.new_password)
        )
        self._store.delete_tokens_except(username, session.token_digest)
        before = self._presence_of(username)
        for other in list(self._by_user.get(username, {}).values()):
            if other is not session:
                self._remove_session(other)
                other.connection.send(
                    sig.Error(
                        re=None,
                        code=ErrorCode.SESSION_ENDED,
                        message="Your password was changed on another device. Sign in again.",
                    )
                )
                other.connection.close(CLOSE_SESSION_REVOKED, "Password changed.")
        log_event(log, "password_changed", user=username)
        self._announce_presence(username, before)
        return sig.Ok(re=msg.id)

    async def _set_status(self, connection: Connection, msg: sig.SetStatus) -> ServerMessage:
        session = self._sessions[connection]
        before = self._presence_of(session.username)
        session.status = msg.status
        self._announce_presence(session.username, before)
        return sig.Ok(re=msg.id)

    # ------------------------------------------------------------------------------------------ contacts

    async def _list_contacts(self, connection: Connection, msg: sig.ListContacts) -> ServerMessage:
        return sig.ContactList(re=msg.id, contacts=self._contacts_of(self._sessions[connection].username))

    async def _contact_request(self, connection: Connection, msg: sig.ContactRequest) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        mine, theirs = self._store.edge(me, other), self._store.edge(other, me)
        if mine == "contact":
            raise RequestFailed(ErrorCode.ALREADY_CONTACTS, f"{other} is already your contact.")
        if mine == "blocked":
            raise RequestFailed(ErrorCode.BLOCKED, f"You blocked {other}; unblock them first.")
        if theirs == "requested":  # they asked first: asking back is accepting
            return await self._contact_accept(connection, sig.ContactAccept(id=msg.id, username=other))
        self._store.set_edges((me, other, "requested"))
        log_event(log, "contact_requested", user=me, other=other)
        self._push_contact(me, other)
        if theirs != "blocked":
            self._push_contact(other, me)
        return sig.Ok(re=msg.id)

    async def _contact_accept(self, connection: Connection, msg: sig.ContactAccept) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        if self._store.edge(other, me) != "requested" or self._store.edge(me, other) == "blocked":
            raise RequestFailed(ErrorCode.NO_REQUEST, f"There is no contact request from {other}.")
        self._store.set_edges((me, other, "contact"), (other, me, "contact"))
        log_event(log, "contact_accepted", user=me, other=other)
        self._push_contact(me, other)
        self._push_contact(other, me)
        return sig.Ok(re=msg.id)

    async def _contact_decline(self, connection: Connection, msg: sig.ContactDecline) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        if self._store.edge(other, me) != "requested" or self._store.edge(me, other) == "blocked":
            raise RequestFailed(ErrorCode.NO_REQUEST, f"There is no contact request from {other}.")
        self._store.delete_edges((other, me))
        log_event(log, "contact_declined", user=me, other=other)
        self._push_contact(me, other)
        self._push_contact(other, me)  # their pending request disappears
        return sig.Ok(re=msg.id)

    async def _contact_remove(self, connection: Connection, msg: sig.ContactRemove) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        mine = self._store.edge(me, other)
        if mine == "contact":
            self._store.delete_edges((me, other), (other, me))
            self._push_contact(other, me)
        elif mine == "requested":
            self._store.delete_edges((me, other))
            if self._store.edge(other, me) != "blocked":
                self._push_contact(other, me)
        else:
            raise RequestFailed(ErrorCode.NOT_CONTACT, f"{other} is not your contact.")
        log_event(log, "contact_removed", user=me, other=other)
        self._push_contact(me, other)
        return sig.Ok(re=msg.id)

    async def _contact_block(self, connection: Connection, msg: sig.ContactBlock) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        theirs = self._store.edge(other, me)
        self._store.set_edges((me, other, "blocked"))
        if theirs in ("contact", "requested"):
            self._store.delete_edges((other, me))
            self._push_contact(other, me)  # to them it looks like a removal
        log_event(log, "contact_blocked", user=me, other=other)
        self._push_contact(me, other)
        return sig.Ok(re=msg.id)

    async def _contact_unblock(self, connection: Connection, msg: sig.ContactUnblock) -> ServerMessage:
        me, other = self._me_and_other(connection, msg.username)
        if self._store.edge(me, other) != "blocked":
            raise RequestFailed(ErrorCode.INVALID_ARGUMENT, f"{other} is not blocked.")
        # A request they sent while blocked is dropped rather than shown now.
        pending = [(other, me)] if self._store.edge(other, me) == "requested" else []
        self._store.delete_edges((me, other), *pending)
        if pending:
            self._push_contact(other, me)
        log_event(log, "contact_unblocked", user=me, other=other)
        self._push_contact(me, other)
        return sig.Ok(re=msg.id)

    # ------------------------------------------------------------------------------------------ signalling

    async def _send_signal(self, connection: Connection, msg: sig.SendSignal) -> ServerMessage:
        session = self._sessions[connection]
        me, other = self._me_and_other(connection, msg.to)
        if self._store.edge(me, other) != "contact":
            raise RequestFailed(ErrorCode.NOT_CONTACT, f"{other} is not your contact.")
        targets = list(self._by_user.get(other, {}).values())
        if msg.device_id is not None:
            targets = [t for t in targets if t.device.device_id == msg.device_id]
        if not targets:
            where = f"{other}'s device {msg.device_id}" if msg.device_id else other
            raise RequestFailed(ErrorCode.OFFLINE, f"{where} is offline.")
        forward = sig.Signal(sender=me, sender_device=session.device.device_id, payload=msg.payload)
        for target in targets:
            target.connection.send(forward)
        log_event(log, "signal_forwarded", level=logging.DEBUG, user=me, other=other, devices=len(targets))
        return sig.Ok(re=msg.id)

    # ------------------------------------------------------------------------------------------ ICE servers

    async def _get_ice_servers(self, connection: Connection, msg: sig.GetIceServers) -> ServerMessage:
        """Our STUN/TURN URLs with fresh REST credentials (signed-in users only), plus external servers."""
        session = self._sessions[connection]
        host = self._turn.public_host or connection.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal in a URI (RFC 7064 §3.1)
        credentials = None
        if self._turn_secret is not None:
            credentials = make_rest_credentials(
                self._turn_secret, session.username, now=self._wall_clock(), ttl=self._turn.credential_ttl
            )
        servers: list[IceServer] = []
        urls: list[str] = []
        if self._stun_port is not None:
            urls.append(f"stun:{host}:{self._stun_port}")
        if self._turn_port is not None and credentials is not None:
            urls.append(f"turn:{host}:{self._turn_port}?transport=udp")
            if self._turn.tcp:
                urls.append(f"turn:{host}:{self._turn_port}?transport=tcp")
            servers.append(
                IceServer(tuple(urls), credentials.username, credentials.password, credentials.expires)
            )
        elif urls:
            servers.append(IceServer(tuple(urls)))
        for url in self._turn.external_servers:
            if url.startswith("turn") and credentials is not None:
                servers.append(
                    IceServer((url,), credentials.username, credentials.password, credentials.expires)
                )
            else:
                servers.append(IceServer((url,)))
        log_event(log, "ice_servers_issued", level=logging.DEBUG, user=session.username, servers=len(servers))
        return sig.IceServers(re=msg.id, servers=tuple(servers))

    # ------------------------------------------------------------------------------------------ helpers

    def _me_and_other(self, connection: Connection, name: str) -> tuple[str, str]:
        me = self._sessions[connection].username
        other = accounts.normalise_username(name)
        if other == me:
            raise RequestFailed(ErrorCode.INVALID_ARGUMENT, "That is your own account.")
        if not sig.valid_username(other) or not self._store.user_exists(other):
            raise RequestFailed(ErrorCode.NO_SUCH_USER, f"There is no user called {other!r}.")
        return me, other

    def _remove_session(self, session: Session) -> None:
        self._sessions.pop(session.connection, None)
        devices = self._by_user.get(session.username, {})
        if devices.get(session.device.device_id) is session:
            del devices[session.device.device_id]
        if not devices:
            self._by_user.pop(session.username, None)

    def _presence_of(self, username: str) -> tuple[sig.Status, tuple[Device, ...]]:
        sessions = self._by_user.get(username, {})
        if not sessions:
            return "offline", ()
        status: sig.Status = "online" if any(s.status == "online" for s in sessions.values()) else "away"
        return status, tuple(sessions[d].device for d in sorted(sessions))

    def _announce_presence(self, username: str, before: tuple[sig.Status, tuple[Device, ...]]) -> None:
        """Push ``username``'s presence to its mutual contacts if it differs from ``before``."""
        after = self._presence_of(username)
        if after == before:
            return
        status, devices = after
        if status != before[0]:
            log_event(log, "presence", user=username, status=status)
        push = sig.Presence(username=username, status=status, devices=devices)
        for contact in self._store.mutual_contacts(username):
            self._send_to_user(contact, push)

    def _contact_record(self, viewer: str, other: str) -> Contact:
        mine, theirs = self._store.edge(viewer, other), self._store.edge(other, viewer)
        if mine == "contact":
            status, devices = self._presence_of(other)
            return Contact(other, "mutual", status, devices)
        if mine == "blocked":
            return Contact(other, "blocked")
        if mine == "requested":
            return Contact(other, "outgoing")
        if theirs == "requested":
            return Contact(other, "incoming")
        return Contact(other, "none")

    def _contacts_of(self, username: str) -> tuple[Contact, ...]:
        others = {dst for dst, _ in self._store.edges_from(username)}
        others.update(src for src, kind in self._store.edges_to(username) if kind == "requested")
        records = (self._contact_record(username, other) for other in sorted(others))
        return tuple(r for r in records if r.relation != "none")

    def _push_contact(self, viewer: str, other: str) -> None:
        """Tell every device of ``viewer`` how ``other`` now relates to them."""
        self._send_to_user(viewer, sig.ContactUpdate(contact=self._contact_record(viewer, other)))

    def _send_to_user(self, username: str, message: ServerMessage) -> None:
        for session in self._by_user.get(username, {}).values():
            session.connection.send(message)

    async def _off_loop(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run CPU-heavy password hashing in a worker thread, a few at a time."""
        async with self._hashing:
            return await asyncio.get_running_loop().run_in_executor(None, func, *args)
