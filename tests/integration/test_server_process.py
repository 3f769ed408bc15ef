"""``punchline-rendezvous`` as people run it: a subprocess logging JSON lines, stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.account.identity import DeviceIdentity
from app.signalling.client import Credentials, SignallingClient
from tests.helpers.server import PASSWORD, register


class ServerProcess:
    """A running ``punchline-rendezvous`` with its log lines collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []

    async def wait_for(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = (await self.process.stderr.readline()).decode()
                if not raw:
                    raise AssertionError(f"server exited before logging {event!r}: {self.raw}")
                self.raw.append(raw)
                line: dict[str, Any] = json.loads(raw)
                self.lines.append(line)
                if line["event"] == event:
                    return line


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rendezvous",
        "--port",
        "0",
        "--stun-port",
        "0",
        "--data",
        str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
    )
    running = ServerProcess(process)
    yield running
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_runs_logs_without_secrets_and_stops_on_sigterm(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    listening = await server_process.wait_for("listening")
    url = listening["url"]
    assert url.startswith("ws://127.0.0.1:")
    assert isinstance(listening["stun_port"], int)
    assert (tmp_path / "data" / "rendezvous.sqlite3").exists()

    await register(url, "alice")
    client = SignallingClient(url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate())
    await client.start()
    token = client.token
    assert token
    signed_in = await server_process.wait_for("signed_in")
    assert signed_in["user"] == "alice"
    assert signed_in["level"] == "info"

    server_process.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server_process.process.wait(), 10) == 0
    await server_process.wait_for("stopped")
    await client.close()
    log_text = "".join(server_process.raw)
    assert PASSWORD not in log_text
    assert token not in log_text


async def test_port_in_use_is_a_clear_error(server_process: ServerProcess, tmp_path: Path) -> None:
    listening = await server_process.wait_for("listening")
    port = listening["url"].rsplit(":", 1)[1]
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rendezvous",
        "--port",
        port,
        "--stun-port",
        "off",
        "--data",
        str(tmp_path / "other"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(second.communicate(), 10)
    assert second.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in stderr.decode()
    assert "--port" in stderr.decode()
