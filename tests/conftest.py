"""Fixtures shared by the tests: a real rendezvous server on ephemeral ports and signed-in clients."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.account.identity import DeviceIdentity
from app.backoff import Backoff, BackoffPolicy
from app.signalling.client import ClientOptions, Credentials, SignallingClient
from rendezvous.config import Limits, ServerConfig
from rendezvous.server import RendezvousServer
from rendezvous.turn_relay import TurnRelay, start_turn_relay
from rendezvous.wire import signalling as sig

# Qt windows in tests draw offscreen: no display needed (the screenshot script uses Xvfb and xcb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from tests.turn_helpers import SECRET, turn_config

# The NAT lab's fixtures (`nat_lab`): network namespaces with real Linux NAT routers, see tests/natlab.
pytest_plugins = ["tests.natlab.fixtures"]

PASSWORD = "correct horse battery"  # strong enough for the server's rules


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """The desktop app's tests run in the app's own loop (qasync: Qt's timers and events work as in the
    app); the others in asyncio's default loop."""
    module = getattr(item, "module", None)
    if module is not None and module.__name__.startswith(("tests.test_gui", "tests.test_qt_loop")):
        return {"qt": _qt_loop}
    return {"asyncio": asyncio.new_event_loop}


def _qt_loop() -> asyncio.AbstractEventLoop:
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)  # as in the app: closing a test's windows must not stop the loop
    loop: asyncio.AbstractEventLoop = qasync.QEventLoop(app)
    return loop


def server_config(data_dir: Path, **limits: Any) -> ServerConfig:
    """A config for tests: loopback, ephemeral ports, registrations not throttled."""
    limits.setdefault("registrations_per_ip_per_hour", 10_000)
    return ServerConfig(host="127.0.0.1", port=0, stun_port=0, data_dir=data_dir, limits=Limits(**limits))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RendezvousServer]:
    """A real server with a fresh database, closed after the test."""
    async with await RendezvousServer.start(server_config(tmp_path / "server")) as running:
        yield running


@pytest.fixture
async def relay() -> AsyncIterator[TurnRelay]:
    """Our TURN relay alone on an ephemeral port of 127.0.0.1, relay ports 40000-48999."""
    server = await start_turn_relay(
        turn_config(min_port=40000, max_port=48999), host="127.0.0.1", port=0, secret=SECRET
    )
    yield server
    server.close()
    await asyncio.sleep(0)


async def register(url: str, username: str, password: str = PASSWORD) -> None:
    """Create an account through the real protocol; fail the test if the server refuses."""
    async with connect(url) as ws:
        await ws.send(sig.encode(sig.Register(id=1, username=username, password=password)))
        reply = sig.decode_server_message(await ws.recv())
    assert isinstance(reply, sig.Ok), reply


def fast_backoff() -> Backoff:
    """Reconnect quickly in tests (real backoff and jitter, small numbers)."""
    return Backoff(BackoffPolicy(initial=0.05, factor=2.0, maximum=0.5))


MakeClient = Callable[..., Awaitable[SignallingClient]]


@pytest.fixture
async def make_client(server: RendezvousServer) -> AsyncIterator[MakeClient]:
    """Factory: register (unless told not to) and sign in a user with a fresh device identity."""
    clients: list[SignallingClient] = []

    async def make(
        username: str,
        *,
        new_account: bool = True,
        identity: DeviceIdentity | None = None,
        url: str | None = None,
    ) -> SignallingClient:
        if new_account:
            await register(url or server.url, username)
        client = SignallingClient(
            url or server.url,
            Credentials(username, password=PASSWORD),
            identity or DeviceIdentity.generate(),
            backoff=fast_backoff(),
            options=ClientOptions(request_timeout=5.0),
        )
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


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


@pytest.fixture
async def raw(server: RendezvousServer) -> AsyncIterator[RawClient]:
    """An unauthenticated raw connection to the server."""
    async with connect(server.url, max_size=None) as ws:
        yield RawClient(ws)


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


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``condition()`` holds (polling a counter that has no event to wait on)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the value itself
            await asyncio.sleep(0.01)
