"""The main window with the real core: two windows signed in to a real rendezvous server (the demo's).

Offscreen Qt; files are dropped as real drop events carrying file URLs, buttons are clicked; calls use the
WAV file audio backend (this machine has no sound card).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.account.signing_in import sign_in
from app.embedded_server import Demo
from app.gui.main_window import MainWindow
from app.signalling.client import Credentials
from tests.gui_helpers import demo_windows
from tests.test_call_media import pitch, segment


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "it") -> None:
    """Let the loop run until ``condition`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"the window did not show {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def windows(qtbot: QtBot, tmp_path: Path) -> AsyncIterator[tuple[Demo, MainWindow, MainWindow]]:
    """Two signed-in windows (closed by `demo_windows`, not qtbot: they sign out first)."""
    async with demo_windows(tmp_path) as (demo, made):
        yield demo, made[0], made[1]


def drop_files(window: MainWindow, contact: str, paths: list[Path]) -> None:
    """A real drop event with file URLs, on ``contact``'s row of the list."""
    listing = window.contact_list
    row = listing.row_of(contact)
    assert row is not None
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = listing.visualItemRect(row).center()
    drag = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # As a drag from a file manager arrives: enter, move over the row, drop (Qt delivers a drop only to a
    # widget that accepted the drag's enter and move).
    for kind in (QDragEnterEvent, QDragMoveEvent):
        moving = kind(where, *drag)
        assert QApplication.sendEvent(listing.viewport(), moving)
        assert moving.isAccepted()
    assert QApplication.sendEvent(listing.viewport(), QDropEvent(QPointF(where), *drag))


async def test_a_contact_coming_online_shows(windows: tuple[Demo, MainWindow, MainWindow]) -> None:
    demo, alice, bob = windows
    await wait_for(lambda: alice.contact_list.rows() == ["●  bob — online"], what="bob online")
    await bob.sign_out()
    await wait_for(lambda: alice.contact_list.rows() == ["○  bob — offline"], what="bob offline")
    user = demo.users[1]
    again = await sign_in(demo.server.url, Credentials("bob", password=user.password), user.identity)
    await wait_for(lambda: alice.contact_list.rows() == ["●  bob — online"], what="bob back")
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
    await wait_for(lambda: len(bob.offers) == 1, what="the offer")
    banner = next(iter(bob.offers.values()))
    assert "alice" in banner.text.text()
    assert "holiday.bin" in banner.text.text()
    banner.accept_button.click()
    received = demo.users[1].downloads / "holiday.bin"
    await wait_for(received.exists, what="the file arriving")
    assert received.read_bytes() == payload.read_bytes()
    sent = next(iter(alice.transfers.records.values()))
    await wait_for(lambda: sent.state == "done", what="the sender's transfer done")
    row = alice.transfers_panel.rows[sent.transfer]
    assert row.bar.value() == 1000
    assert row.detail.text().startswith("Done in")
    got = next(iter(bob.transfers.records.values()))
    await wait_for(lambda: got.state == "done", what="the receiver's transfer done")
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
        await wait_for(lambda w=window: w.network_report is not None, what="a network check")  # type: ignore[misc]
    (tmp_path / "note.txt").write_text("hi")
    alice.send_files("bob", [tmp_path / "note.txt"])
    await wait_for(lambda: status.value("Connection") == "Connected", what="connected")
    assert status.value("Path").startswith(("LAN", "Direct"))
    assert status.value("Relay") == "Not used"
    assert status.value("Pair verdict").startswith("direct likely")
    assert "encrypted" in status.value("Encryption")
    bob.select("alice")
    await wait_for(lambda: bob.pane.status.value("Safety number") == status.value("Safety number"))
    assert alice.contact_list.rows()[0].endswith(("· LAN", "· direct"))


async def test_a_call_is_placed_accepted_and_hung_up(windows: tuple[Demo, MainWindow, MainWindow]) -> None:
    _, alice, bob = windows
    alice.select("bob")
    alice.pane.call_button.click()
    await wait_for(lambda: len(bob.calls) == 1, what="the incoming call")
    incoming = next(iter(bob.calls.values()))
    await wait_for(incoming.accept_button.isVisible, what="the accept button")
    assert incoming.title.text() == "alice is calling"
    outgoing = next(iter(alice.calls.values()))
    await wait_for(lambda: outgoing.state.text() == "Ringing…", what="ringing")
    incoming.accept_button.click()
    await wait_for(lambda: outgoing.phase == "active", what="the call active")
    await asyncio.sleep(2.5)
    assert outgoing.state.text().startswith("00:0")
    assert outgoing.quality.text().startswith("Quality: ")
    assert outgoing.level.value() > 0  # the 440 Hz tone is loud
    assert alice.pane.status.value("Jitter").endswith("ms)")
    outgoing.hangup_button.click()
    await wait_for(lambda: incoming.phase == "ended", what="the call ended")
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
    await wait_for(lambda: alice.network_report is not None, what="the network check's report")
    alice.show_network_check()
    dialog = alice.network_dialog
    assert dialog.verdict.text().startswith("You are not behind a NAT")  # loopback
    assert dialog.values["UDP"].text() == "works"
    assert dialog.values["Mapping"].text() == "endpoint-independent"  # the demo's server has 127.0.0.2 too
    dialog.again.click()
    assert not dialog.again.isEnabled()  # checking
    await wait_for(dialog.again.isEnabled, what="the second check")
