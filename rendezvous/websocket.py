"""The WebSocket adapter: frames in → decode → `SignallingService.handle`; replies and pushes out.

It makes no protocol decisions. Per connection it enforces the transport limits: the size cap (websockets
closes with 1009), a token-bucket rate limit, a sign-in deadline, and an outbox bound for clients that do
not read. Keepalive is WebSocket ping/pong, done by the websockets library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from rendezvous.config import Limits
from rendezvous.log import log_event
from rendezvous.service import SignallingService
from rendezvous.throttle import TokenBucket
from rendezvous.wire import signalling as sig

log = logging.getLogger("punchline.rendezvous")

CLOSE_POLICY = 1008  # RFC 6455 §7.4.1: a message that violates policy
CLOSE_TRY_LATER = 1013
CLOSE_SIGN_IN_DEADLINE = 4003
CLOSE_TOO_SLOW = 4004
OUTBOX_LIMIT = 1000  # queued messages for one client before it counts as not reading


class WebSocketClient:
    """One WebSocket connection, as a `rendezvous.service.Connection`: sends are queued, never awaited."""

    def __init__(self, websocket: ServerConnection) -> None:
        self._websocket = websocket
        address = websocket.remote_address
        self._remote = str(address[0]) if address else "unknown"
        self._host = _connected_host(websocket)
        self._outbox: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue()
        self.closing = False

    @property
    def remote(self) -> str:
        """The client's IP address."""
        return self._remote

    @property
    def host(self) -> str:
        """The host the client connected to: the Host header's name, else our socket's address."""
        return self._host

    def send(self, message: sig.ServerMessage) -> None:
        """Queue ``message``; a client whose queue overflows is disconnected."""
        if self.closing:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            self.close(CLOSE_TOO_SLOW, "Not reading messages fast enough.")
            return
        self._outbox.put_nowait(sig.encode(message))

    def close(self, code: int, reason: str) -> None:
        """Close after the messages already queued."""
        if not self.closing:
            self.closing = True
            self._outbox.put_nowait((code, reason))

    async def write_loop(self) -> None:
        """Send queued messages in order until a close is queued or the connection drops."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                item = await self._outbox.get()
                if isinstance(item, tuple):
                    await self._websocket.close(*item)
                    return
                await self._websocket.send(item)


class ConnectionHandler:
    """The websockets handler: runs one connection from open to close."""

    def __init__(self, service: SignallingService, limits: Limits, clock: Callable[[], float]) -> None:
        self._service = service
        self._limits = limits
        self._clock = clock
        self.open_connections = 0

    async def __call__(self, websocket: ServerConnection) -> None:
        client = WebSocketClient(websocket)
        writer = asyncio.create_task(client.write_loop())
        self.open_connections += 1
        deadline = asyncio.get_running_loop().call_later(
            self._limits.sign_in_deadline, self._deadline, client
        )
        try:
            if self.open_connections > self._limits.max_connections:
                client.close(CLOSE_TRY_LATER, "The server is full; try again later.")
            else:
                await self._read_loop(websocket, client)
        finally:
            self.open_connections -= 1
            deadline.cancel()
            self._service.disconnected(client)
            client.close(1000, "")
            await writer

    async def _read_loop(self, websocket: ServerConnection, client: WebSocketClient) -> None:
        bucket = TokenBucket(self._limits.messages_per_second, self._limits.message_burst, self._clock())
        violations = 0
        with contextlib.suppress(ConnectionClosed):
            async for raw in websocket:
                if client.closing:
                    return
                if not bucket.allow(self._clock()):
                    violations += 1
                    if violations > self._limits.rate_violations_before_close:
                        log_event(log, "closed_for_flooding", remote=client.remote)
                        client.close(CLOSE_POLICY, "Too many messages.")
                        return
                    client.send(
                        sig.Error(
                            re=sig.request_id_of(raw),
                            code=sig.ErrorCode.RATE_LIMITED,
                            message="Too many messages; slow down.",
                        )
                    )
                    continue
                try:
                    message = sig.decode_client_message(raw)
                except sig.MessageError as exc:
                    client.send(sig.Error(re=sig.request_id_of(raw), code=exc.code, message=exc.detail))
                    continue
                await self._service.handle(client, message)

    def _deadline(self, client: WebSocketClient) -> None:
        if not self._service.is_signed_in(client):
            client.close(CLOSE_SIGN_IN_DEADLINE, "Sign in within the time allowed.")


def _connected_host(websocket: ServerConnection) -> str:
    """The host part of the request's Host header (RFC 9110 §7.2), or the local socket address."""
    request = websocket.request
    header = request.headers.get("Host", "") if request is not None else ""
    host = urlsplit(f"//{header}").hostname if header else None
    if host:
        return host
    local = websocket.local_address
    return str(local[0]) if local else "localhost"
