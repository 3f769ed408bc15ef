"""Calls through real Linux NAT routers: ``punchline-cli call`` to ``listen --answer`` in the NAT lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.natlab.cli import listening, read_until
from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.tone import pitch, segment, write_tone

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("kinds", "kind"),
    [(("cone", "cone"), "direct"), (("symmetric", "symmetric"), "relayed")],
    ids=["cone", "sym"],
)
async def test_a_call_carries_audio_both_ways(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kinds: tuple[str, str], kind: str
) -> None:
    write_tone(tmp_path / "alice.wav", 440, 5)
    write_tone(tmp_path / "bob.wav", 1000, 5)
    options = ("--answer", "--mic", str(tmp_path / "bob.wav"), "--record", str(tmp_path / "bob-hears.wav"))
    peers = await listening(nat_lab, monkeypatch, *kinds, listen_options=options, delay_ms=10)
    caller = await peers.lab.spawn(
        "left",
        *peers.argv(
            "alice", "call", "bob", "--mic", str(tmp_path / "alice.wav"),
            "--record", str(tmp_path / "alice-hears.wav"), "--seconds", "3",
        ),
        stdin=False,
    )  # fmt: skip
    lines = await read_until(caller, lambda line: line["event"] == "call_ended", timeout=30)
    assert await caller.wait(10) == 0, caller.stderr_text()
    paths = [line for line in lines if line["event"] == "path"]
    assert paths[0]["kind"] == kind
    assert lines[-1]["message"] == "You hung up."
    stats = [line for line in lines if line["event"] == "call_stats"]
    assert stats
    assert stats[-1]["rtt_ms"] is not None
    assert 35 <= stats[-1]["rtt_ms"] <= 80  # 10 ms each way on each WAN link
    assert stats[-1]["concealed"] <= 3
    assert peers.listener is not None
    heard = await read_until(peers.listener, lambda line: line["event"] == "call_ended", timeout=10)
    assert heard[-1]["message"] == "alice hung up."
    assert 950 < pitch(segment(tmp_path / "alice-hears.wav", 1.0, 2.0)) < 1050
    assert 420 < pitch(segment(tmp_path / "bob-hears.wav", 1.0, 2.0)) < 460


async def test_a_call_ends_when_the_peer_vanishes(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tone(tmp_path / "alice.wav", 440, 60)
    write_tone(tmp_path / "bob.wav", 1000, 60)
    options = ("--answer", "--mic", str(tmp_path / "bob.wav"), "--record", str(tmp_path / "bob-hears.wav"))
    peers = await listening(nat_lab, monkeypatch, "cone", "cone", listen_options=options)
    caller = await peers.lab.spawn(
        "left",
        *peers.argv(
            "alice", "call", "bob", "--mic", str(tmp_path / "alice.wav"),
            "--record", str(tmp_path / "alice-hears.wav"),
        ),
        stdin=False,
    )  # fmt: skip
    await read_until(caller, lambda line: line["event"] == "call_stats", timeout=30)
    peers.lab.link_down("left_nat")  # alice's router loses its uplink for good
    lines = await read_until(caller, lambda line: line["event"] == "call_ended", timeout=40)
    assert lines[-1]["message"] == "The connection to bob was lost."
    assert await caller.wait(10) == 3  # unreachable
    assert peers.listener is not None
    heard = await read_until(peers.listener, lambda line: line["event"] == "call_ended", timeout=30)
    assert heard[-1]["reason"] in ("vanished", "closed")
