"""The punch through real Linux NAT routers: ``punchline-cli connect``/``listen`` in the NAT lab.

Each test builds the lab (tests/helpers/natlab), runs our rendezvous server (signalling, STUN and TURN) on the
public segment at 203.0.113.1, and runs the real command line in the client hosts: register, befriend,
``listen`` on one side and ``connect`` on the other, which prints path events and echo round trips as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.helpers.natlab.cli import Line, Peers, cut_between_routers, listening, read_until
from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.natlab.topology import Lab
from tests.helpers.poll import until

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
    """`listening`, then connect from the left: every line ``connect`` printed up to its summary."""
    peers = await listening(nat_lab, monkeypatch, left, right, relay=relay, **lab_options)
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


async def coturn_instead_of_our_relay(lab: Lab, *, tcp: bool = False) -> list[str]:
    """coturn (Debian's package) on the server at 3479 with our shared secret; our relay switched off.

    UDP only, unless ``tcp``: then coturn also listens on TCP 3479 and is advertised with both URLs.
    """
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.skip("coturn's turnserver (Debian: coturn) is not installed")
    lab.work_dir.mkdir(parents=True, exist_ok=True)
    secret_file = lab.work_dir / "turn-secret"
    secret_file.write_text("lab-shared-secret\n")
    secret_file.chmod(0o600)
    ip = lab.server.ip
    await lab.spawn(
        "server", turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls", *([] if tcp else ["--no-tcp"]),
        "--use-auth-secret",
        "--static-auth-secret", "lab-shared-secret", "--realm", "punchline", "--listening-ip", ip,
        "--listening-port", "3479", "--relay-ip", ip, "--min-port", "49152", "--max-port", "65535",
        "--pidfile", str(lab.work_dir / "turnserver.pid"), "--db", str(lab.work_dir / "turndb"),
        "--log-file", str(lab.work_dir / "turnserver.log"), "--simple-log", "--no-stdout-log", "--verbose",
        stdin=False,
    )  # fmt: skip
    urls = [f"turn:{ip}:3479?transport=udp", *([f"turn:{ip}:3479?transport=tcp"] if tcp else [])]
    return [
        "--no-turn",
        "--turn-secret-file",
        str(secret_file),
        *(a for u in urls for a in ("--turn-server", u)),
    ]


async def coturn_over_tcp(lab: Lab) -> list[str]:
    """`coturn_instead_of_our_relay` with TURN over TCP on."""
    return await coturn_instead_of_our_relay(lab, tcp=True)


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

    def log() -> str:
        return log_file.read_text(errors="replace")

    with contextlib.suppress(TimeoutError):
        await until(lambda: "ALLOCATE processed, success" in log(), 10, "coturn's allocation")
    assert "ALLOCATE processed, success" in log(), log()[-2000:]


@pytest.mark.parametrize("relay", [None, coturn_over_tcp], ids=["our relay", "coturn"])
async def test_a_network_without_outbound_udp_is_relayed_over_tcp(
    nat_lab: LabFactory,
    monkeypatch: pytest.MonkeyPatch,
    relay: Callable[[Lab], Awaitable[list[str]]] | None,
) -> None:
    """The left router forwards no UDP at all: no STUN, no punching; TURN over TCP to the relay carries it."""
    _, lines = await scenario(nat_lab, monkeypatch, "udp_blocked", "cone", relay=relay)
    path = first_path(lines)
    assert path["kind"] == "relayed", lines
    assert path["relay_transport"] == "tcp", path
    assert path["reason"] == "our network lets no UDP out: the relay is reached over TCP", path
    assert lines[-1]["received"] == lines[-1]["sent"] == 10, lines


async def test_cone_to_symmetric_connects(nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    _, lines = await scenario(nat_lab, monkeypatch, "cone", "symmetric")
    assert first_path(lines)["kind"] in ("direct", "relayed"), lines
    assert lines[-1]["received"] == 10, lines


async def test_a_killed_direct_path_moves_to_the_relay_within_3_seconds(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    peers = await listening(nat_lab, monkeypatch, "cone", "cone")
    lab = peers.lab
    proc = await peers.connect("left", "--count", "300", "--interval", "0.05")
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "direct")
    # Kill the direct path in the left router: nothing more between the two routers' WAN addresses. The
    # relay on the server stays reachable, as when a router's mapping dies or a middlebox starts dropping.
    cut_between_routers(lab)
    cut_at = time.monotonic()
    lines = await read_until(proc, lambda line: line["event"] == "path_changed", timeout=10)
    switched_after = time.monotonic() - cut_at
    assert lines[-1]["kind"] == "relayed", lines
    assert switched_after < 3.0, f"moved to the relay after {switched_after:.2f} s"
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "relayed")
    await proc.kill()


async def test_relay_first_then_the_live_traffic_moves_to_a_direct_path(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct is blocked at first: the call starts relayed, and moves to direct once the block lifts."""
    peers = await listening(nat_lab, monkeypatch, "cone", "cone")
    lab = peers.lab
    cut_between_routers(lab)
    proc = await peers.connect("left", "--count", "400", "--interval", "0.05")
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "relayed")
    await asyncio.sleep(2)  # the call runs relayed while direct checks fail in the background
    lab.nft("left_nat", "delete table inet cut\n")
    lines = await read_until(proc, lambda line: line["event"] == "path_changed", timeout=20)
    assert lines[-1]["kind"] == "direct", lines
    lines = await read_until(proc, lambda line: line["event"] == "echo" and line["kind"] == "direct")
    await proc.kill()


async def test_short_nat_timeouts_do_not_close_an_idle_direct_path(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Routers forget UDP mappings after 3 s; echoes 5 s apart still go direct: the checks hold the hole."""
    peers = await listening(nat_lab, monkeypatch, "cone", "cone")
    for router in ("left_nat", "right_nat"):
        peers.lab.set_udp_timeouts(router, 3)
    proc = await peers.connect("left", "--count", "3", "--interval", "5")
    lines = await read_until(proc, lambda line: line["event"] == "summary", timeout=40)
    assert first_path(lines)["kind"] == "direct", lines
    assert not [line for line in lines if line["event"] == "path_changed"], lines
    assert [line["kind"] for line in lines if line["event"] == "echo"] == ["direct"] * 3, lines
    assert lines[-1]["received"] == 3, lines
