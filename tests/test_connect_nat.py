"""The punch through real Linux NAT routers: ``punchline-cli connect``/``listen`` in the NAT lab.

Each test builds the lab (tests/natlab), runs our rendezvous server (signalling, STUN and TURN) on the
public segment at 203.0.113.1, and runs the real command line in the client hosts: register, befriend,
``listen`` on one side and ``connect`` on the other, which prints path events and echo round trips as JSON.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.natlab.cli import Line, Peers, read_until
from tests.natlab.fixtures import LabFactory
from tests.natlab.topology import Lab

pytestmark = pytest.mark.slow


async def scenario(
    nat_lab: LabFactory,
    monkeypatch: pytest.MonkeyPatch,
    left: Any,
    right: Any,
    *,
    relay: Callable[[Lab], Awaitable[list[str]]] | None = None,
    **lab_options: Any,
) -> tuple[Peers, list[Line]]:
    """Build the lab, befriend, listen on the right, connect from the left: every line ``connect`` printed.

    ``relay`` starts another TURN server in the lab and returns the rendezvous options that advertise it.
    """
    monkeypatch.setenv("PUNCHLINE_PASSWORD", PASSWORD)
    lab = nat_lab(left, right, **lab_options)
    peers = Peers(lab)
    await peers.start_server(*(await relay(lab) if relay else []))
    await peers.befriend()
    await peers.listen()
    proc = await peers.connect("left", "--count", "10", "--interval", "0.05")
    lines = await read_until(proc, lambda line: line["event"] == "summary", timeout=30)
    return peers, lines


def first_path(lines: list[Line]) -> Line:
    return next(line for line in lines if line["event"] == "path")


@pytest.mark.parametrize(
    ("left", "right", "kind"),
    [("cone", "cone", "direct"), ("public", "cone", "direct"), ("cone", "public", "direct")],
)
async def test_direct_path_through_cone_nats(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, left: str, right: str, kind: str
) -> None:
    _, lines = await scenario(nat_lab, monkeypatch, left, right)
    path = first_path(lines)
    assert path["kind"] == kind, lines
    summary = lines[-1]
    assert summary["received"] == summary["sent"] == 10, lines


async def test_same_lan_is_reported_as_lan(nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _, lines = await scenario(nat_lab, monkeypatch, "cone", None, same_lan=True)
    path = first_path(lines)
    assert path["kind"] == "lan", lines
    assert path["remote"].startswith("10.") or path["remote"].startswith("192.168."), path
    assert lines[-1]["received"] == 10


async def test_symmetric_nats_fall_back_to_the_relay_and_say_why(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, lines = await scenario(nat_lab, monkeypatch, "symmetric", "symmetric")
    path = first_path(lines)
    assert path["kind"] == "relayed", lines
    assert path["reason"], path
    assert lines[-1]["received"] == 10, lines


async def coturn_instead_of_our_relay(lab: Lab) -> list[str]:
    """coturn (Debian's package) on the server at UDP 3479 with our shared secret; our relay switched off."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.skip("coturn's turnserver (Debian: coturn) is not installed")
    lab.work_dir.mkdir(parents=True, exist_ok=True)
    secret_file = lab.work_dir / "turn-secret"
    secret_file.write_text("lab-shared-secret\n")
    secret_file.chmod(0o600)
    ip = lab.server.ip
    await lab.spawn(
        "server", turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--use-auth-secret",
        "--static-auth-secret", "lab-shared-secret", "--realm", "punchline", "--listening-ip", ip,
        "--listening-port", "3479", "--relay-ip", ip, "--min-port", "49152", "--max-port", "65535",
        "--pidfile", str(lab.work_dir / "turnserver.pid"), "--db", str(lab.work_dir / "turndb"),
        "--log-file", str(lab.work_dir / "turnserver.log"), "--simple-log", "--no-stdout-log", "--verbose",
        stdin=False,
    )  # fmt: skip
    return ["--no-turn", "--turn-secret-file", str(secret_file), "--turn-server", f"turn:{ip}:3479"]


async def test_symmetric_nats_relay_through_coturn_in_place_of_ours(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers, lines = await scenario(
        nat_lab, monkeypatch, "symmetric", "symmetric", relay=coturn_instead_of_our_relay
    )
    path = first_path(lines)
    assert path["kind"] == "relayed", lines
    assert lines[-1]["received"] == 10, lines
    # Proof that coturn carried it (our relay is off): coturn logs each allocation (it flushes lazily).
    log_file = peers.lab.work_dir / "turnserver.log"
    deadline = time.monotonic() + 10
    while "ALLOCATE processed, success" not in log_file.read_text(errors="replace"):
        assert time.monotonic() < deadline, log_file.read_text(errors="replace")[-2000:]
        await asyncio.sleep(0.2)


async def test_cone_to_symmetric_connects(nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _, lines = await scenario(nat_lab, monkeypatch, "cone", "symmetric")
    assert first_path(lines)["kind"] in ("direct", "relayed"), lines
    assert lines[-1]["received"] == 10, lines


async def test_a_killed_direct_path_moves_to_the_relay_within_3_seconds(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUNCHLINE_PASSWORD", PASSWORD)
    lab = nat_lab("cone", "cone")
    peers = Peers(lab)
    await peers.start_server()
    await peers.befriend()
    await peers.listen()
    proc = await peers.connect("left", "--count", "300", "--interval", "0.05")
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "direct")
    # Kill the direct path in the left router: nothing more between the two routers' WAN addresses. The
    # relay on the server stays reachable, as when a router's mapping dies or a middlebox starts dropping.
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
    cut_at = time.monotonic()
    lines = await read_until(proc, lambda line: line["event"] == "path_changed", timeout=10)
    switched_after = time.monotonic() - cut_at
    assert lines[-1]["kind"] == "relayed", lines
    assert switched_after < 3.0, f"moved to the relay after {switched_after:.2f} s"
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "relayed")
    await proc.kill()
