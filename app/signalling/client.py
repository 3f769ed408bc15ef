"""The signalling client: signs in to the rendezvous server and stays signed in.

`SignallingClient.start` connects and signs in once (raising `SignInError` or `ServerUnreachable` with a
message for people). After that a background task reads pushes and, whenever the connection drops,
reconnects with exponential backoff and jitter, signs in again with the session token and re-announces
presence. Requests made while reconnecting fail fast with `NotConnected` rather than hanging.

Events (``app.signalling.events``) come out of `next_event` in order; `contacts` mirrors the server's view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.account.identity import DeviceIdentity
from app.backoff import Backoff
from app.errors import FinalError, PunchlineError, TryAgainLater
from app.signalling import events as ev
from rendezvous.wire import signalling as sig
from rendezvous.wire.ports import DEFAULT_PORT
from rendezvous.wire.signalling import Contact, ErrorCode, IceServer

log = logging.getLogger("punchline.signalling")

# Server close codes after which reconnecting would be wrong (see rendezvous.service / rendezvous.websocket).
_FINAL_CLOSE_CODES = {
    4001: "Your password was changed on another device. Sign in again.",
    4002: "This device signed in again from another connection.",
    1008: "The server closed the connection for sending too many messages.",
}

M = TypeVar("M", bound=sig.ServerMessage)


#: Where a client looks for the rendezvous server unless told otherwise (the server's default port here).
DEFAULT_SERVER = f"ws://localhost:{DEFAULT_PORT}"


class SignallingError(PunchlineError):
    """Base of the client's errors; ``str()`` is a sentence for people."""


class ServerUnreachable(SignallingError, TryAgainLater):
    """The server could not be reached or did not speak the protocol."""


class SignInError(SignallingError, FinalError):
    """The server refused to sign in (wrong password, expired token, throttled...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ServerError(SignallingError):
    """The server answered a request with an error (``code`` is an `ErrorCode` value).

    Raised as one of its two kinds (`server_error` picks): `ContactOffline` or `ServerRefused`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ContactOffline(ServerError, TryAgainLater):
    """The contact a signal was for has no device online now."""


class ServerRefused(ServerError, FinalError):
    """The server refused the request (not a contact, bad request, rate limited...)."""


def server_error(code: str, message: str) -> ServerError:
    """The error for a server's error reply: offline is temporary, everything else final."""
    return ContactOffline(code, message) if code == ErrorCode.OFFLINE else ServerRefused(code, message)


class NotConnected(SignallingError, TryAgainLater):
    """A request was made while the connection is down (the client is reconnecting or has stopped)."""


@dataclass(frozen=True)
class Credentials:
    """How to sign in: a password, a token from an earlier sign-in, or both (token first)."""

    username: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ClientOptions:
    """Connection tuning with sensible defaults."""

    open_timeout: float = 10.0
    request_timeout: float = 15.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: Seconds a closing handshake may take: an app quitting with the network gone must not hang.
    close_timeout: float = 2.0
    ssl_context: ssl.SSLContext | None = None


class SignallingClient:
    """A signed-in connection to the rendezvous server that survives drops."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        identity: DeviceIdentity,
        *,
        options: ClientOptions = ClientOptions(),
        backoff: Backoff | None = None,
        status: Literal["online", "away"] = "online",
    ) -> None:
        self.url = url
        self._credentials = credentials
        self._identity = identity
        self._options = options
        self._backoff = backoff or Backoff()
        self._status: Literal["online", "away"] = status
        self._websocket: ClientConnection | None = None
        self._pending: dict[int, asyncio.Future[sig.ServerMessage]] = {}
        self._next_id = 1
        self._events: asyncio.Queue[ev.SignallingEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.contacts: dict[str, Contact] = {}
        self.stun_port: int | None = None
        self.username = credentials.username

    @property
    def token(self) -> str | None:
        """The session token to keep for the next sign-in (None before the first)."""
        return self._credentials.token

    @property
    def device_id(self) -> str:
        """This installation's device id, as contacts see it."""
        return self._identity.device_id

    @property
    def stun_server(self) -> tuple[str, int] | None:
        """Where the server's STUN service answers: its host name and STUN port (None without one)."""
        return None if self.stun_port is None else (server_host(self.url), self.stun_port)

    @property
    def connected(self) -> bool:
        """Whether the client is signed in right now."""
        return self._websocket is not None

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> ev.SignedIn:
        """Connect and sign in; then keep the connection up in the background until `close`."""
        websocket = await self._connect()
        try:
            signed_in = await self._sign_in(websocket, reconnected=False)
        except BaseException:
            await websocket.close()
            raise
        self._task = asyncio.create_task(self._maintain(websocket), name="signalling")
        return signed_in

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self._closing = True
        if self._websocket is not None:
            await self._websocket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def next_event(self) -> ev.SignallingEvent:
        """The next event (wrap in ``asyncio.timeout`` to bound the wait)."""
        return await self._events.get()

    # ------------------------------------------------------------------------------------------ requests

    async def set_status(self, status: Literal["online", "away"]) -> None:
        """Announce online or away to contacts (and again after every reconnect)."""
        self._status = status
        await self._request(sig.Ok, lambda i: sig.SetStatus(id=i, status=status))

    async def list_contacts(self) -> tuple[Contact, ...]:
        """Every contact record, fresh from the server."""
        reply = await self._request(sig.ContactList, lambda i: sig.ListContacts(id=i))
        self.contacts = {c.username: c for c in reply.contacts}
        return reply.contacts

    async def add_contact(self, username: str) -> None:
        """Send a contact request (accepts at once if they already asked us)."""
        await self._request(sig.Ok, lambda i: sig.ContactRequest(id=i, username=username))

    async def accept_contact(self, username: str) -> None:
        """Accept a contact request."""
        await self._request(sig.Ok, lambda i: sig.ContactAccept(id=i, username=username))

    async def decline_contact(self, username: str) -> None:
        """Decline a contact request."""
        await self._request(sig.Ok, lambda i: sig.ContactDecline(id=i, username=username))

    async def remove_contact(self, username: str) -> None:
        """Remove a contact or cancel an outgoing request."""
        await self._request(sig.Ok, lambda i: sig.ContactRemove(id=i, username=username))

    async def block_contact(self, username: str) -> None:
        """Block a user."""
        await self._request(sig.Ok, lambda i: sig.ContactBlock(id=i, username=username))

    async def unblock_contact(self, username: str) -> None:
        """Lift a block."""
        await self._request(sig.Ok, lambda i: sig.ContactUnblock(id=i, username=username))

    async def send_signal(self, to: str, payload: dict[str, Any], device_id: str | None = None) -> None:
        """Forward ``payload`` to a mutual contact's devices (ServerError ``offline`` if none is on)."""
        await self._request(
            sig.Ok, lambda i: sig.SendSignal(id=i, to=to, payload=payload, device_id=device_id)
        )

    async def get_ice_servers(self) -> tuple[IceServer, ...]:
        """STUN/TURN servers to gather candidates with, and fresh TURN credentials (until ``expires``)."""
        reply = await self._request(sig.IceServers, lambda i: sig.GetIceServers(id=i))
        return reply.servers

    async def change_password(self, old_password: str, new_password: str) -> None:
        """Change the password; the server signs out every other device."""
        await self._request(
            sig.Ok, lambda i: sig.ChangePassword(id=i, old_password=old_password, new_password=new_password)
        )
        self._credentials = Credentials(self.username, new_password, self._credentials.token)

    async def sign_out(self) -> None:
        """Revoke this device's token and stop."""
        self._closing = True
        with contextlib.suppress(NotConnected, ConnectionClosed):
            await self._request(sig.Ok, lambda i: sig.SignOut(id=i))
        self._credentials = Credentials(self.username)
        await self.close()

    # ------------------------------------------------------------------------------------------ internals

    async def _request(self, reply_type: type[M], build: Callable[[int], sig.ClientMessage]) -> M:
        websocket = self._websocket
        if websocket is None:
            raise NotConnected("Not connected to the server; reconnecting.")
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[sig.ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await websocket.send(sig.encode(build(request_id)))
            reply = await asyncio.wait_for(future, self._options.request_timeout)
        except ConnectionClosed as exc:
            raise NotConnected("The connection to the server dropped; reconnecting.") from exc
        except TimeoutError as exc:
            raise NotConnected(
                f"The server did not answer within {self._options.request_timeout:g} s."
            ) from exc
        finally:
            self._pending.pop(request_id, None)
        if isinstance(reply, sig.Error):
            raise server_error(reply.code, reply.message)
        if not isinstance(reply, reply_type):
            raise server_error(ErrorCode.BAD_MESSAGE, f"Unexpected reply {reply.TYPE!r} from the server.")
        return reply

    async def _connect(self) -> ClientConnection:
        return await connect_to_server(self.url, self._options)

    async def _sign_in(self, websocket: ClientConnection, *, reconnected: bool) -> ev.SignedIn:
        """Sign in on a fresh connection, with the token if we have one, else (or then) the password."""
        creds = self._credentials
        attempts = [("token", creds.token), ("password", creds.password)]
        error: sig.Error | None = None
        for kind, secret in attempts:
            if secret is None:
                continue
            request = sig.SignIn(
                id=0,
                username=creds.username,
                device_id=self._identity.device_id,
                identity_key=self._identity.public_key_b64,
                status=self._status,
                password=secret if kind == "password" else None,
                token=secret if kind == "token" else None,
            )
            reply = await self._await_reply(websocket, request)
            if isinstance(reply, sig.Welcome):
                self._credentials = Credentials(reply.username, creds.password, reply.token)
                self.username = reply.username
                self.stun_port = reply.stun_port
                self.contacts = {c.username: c for c in reply.contacts}
                self._websocket = websocket
                self._backoff.reset()
                log.info("signed in as %s (%s)", reply.username, kind)
                return ev.SignedIn(reply.username, reply.contacts, reply.stun_port, reconnected)
            error = reply
            if reply.code != ErrorCode.AUTH_FAILED:
                break  # throttled, bad device key...: another secret will not help
        if error is None:
            raise SignInError(ErrorCode.AUTH_FAILED, "No password or saved session to sign in with.")
        raise SignInError(error.code, error.message)

    async def _await_reply(self, websocket: ClientConnection, request: sig.SignIn) -> sig.Welcome | sig.Error:
        try:
            await websocket.send(sig.encode(request))
            async with asyncio.timeout(self._options.request_timeout):
                while True:
                    message = sig.decode_server_message(await websocket.recv())
                    if isinstance(message, sig.Welcome | sig.Error) and message.re == request.id:
                        return message
        except ConnectionClosed as exc:
            raise ServerUnreachable(f"The server closed the connection: {_describe(exc)}") from exc
        except TimeoutError as exc:
            raise ServerUnreachable("The server did not answer the sign-in.") from exc
        except sig.MessageError as exc:
            raise ServerUnreachable(f"The server sent something unreadable: {exc.detail}") from exc

    async def _maintain(self, websocket: ClientConnection) -> None:
        """Read until the connection drops; reconnect with backoff; repeat until closed or final."""
        while True:
            reason = await self._read_until_closed(websocket)
            self._websocket = None
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionClosed(None, None))
            if self._closing:
                return
            final = _FINAL_CLOSE_CODES.get(websocket.close_code or 0)
            if final:
                self._events.put_nowait(ev.SessionEnded(final))
                return
            next_websocket = await self._reconnect(reason)
            if next_websocket is None:
                return
            websocket = next_websocket

    async def _reconnect(self, reason: str) -> ClientConnection | None:
        while not self._closing:
            delay = self._backoff.next_delay()
            self._events.put_nowait(ev.Disconnected(reason, delay))
            log.info("disconnected (%s); reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay)
            try:
                websocket = await self._connect()
            except ServerUnreachable as exc:
                reason = str(exc)
                continue
            try:
                self._events.put_nowait(await self._sign_in(websocket, reconnected=True))
                return websocket
            except ServerUnreachable as exc:
                reason = str(exc)
            except SignInError as exc:
                if exc.code == ErrorCode.THROTTLED:
                    reason = str(exc)
                else:
                    self._events.put_nowait(ev.SessionEnded(str(exc)))
                    await websocket.close()
                    return None
            await websocket.close()
        return None

    async def _read_until_closed(self, websocket: ClientConnection) -> str:
        try:
            async for raw in websocket:
                try:
                    message = sig.decode_server_message(raw)
                except sig.MessageError as exc:
                    log.warning("ignoring an unreadable message from the server: %s", exc.detail)
                    continue
                self._dispatch(message)
        except ConnectionClosed:
            pass
        return _describe_close(websocket)

    def _dispatch(self, message: sig.ServerMessage) -> None:
        if isinstance(message, sig.Ok | sig.Welcome | sig.ContactList | sig.IceServers) or (
            isinstance(message, sig.Error) and message.re is not None
        ):
            future = self._pending.get(message.re) if message.re is not None else None
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, sig.ContactUpdate):
            contact = message.contact
            if contact.relation == "none":
                self.contacts.pop(contact.username, None)
            else:
                self.contacts[contact.username] = contact
            self._events.put_nowait(ev.ContactChanged(contact))
        elif isinstance(message, sig.Presence):
            known = self.contacts.get(message.username)
            if known is not None:
                self.contacts[message.username] = Contact(
                    known.username, known.relation, message.status, message.devices
                )
            self._events.put_nowait(ev.PresenceChanged(message.username, message.status, message.devices))
        elif isinstance(message, sig.Signal):
            self._events.put_nowait(ev.SignalReceived(message.sender, message.sender_device, message.payload))
        elif isinstance(message, sig.Error):
            log.warning("server: %s", message.message)


def server_host(url: str) -> str:
    """The host name in a ``ws://`` or ``wss://`` URL (where the STUN service runs too)."""
    host = urlsplit(url).hostname
    if not host:
        raise ServerUnreachable(f"{url!r} is not a server address (expected ws://host:port).")
    return host


async def connect_to_server(url: str, options: ClientOptions) -> ClientConnection:
    """A WebSocket to the server at ``url``; `ServerUnreachable` with a sentence if there is none."""
    try:
        return await connect(
            url,
            ssl=(options.ssl_context or ssl.create_default_context()) if url.startswith("wss:") else None,
            open_timeout=options.open_timeout,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            max_size=sig.MAX_MESSAGE_BYTES,
            compression=None,
            user_agent_header="punchline",
        )
    except InvalidURI as exc:
        raise ServerUnreachable(f"{url!r} is not a server address (expected ws://host:port).") from exc
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
        raise ServerUnreachable(f"Cannot reach the server at {url}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _describe_close(websocket: ClientConnection) -> str:
    code, reason = websocket.close_code, websocket.close_reason
    if code is None or code == 1006:
        return "the connection was lost"
    if code == 1001:
        return "the server is restarting"
    return f"closed by the server ({code}{': ' + reason if reason else ''})"
