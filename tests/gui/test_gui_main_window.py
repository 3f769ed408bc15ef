"""The main window with the real core: two windows signed in to a real rendezvous server (the demo's).

Offscreen Qt; files are dropped as real drop events carrying file URLs, buttons are clicked; calls use the
WAV file audio backend (this machine has no sound card).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from app.account.signing_in import sign_in
from app.embedded_server import Demo
from app.gui.main_window import MainWindow
from app.signalling.client import Credentials
from tests.helpers.gui import drop_files
from tests.helpers.poll import until
from tests.helpers.tone import pitch, segment


async def test_a_contact_coming_online_shows(windows: tuple[Demo, MainWindow, MainWindow]) -> None:
    demo, alice, bob = windows
    await until(lambda: alice.contact_list.rows() == ["●  bob — online"], 15, "bob online")
    await bob.sign_out()
    await until(lambda: alice.contact_list.rows() == ["○  bob — offline"], 15, "bob offline")
    user = demo.users[1]
    again = await sign_in(demo.server.url, Credentials("bob", password=user.password), user.identity)
    await until(lambda: alice.contact_list.rows() == ["●  bob — online"], 15, "bob back")
    alice.search.setText("zed")
    assert alice.contact_list.rows() == []
    await again.close()


async def test_a_dropped_file_is_offered_accepted_and_arrives_whole(
    windows: tuple[Demo, MainWindow, MainWindow], tmp_path: Path
) -> None:
    demo, alice, bob = windows
    payload = tmp_path / "holiday.bin"
    payload.write_bytes(os.urandom(2_000_000))
    drop_files(alice, "bob", [payload])
    await until(lambda: len(bob.offers) == 1, 15, "the offer")
    banner = next(iter(bob.offers.values()))
    assert "alice" in banner.text.text()
    assert "holiday.bin" in banner.text.text()
    banner.accept_button.click()
    received = demo.users[1].downloads / "holiday.bin"
    await until(received.exists, 15, "the file arriving")
    assert received.read_bytes() == payload.read_bytes()
    sent = next(iter(alice.transfers.records.values()))
    await until(lambda: sent.state == "done", 15, "the sender's transfer done")
    row = alice.transfers_panel.rows[sent.transfer]
    assert row.bar.value() == 1000
    assert row.detail.text().startswith("Done in")
    got = next(iter(bob.transfers.records.values()))
    await until(lambda: got.state == "done", 15, "the receiver's transfer done")
    assert bob.transfers_panel.rows[got.transfer].reveal_button.isVisibleTo(bob)
    assert not bob.offers


async def test_the_status_panel_shows_how_we_are_connected(
    windows: tuple[Demo, MainWindow, MainWindow], tmp_path: Path
) -> None:
    _, alice, bob = windows
    alice.select("bob")
    status = alice.pane.status
    assert status.value("Connection").startswith("Not connected")
    for window in (alice, bob):  # both checks first: their results travel with the connection offers
        window.start_network_check()
        await until(lambda w=window: w.network_report is not None, 15, "a network check")  # type: ignore[misc]
    (tmp_path / "note.txt").write_text("hi")
    alice.send_files("bob", [tmp_path / "note.txt"])
    await until(lambda: status.value("Connection") == "Connected", 15, "connected")
    assert status.value("Path").startswith(("LAN", "Direct"))
    assert status.value("Relay") == "Not used"
    assert status.value("Pair verdict").startswith("direct likely")
    assert "encrypted" in status.value("Encryption")
    bob.select("alice")
    await until(
        lambda: bob.pane.status.value("Safety number") == status.value("Safety number"),
        15,
        "the same safety number",
    )
    assert alice.contact_list.rows()[0].endswith(("· LAN", "· direct"))


async def test_a_call_is_placed_accepted_and_hung_up(windows: tuple[Demo, MainWindow, MainWindow]) -> None:
    _, alice, bob = windows
    alice.select("bob")
    alice.pane.call_button.click()
    await until(lambda: len(bob.calls) == 1, 15, "the incoming call")
    incoming = next(iter(bob.calls.values()))
    await until(incoming.accept_button.isVisible, 15, "the accept button")
    assert incoming.title.text() == "alice is calling"
    outgoing = next(iter(alice.calls.values()))
    await until(lambda: outgoing.state.text() == "Ringing…", 15, "ringing")
    incoming.accept_button.click()
    await until(lambda: outgoing.phase == "active", 15, "the call active")
    await asyncio.sleep(2.5)
    assert outgoing.state.text().startswith("00:0")
    assert outgoing.quality.text().startswith("Quality: ")
    assert outgoing.level.value() > 0  # the 440 Hz tone is loud
    assert alice.pane.status.value("Jitter").endswith("ms)")
    outgoing.hangup_button.click()
    await until(lambda: incoming.phase == "ended", 15, "the call ended")
    assert incoming.state.text() == "alice hung up."
    await asyncio.sleep(0.3)  # the speaker's file is finished when the media stops
    record_dir = bob.audio.record_dir  # type: ignore[attr-defined]
    assert (record_dir / "heard-1.wav").exists()  # the ringtone went to the "speaker" first
    heard = record_dir / "heard-2.wav"
    assert abs(pitch(segment(heard, 1.0, 2.0)) - 440) < 20


async def test_the_network_check_runs_after_sign_in_and_shows_its_report(
    windows: tuple[Demo, MainWindow, MainWindow],
) -> None:
    _, alice, _ = windows
    alice.start_network_check()  # as the app does once the window is shown
    await until(lambda: alice.network_report is not None, 15, "the network check's report")
    alice.show_network_check()
    dialog = alice.network_dialog
    assert dialog.verdict.text().startswith("You are not behind a NAT")  # loopback
    assert dialog.values["UDP"].text() == "works"
    assert dialog.values["Mapping"].text() == "endpoint-independent"  # the demo's server has 127.0.0.2 too
    dialog.again.click()
    assert not dialog.again.isEnabled()  # checking
    await until(dialog.again.isEnabled, 15, "the second check")
