"""Fixtures and hooks shared by every folder: a real rendezvous server on ephemeral ports, signed-in
clients, our TURN relay, the NAT lab's ``nat_lab``, and the Qt loop for tests/gui. What they are built from
lives in tests/helpers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# hypothesis's pytest plugin imports hypothesis in its end-of-session summary when no test did (a run of
# tests/integration or tests/gui alone); pytest compiles it then (assertion rewriting), and after the GUI
# tests that compile can fail on CPython 3.11.7 with "SystemError: AST constructor recursion depth
# mismatch" (cpython gh-106905; a garbage collection first avoids it) instead of printing the summary.
# Imported here, it is compiled while the session is young.
import hypothesis  # noqa: F401
import pytest
from websockets.asyncio.client import connect

from app.account.identity import DeviceIdentity
from app.signalling.client import ClientOptions, Credentials, SignallingClient
from rendezvous.server import RendezvousServer
from rendezvous.turn_relay import TurnRelay, start_turn_relay

# Qt windows in tests draw offscreen: no display needed (the screenshot script uses Xvfb and xcb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from tests.helpers.server import PASSWORD, MakeClient, RawClient, fast_backoff, register, server_config
from tests.helpers.turn import SECRET, turn_config

# The NAT lab's fixture (`nat_lab`): network namespaces with real Linux NAT routers (tests/helpers/natlab).
pytest_plugins = ["tests.helpers.natlab.fixtures"]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """The desktop app's tests (tests/gui) run in the app's own loop (qasync: Qt's timers and events work
    as in the app); the others in asyncio's default loop."""
    module = getattr(item, "module", None)
    if module is not None and module.__name__.startswith("tests.gui."):
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


@pytest.fixture
async def raw(server: RendezvousServer) -> AsyncIterator[RawClient]:
    """An unauthenticated raw connection to the server."""
    async with connect(server.url, max_size=None) as ws:
        yield RawClient(ws)
