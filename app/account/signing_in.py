"""Creating an account and signing in, with messages for people: what the CLI and the desktop app share.

Qt-free: the sign-in window calls these and shows `AccountError.message` as it is.
"""

from __future__ import annotations

import asyncio
import ssl

from websockets.exceptions import ConnectionClosed

from app.account.identity import DeviceIdentity
from app.errors import PunchlineError
from app.signalling.client import (
    ClientOptions,
    Credentials,
    ServerUnreachable,
    SignallingClient,
    SignInError,
    connect_to_server,
)
from rendezvous.wire import signalling as sig


class AccountError(PunchlineError):
    """Registering or signing in failed; ``message`` says why for people, ``code`` for programs."""

    def __init__(self, message: str, code: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        #: True when the server could not be reached at all (as opposed to refusing).
        self.unreachable = unreachable


def _unreachable(exc: ServerUnreachable) -> AccountError:
    return AccountError(str(exc), "unreachable", unreachable=True)


async def register(
    server: str, username: str, password: str, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Create the account ``username`` on ``server`` (it does not sign in)."""
    try:
        websocket = await connect_to_server(server, ClientOptions(ssl_context=ssl_context))
    except ServerUnreachable as exc:
        raise _unreachable(exc) from exc
    async with websocket:
        try:
            await websocket.send(sig.encode(sig.Register(id=1, username=username, password=password)))
            reply = sig.decode_server_message(await asyncio.wait_for(websocket.recv(), 30))
        except (TimeoutError, ConnectionClosed) as exc:
            raise _unreachable(ServerUnreachable(f"The server at {server} did not answer: {exc}")) from exc
        except sig.MessageError as exc:
            raise AccountError(f"The server sent something unreadable: {exc.detail}", "unreachable") from exc
    if isinstance(reply, sig.Error):
        raise AccountError(reply.message, reply.code)


async def sign_in(
    server: str,
    credentials: Credentials,
    identity: DeviceIdentity,
    *,
    options: ClientOptions | None = None,
) -> SignallingClient:
    """A client signed in to ``server`` (it keeps the connection and reconnects until closed)."""
    client = SignallingClient(server, credentials, identity, options=options or ClientOptions())
    try:
        await client.start()
    except SignInError as exc:
        raise AccountError(str(exc), exc.code) from exc
    except ServerUnreachable as exc:
        raise _unreachable(exc) from exc
    return client
