"""Creating an account and signing in, with messages for people: what the CLI and the desktop app share.

Qt-free: the sign-in window calls these and shows `AccountError.message` as it is.
"""

from __future__ import annotations

import asyncio
import ssl

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from app.identity import DeviceIdentity
from app.signalling.client import ClientOptions, ConnectError, Credentials, SignallingClient, SignInError
from rendezvous.wire import signalling as sig


class AccountError(Exception):
    """Registering or signing in failed; ``message`` says why for people, ``code`` for programs."""

    def __init__(self, message: str, code: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        #: True when the server could not be reached at all (as opposed to refusing).
        self.unreachable = unreachable


def _unreachable(server: str, detail: object) -> AccountError:
    return AccountError(
        f"Cannot reach the server at {server}: {detail}. Check the address and your connection.",
        "unreachable",
        unreachable=True,
    )


async def register(
    server: str, username: str, password: str, *, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Create the account ``username`` on ``server`` (it does not sign in)."""
    try:
        async with connect(server, ssl=ssl_context, open_timeout=10, compression=None) as websocket:
            await websocket.send(sig.encode(sig.Register(id=1, username=username, password=password)))
            reply = sig.decode_server_message(await asyncio.wait_for(websocket.recv(), 30))
    except InvalidURI as exc:
        message = f"{server!r} is not a server address (expected ws://host:port)."
        raise AccountError(message, "bad_url") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise _unreachable(server, exc) from exc
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
    except ConnectError as exc:
        raise _unreachable(server, exc) from exc
    return client
