"""File transfer through real Linux NAT routers: ``punchline-cli send`` and ``listen --accept-files``.

The lab (tests/helpers/natlab) runs our rendezvous server on the public segment and the real command line
behind the routers, as in tests/natlab/test_connect_nat.py; here alice sends and bob receives into a folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.files import make_folder, tree_digest
from tests.helpers.natlab.cli import (
    BIG,
    RATE_KBIT,
    Line,
    PeerError,
    cut_between_routers,
    read_until,
    receiving,
)
from tests.helpers.natlab.fixtures import LabFactory

pytestmark = pytest.mark.slow


def finished(lines: list[Line]) -> Line:
    return next(line for line in lines if line["event"] == "finished")


@pytest.mark.parametrize(
    ("kinds", "kind"),
    [(("cone", "cone"), "direct"), (("symmetric", "symmetric"), "relayed")],
    ids=["cone", "sym"],
)
async def test_a_folder_arrives_byte_identical(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kinds: tuple[str, str], kind: str
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, kinds)
    folder = make_folder(tmp_path)
    sender = await peers.send(str(folder))
    lines = await read_until(sender, lambda line: line["event"] == "finished", timeout=60)
    assert await sender.wait(10) == 0
    done = [line for line in lines if line["event"] == "done"]
    assert len(done) == 4
    assert {line["path_type"] for line in done} == {kind}, done
    assert finished(lines)["failed"] == 0
    assert tree_digest(downloads / "holiday") == tree_digest(folder)
    expected = tree_digest(folder)
    assert {line["path"]: line["sha256"] for line in done} == {f"holiday/{k}": v for k, v in expected.items()}


async def test_a_folder_crosses_lossy_relayed_links_intact(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 2 % loss each way on each WAN link: every datagram crosses two of them to the relay and back out.
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("symmetric", "symmetric"), loss=2.0)
    folder = make_folder(tmp_path, 6 * 1024 * 1024)
    sender = await peers.send(str(folder))
    lines = await read_until(sender, lambda line: line["event"] == "finished", timeout=90)
    assert await sender.wait(10) == 0
    assert finished(lines)["path_type"] == "relayed"
    assert tree_digest(downloads / "holiday") == tree_digest(folder)


def resumed_not_restarted(lines: list[Line], total: int, at_least: int) -> None:
    """The last attempt picked up at least ``at_least`` bytes and sent only the rest: never from zero."""
    accepted = [line for line in lines if line["event"] == "accepted"]
    last = finished(lines)
    assert accepted[-1]["resume_bytes"] + last["bytes"] == total, (accepted, last)
    if len(accepted) > 1:
        assert accepted[-1]["resume_bytes"] >= at_least, accepted


async def test_a_transfer_survives_the_wan_link_down_for_30_seconds(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("cone", "cone"), rate_kbit=RATE_KBIT)
    folder = make_folder(tmp_path, BIG)
    sender = await peers.send(str(folder))
    lines = await read_until(sender, lambda line: line["event"] == "progress" and line["bytes"] > 5_000_000)
    peers.lab.link_down("left_nat")
    await asyncio.sleep(30)
    peers.lab.link_up("left_nat")
    lines += await read_until(sender, lambda line: line["event"] == "finished", timeout=150)
    assert await sender.wait(10) == 0
    assert tree_digest(downloads / "holiday") == tree_digest(folder)
    # The sender counts bytes handed to QUIC; ~1-2 MB of them were still in buffers and queues when the
    # link went down, so the receiver had at least 3 MB.
    resumed_not_restarted(lines, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()), 2_000_000)


async def test_a_receiver_killed_mid_transfer_resumes_after_restart(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("cone", "cone"), rate_kbit=RATE_KBIT)
    folder = make_folder(tmp_path, BIG)
    sender = await peers.send(str(folder))
    await read_until(sender, lambda line: line["event"] == "progress" and line["bytes"] > 6_000_000)
    assert peers.listener is not None
    await peers.listener.kill()  # SIGKILL: no goodbye, no last checkpoint
    await peers.listen("right", "--accept-files", str(downloads), "--from", "alice")
    lines = await read_until(sender, lambda line: line["event"] == "finished", timeout=120)
    assert await sender.wait(10) == 0
    assert tree_digest(downloads / "holiday") == tree_digest(folder)
    accepted = [line for line in lines if line["event"] == "accepted"]
    assert accepted[-1]["resume_bytes"] > 0, accepted  # from the last durable checkpoint, not from zero
    resumed_not_restarted(lines, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()), 1)


async def test_a_relay_to_direct_switch_mid_transfer_does_not_restart_it(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("cone", "cone"), rate_kbit=RATE_KBIT)
    cut_between_routers(peers.lab)
    folder = make_folder(tmp_path, BIG)
    sender = await peers.send(str(folder))
    lines = await read_until(
        sender, lambda line: line["event"] == "progress" and line["path_type"] == "relayed"
    )
    peers.lab.nft("left_nat", "delete table inet cut\n")
    lines += await read_until(sender, lambda line: line["event"] == "path_changed", timeout=20)
    assert lines[-1]["kind"] == "direct", lines[-1]
    lines += await read_until(sender, lambda line: line["event"] == "finished", timeout=60)
    assert await sender.wait(10) == 0
    assert tree_digest(downloads / "holiday") == tree_digest(folder)
    assert [line["event"] for line in lines].count("accepted") == 1  # one session, never restarted
    assert [line["path_type"] for line in lines if line["event"] == "done"][-1] == "direct"


async def test_a_peer_with_another_identity_key_is_refused(
    nat_lab: LabFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    peers, downloads = await receiving(nat_lab, monkeypatch, tmp_path, ("cone", "cone"))
    (tmp_path / "hello.txt").write_text("hello")
    lines = await peers.run("left", "alice", "send", str(tmp_path / "hello.txt"), "--to", "bob")
    assert finished(lines)["completed"] == 1  # both keys are pinned now
    assert peers.listener is not None
    await peers.listener.kill()
    for name in ("identity.pem", "cli-sessions.json"):  # bob "reinstalls": a new key, signed in afresh
        (peers.lab.work_dir / "config-bob" / name).unlink()
    await peers.listen("right", "--accept-files", str(downloads), "--from", "alice")
    sender = await peers.send(str(tmp_path / "hello.txt"))
    with pytest.raises(PeerError, match=r"identity key has changed|refused the session"):
        await read_until(sender, lambda line: line["event"] == "finished", timeout=30)
