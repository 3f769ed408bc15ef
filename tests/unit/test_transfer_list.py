"""The transfers panel's records (Qt-free): states in words, history kept across a restart, resume offered."""

from __future__ import annotations

from pathlib import Path

from app.nat.path_events import PathInfo
from app.peers import events as pe
from app.peers.link_report import link_report
from app.peers.transfer_list import TransferList, title_of
from app.transfer import events as tev

FILES = (tev.FileEntry(0, "photos/a.jpg", 600), tev.FileEntry(1, "photos/b.jpg", 400))


def test_a_send_goes_through_its_states_and_is_kept_as_history(tmp_path: Path) -> None:
    history = tmp_path / "transfers.json"
    listing = TransferList(history)
    listing.apply(pe.SendQueued("t1", "bob", FILES, 1000, False, ("/home/a/photos",)))
    record = listing.records["t1"]
    assert (record.state, record.detail, record.heading) == (
        "waiting",
        "Connecting to bob…",
        "To bob: photos (2 files) (1.0 kB)",
    )
    listing.apply(pe.SendRetrying("t1", "bob", "bob is offline", 2.0))
    assert record.detail == "Waiting for bob: bob is offline. Trying again in 2 s…"
    assert record.rate == 0.0
    listing.apply(tev.OfferMade("t1", "bob", FILES, 1000))
    listing.apply(tev.TransferAccepted("t1", "bob", "send", 0))
    listing.apply(
        tev.TransferProgress("t1", "bob", "send", 0, "photos/a.jpg", 500, 600, 500, 1000, 250.0, 2.0)
    )
    assert (record.fraction, record.detail) == (0.5, "250 B/s, 0:02 left")
    assert record.active
    listing.apply(tev.TransferInterrupted("t1", "bob", "send", "the path was lost"))
    assert record.state == "interrupted"
    assert record.can_resume
    # After a restart the interrupted send is still there, with its files to send again.
    again = TransferList(history).records["t1"]
    assert (again.state, again.sources, again.can_resume) == ("interrupted", ["/home/a/photos"], True)


def test_a_transfer_that_was_going_when_the_app_stopped_reads_as_interrupted(tmp_path: Path) -> None:
    history = tmp_path / "transfers.json"
    listing = TransferList(history)
    listing.apply(tev.OfferReceived("t2", "alice", FILES, 1000, (), False))
    listing.apply(
        tev.FileCompleted("t2", "alice", "receive", 0, "photos/a.jpg", 600, "00", Path("/dl/photos/a.jpg"))
    )
    listing.apply(tev.TransferFinished("t2", "alice", "receive", 1, 1, 600, 2.0))
    record = listing.records["t2"]
    assert (record.state, record.detail, record.folder) == ("failed", "1 of 2 files arrived.", "/dl/photos")
    assert not record.can_resume  # the sender resumes, not the receiver
    listing.forget_finished()
    assert TransferList(history).records == {}
    history.write_text("{not json")
    assert TransferList(history).records == {}  # a damaged history is dropped, never fatal


def test_transfers_under_way_survive_a_crash_in_both_sides_history(tmp_path: Path) -> None:
    sender, receiver = TransferList(tmp_path / "alice.json"), TransferList(tmp_path / "bob.json")
    sender.apply(pe.SendQueued("t3", "bob", FILES, 1000, False, ("/home/a/photos",)))
    sender.apply(tev.TransferAccepted("t3", "bob", "send", 0))
    receiver.apply(tev.OfferReceived("t3", "alice", FILES, 1000, (), False))
    receiver.apply(tev.TransferAccepted("t3", "alice", "receive", 0))
    receiver.apply(tev.OfferReceived("t4", "alice", FILES, 1000, (), False))  # still asking: not saved yet
    # Both apps die here, without another event: the history was written when the transfer was accepted.
    sent = TransferList(tmp_path / "alice.json").records["t3"]
    assert (sent.state, sent.can_resume) == ("interrupted", True)
    assert sent.detail == "Interrupted when Punchline closed. Resume sends the rest."
    got = TransferList(tmp_path / "bob.json").records
    assert got["t3"].state == "interrupted"
    assert got["t3"].detail == "Interrupted when Punchline closed. It resumes when alice sends again."
    assert "t4" not in got


def test_titles_name_the_one_folder_or_count_the_files() -> None:
    assert title_of((tev.FileEntry(0, "notes.txt", 1),)) == "notes.txt"
    assert title_of((tev.FileEntry(0, "a.txt", 1), tev.FileEntry(1, "b.txt", 1))) == "2 files"


def test_the_status_panel_says_why_a_path_is_relayed() -> None:
    path = PathInfo(
        "relayed",
        "relay",
        ("198.51.100.7", 50000),
        ("203.0.113.9", 41000),
        relayed_by="us",
        relay_transport="tcp",
        reason_if_relayed="both routers give a new port for every destination (symmetric NAT)",
    )
    rows = dict(
        link_report(pe.PeerState("bob", "connected", path, 41.6, 0.02, "End-to-end encrypted", "1 2"))
    )
    assert rows["Path"] == "Relayed (through the server's relay)"
    assert rows["Round trip"] == "42 ms"
    assert rows["Loss"] == "2.0 %"
    assert rows["Relay"] == (
        "Yes: your side's relay over TCP (this network lets no UDP out). "
        "Why: both routers give a new port for every destination (symmetric NAT)"
    )
