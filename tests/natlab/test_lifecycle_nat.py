"""What a person meets through real NAT routers, through the one core (``punchline-cli`` runs `PeerHub`).

A ringing call lasts until "no answer" at 45 s, on a session that idles through routers that forget UDP
mappings after 5 s, and the callee hears that it missed the call; a caller who gives up stops the callee's
ringing; a receiver who quits mid-transfer is waited for, with the reason said, and the send resumes by
itself when they are back, without a second offer being accepted from zero.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.helpers.files import make_folder, tree_digest
from tests.helpers.natlab.cli import BIG, RATE_KBIT, Line, Peers, listening, read_until, receiving
from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.natlab.process import LabProcess
from tests.helpers.tone import write_tone

pytestmark = pytest.mark.slow


def ended(lines: list[Line]) -> Line:
    return next(line for line in lines if line["event"] == "call_ended")


async def _ringing_lab(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Peers, LabProcess]:
    write_tone(tmp_path / "alice.wav", 440, 60)
    peers = await listening(
        nat_lab, monkeypatch, "cone", "cone", listen_options=("--let-ring",), udp_timeout=5
    )
    caller = await peers.lab.spawn(
        "left",
        *peers.argv(
            "alice", "call", "bob", "--mic", str(tmp_path / "alice.wav"), "--record", str(tmp_path / "a.wav")
        ),
        stdin=False,
    )  # fmt: skip
    return peers, caller


async def test_an_unanswered_call_rings_until_no_answer_at_45_seconds(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, caller = await _ringing_lab(nat_lab, monkeypatch, tmp_path)
    lines = await read_until(caller, lambda line: line["event"] == "ringing", timeout=30)
    rang = time.monotonic()
    assert peers.listener is not None
    heard = await read_until(peers.listener, lambda line: line["event"] == "ringing", timeout=10)
    assert heard[-1]["direction"] == "in"
    lines += await read_until(caller, lambda line: line["event"] == "call_ended", timeout=60)
    took = time.monotonic() - rang
    assert ended(lines)["reason"] == "no answer", lines
    assert ended(lines)["message"] == "bob did not answer."
    assert 43 <= took <= 50, took  # the session idled 45 s through 5 s UDP timeouts and lived
    assert not [line for line in lines if line["event"] == "session_ended"]
    assert await caller.wait(10) == 1
    missed = await read_until(peers.listener, lambda line: line["event"] == "call_ended", timeout=10)
    assert ended(missed)["reason"] == "no answer"
    assert "missed a call from alice" in ended(missed)["message"]


async def test_a_caller_who_gives_up_stops_the_ringing(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, caller = await _ringing_lab(nat_lab, monkeypatch, tmp_path)
    await read_until(caller, lambda line: line["event"] == "ringing", timeout=30)
    assert peers.listener is not None
    await read_until(peers.listener, lambda line: line["event"] == "ringing", timeout=10)
    caller.interrupt()  # Ctrl-C while it rings
    missed = await read_until(peers.listener, lambda line: line["event"] == "call_ended", timeout=10)
    assert ended(missed)["reason"] == "cancelled", missed
    assert "alice" in ended(missed)["message"]
    assert await caller.wait(10) == 130


async def test_a_receiver_who_quits_is_waited_for_and_the_send_resumes_when_back(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("cone", "cone"), rate_kbit=RATE_KBIT)
    folder = make_folder(tmp_path, BIG)
    sender = await peers.send(str(folder))
    await read_until(sender, lambda line: line["event"] == "progress" and line["bytes"] > 5_000_000)
    assert peers.listener is not None
    peers.listener.interrupt()  # bob quits (Ctrl-C): a clean goodbye, the partial files stay
    assert await peers.listener.wait(10) == 130
    waiting = await read_until(sender, lambda line: line["event"] == "retrying", timeout=30)
    assert "bob" in waiting[-1]["reason"], waiting[-1]
    await asyncio.sleep(8)  # bob stays away a while; alice keeps waiting
    await peers.listen("right", "--accept-files", str(downloads), "--from", "alice")
    lines = await read_until(sender, lambda line: line["event"] == "finished", timeout=120)
    assert await sender.wait(10) == 0
    assert tree_digest(downloads / "holiday") == tree_digest(folder)
    accepted = [line for line in lines if line["event"] == "accepted"]
    assert accepted[-1]["resume_bytes"] > 2_000_000, accepted  # resumed, not sent again from zero
