"""Run ``punchline-rendezvous`` and ``punchline-cli`` inside the lab, as a user would (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from tests.natlab.process import LabProcess
from tests.natlab.topology import Lab


class PeerError(Exception):
    """A server or CLI command in the lab did not do what it should; the message has its output."""


Line = dict[str, Any]


class Peers:
    """The rendezvous server in the lab and helpers to run the CLI as alice (left) and bob (right)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.url = f"ws://{lab.server.ip}:8765"

    async def start_server(self, *options: str) -> LabProcess:
        """``python -m rendezvous`` on the server host (8765 signalling, 3478 STUN/TURN), once it listens."""
        server = await self.lab.spawn(
            "server", "python", "-m", "rendezvous", "--host", self.lab.server.ip, "--port", "8765",
            "--stun-port", "3478", "--data", str(self.lab.work_dir / "server-data"), *options,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while '"event":"listening"' not in server.stderr_text():  # its log goes to stderr
            if time.monotonic() > deadline or server.proc.returncode is not None:
                raise PeerError(f"the rendezvous server did not start:\n{server.stderr_text()}")
            await asyncio.sleep(0.05)
        return server

    def argv(self, user: str, *args: str) -> list[str]:
        """The ``punchline-cli`` command line for ``user`` (own config dir, JSON output)."""
        config = str(self.lab.work_dir / f"config-{user}")
        return ["python", "-m", "app.cli.main", "--server", self.url, "--user", user, "--config-dir", config,
                "--json", *args]  # fmt: skip

    async def run(self, host: str, user: str, *args: str) -> list[Line]:
        """Run one CLI command to completion; raise `PeerError` if it fails."""
        proc = await self.lab.spawn(host, *self.argv(user, *args), stdin=False)
        assert proc.proc.stdout is not None
        out = await asyncio.wait_for(proc.proc.stdout.read(), 60)
        status = await proc.wait(10)
        lines = [json.loads(text) for text in out.decode().splitlines() if text.strip()]
        if status != 0:
            raise PeerError(f"{user} {args}: exit {status}: {lines}\n{proc.stderr_text()}")
        return lines

    async def befriend(self, alice_host: str = "left", bob_host: str = "right") -> None:
        """Register alice and bob and make them mutual contacts."""
        await self.run(alice_host, "alice", "register")
        await self.run(bob_host, "bob", "register")
        await self.run(alice_host, "alice", "add", "bob")
        await self.run(bob_host, "bob", "accept", "alice")

    async def listen(self, host: str = "right", *options: str) -> LabProcess:
        """Start ``listen`` as bob; return once it says it is listening."""
        listener = await self.lab.spawn(host, *self.argv("bob", "listen", *options), stdin=False)
        line = json.loads(await listener.read_line(15))
        if line["event"] != "listening":
            raise PeerError(f"listen printed {line}")
        return listener

    async def connect(self, host: str = "left", *options: str) -> LabProcess:
        """Start ``connect bob`` as alice (read its lines with `read_until`)."""
        return await self.lab.spawn(host, *self.argv("alice", "connect", "bob", *options), stdin=False)


async def read_until(proc: LabProcess, done: Callable[[Line], bool], timeout: float = 20) -> list[Line]:
    """JSON lines up to and including the first for which ``done`` holds."""
    lines: list[Line] = []
    deadline = time.monotonic() + timeout
    while True:
        line = json.loads(await proc.read_line(max(0.1, deadline - time.monotonic())))
        lines.append(line)
        if line.get("event") == "error":
            raise PeerError(f"connect failed: {line}\n{proc.stderr_text()}")
        if done(line):
            return lines
