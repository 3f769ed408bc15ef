"""The rendezvous server and signalling clients in tests: config, accounts, raw connections, event waits.

tests/conftest.py builds its fixtures (``server``, ``make_client``, ``raw``) from these.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from app.backoff import Backoff, BackoffPolicy
from app.signalling.client import SignallingClient
from rendezvous.config import Limits, ServerConfig
from rendezvous.wire import signalling as sig

PASSWORD = "correct horse battery"  # strong enough for the server's rules

#: The ``make_client`` fixture: ``await make_client("alice", new_account=True, identity=None, url=None)``.
MakeClient = Callable[..., Awaitable[SignallingClient]]


def server_config(data_dir: Path, **limits: Any) -> ServerConfig:
    """A config for tests: loopback, ephemeral ports, registrations not throttled."""
    limits.setdefault("registrations_per_ip_per_hour", 10_000)
    return ServerConfig(host="127.0.0.1", port=0, stun_port=0, data_dir=data_dir, limits=Limits(**limits))


async def register(url: str, username: str, password: str = PASSWORD) -> None:
    """Create an account through the real protocol; fail the test if the server refuses."""
    async with connect(url) as ws:
        await ws.send(sig.encode(sig.Register(id=1, username=username, password=password)))
        reply = sig.decode_server_message(await ws.recv())
    assert isinstance(reply, sig.Ok), reply


def fast_backoff() -> Backoff:
    """Reconnect quickly in tests (real backoff and jitter, small numbers)."""
    return Backoff(BackoffPolicy(initial=0.05, factor=2.0, maximum=0.5))


class RawClient:
    """A bare WebSocket speaking JSON, for feeding the server bad input."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send_json(self, body: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(body))

    async def recv_json(self) -> dict[str, Any]:
        data = json.loads(await self.ws.recv())
        assert isinstance(data, dict)
        return data

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        await self.send_json({"v": 1, "type": type_, "id": 7, **fields})
        return await self.recv_json()


async def next_matching(
    client: SignallingClient, predicate: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """Consume the client's events until one satisfies ``predicate``; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if predicate(event):
                return event


async def no_event_within(client: SignallingClient, predicate: Callable[[Any], bool], seconds: float) -> None:
    """Assert that no event satisfying ``predicate`` arrives within ``seconds``."""
    try:
        event = await next_matching(client, predicate, seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected event {event}")
