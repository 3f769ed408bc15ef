"""Run ``punchline-rendezvous`` and ``punchline-cli`` inside the lab, as a user would (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.natlab.process import LabProcess
from tests.helpers.natlab.topology import Lab
from tests.helpers.poll import until
from tests.helpers.server import PASSWORD


class PeerError(Exception):
    """A server or CLI command in the lab did not do what it should; the message has its output."""


Line = dict[str, Any]


class Peers:
    """The rendezvous server in the lab and helpers to run the CLI as alice (left) and bob (right)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.url = f"ws://{lab.server.ip}:8765"
        self.listener: LabProcess | None = None  # the last `listen` started

    async def start_server(self, *options: str) -> LabProcess:
        """``python -m rendezvous`` on the server host (8765 signalling, 3478 STUN/TURN), once it listens."""
        server = await self.lab.spawn(
            "server", "python", "-m", "rendezvous", "--host", self.lab.server.ip, "--port", "8765",
            "--stun-port", "3478", "--data", str(self.lab.work_dir / "server-data"), *options,
        )  # fmt: skip

        def up() -> bool:
            return '"event":"listening"' in server.stderr_text()  # its log goes to stderr

        with contextlib.suppress(TimeoutError):
            await until(lambda: up() or server.proc.returncode is not None, 15, "the server")
        if not up():
            raise PeerError(f"the rendezvous server did not start:\n{server.stderr_text()}")
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

    async def send(self, *args: str, host: str = "left") -> LabProcess:
        """Start ``send ARGS... --to bob`` as alice (read its lines with `read_until`)."""
        return await self.lab.spawn(host, *self.argv("alice", "send", *args, "--to", "bob"), stdin=False)

    async def listen(self, host: str = "right", *options: str) -> LabProcess:
        """Start ``listen`` as bob; return once it says it is listening."""
        listener = await self.lab.spawn(host, *self.argv("bob", "listen", *options), stdin=False)
        self.listener = listener
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


async def listening(
    nat_lab: LabFactory,
    monkeypatch: pytest.MonkeyPatch,
    left: Any,
    right: Any,
    *,
    relay: Callable[[Lab], Awaitable[list[str]]] | None = None,
    listen_options: tuple[str, ...] = (),
    **lab_options: Any,
) -> Peers:
    """Build the lab, start the server, befriend alice (left) and bob (right), and have bob ``listen``.

    ``relay`` starts another TURN server in the lab and returns the rendezvous options that advertise it.
    """
    monkeypatch.setenv("PUNCHLINE_PASSWORD", PASSWORD)
    lab = nat_lab(left, right, **lab_options)
    peers = Peers(lab)
    await peers.start_server(*(await relay(lab) if relay else []))
    await peers.befriend()
    await peers.listen("right", *listen_options)
    return peers


async def receiving(
    nat_lab: LabFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kinds: tuple[str, str],
    **lab_options: Any,
) -> tuple[Peers, Path]:
    """The lab with bob listening and accepting files from alice into a downloads folder."""
    downloads = tmp_path / "downloads"
    options = ("--accept-files", str(downloads), "--from", "alice")
    peers = await listening(nat_lab, monkeypatch, *kinds, listen_options=options, **lab_options)
    return peers, downloads


#: A transfer to interrupt: a file of BIG bytes over WAN links of RATE_KBIT takes ~5 s (2.5 MB/s).
BIG = 12 * 1024 * 1024
RATE_KBIT = 20_000


def cut_between_routers(lab: Lab) -> None:
    """In the left router: drop everything between the two routers' WAN addresses (the relay stays up)."""
    peer_wan = lab.router_of("right").wan_ip
    lab.nft(
        "left_nat",
        f"""table inet cut {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {peer_wan} drop
        ip saddr {peer_wan} drop
    }}
}}
""",
    )
