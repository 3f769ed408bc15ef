"""A transfer's life when the receiving app goes away: the sender waits and says why, then resumes by itself.

Two real windows on the demo's server (offscreen Qt, the real core). Bob quits in the middle of a large
transfer and starts again: alice's panel says she is waiting for bob (never a frozen rate), the transfer
resumes without a second question to bob, completes byte-identical, and both sides keep it in their history.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.account.signing_in import sign_in
from app.gui.main_window import MainWindow, open_main_window
from app.peers.transfer_list import TransferList
from app.signalling.client import Credentials
from app.voice.audio_backend import FileAudio
from tests.helpers.gui import demo_windows, drop_files
from tests.helpers.poll import until


def _big_file(path: Path, megabytes: int) -> str:
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for i in range(megabytes):
            chunk = block[i % 7 :] + block[: i % 7]  # no two megabytes alike
            file.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


async def test_the_receiver_quits_mid_transfer_and_the_send_resumes_when_it_is_back(
    qtbot: QtBot, tmp_path: Path
) -> None:
    payload = tmp_path / "film.bin"
    expected = _big_file(payload, 400)
    async with demo_windows(tmp_path) as (demo, (alice, bob)):
        await until(lambda: alice.contact_list.rows() == ["●  bob — online"], 15, "bob online")
        drop_files(alice, "bob", [payload])
        await until(lambda: len(bob.offers) == 1, 15, "the offer")
        next(iter(bob.offers.values())).accept_button.click()
        sent = next(iter(alice.transfers.records.values()))
        await until(lambda: sent.done > 40_000_000, 15, "the transfer under way")

        # Bob quits the app mid-transfer (Punchline ▸ Quit: the session closes, the partial file stays).
        await bob.sign_out()
        bob.close()
        await until(lambda: sent.state == "retrying", 20, "alice waiting for bob")
        row = alice.transfers_panel.rows[sent.transfer]
        assert row.detail.text().startswith("Waiting for bob")  # "to come online" or ": <why>"
        assert sent.rate == 0.0
        assert row.cancel_button.isVisibleTo(alice)
        bob_history = TransferList(demo.users[1].config_dir / "transfers.json")
        (kept,) = bob_history.records.values()  # the receiver keeps the interrupted transfer too
        assert (kept.direction, kept.state) == ("receive", "interrupted")

        # Bob starts the app again: his history shows the interrupted transfer, and it resumes by itself.
        user = demo.users[1]
        client = await sign_in(demo.server.url, Credentials("bob", password=user.password), user.identity)
        again: MainWindow = open_main_window(
            client,
            user.identity,
            user.config_dir,
            downloads=user.downloads,
            audio=FileAudio(tmp_path / "bob.wav", tmp_path / "bob-heard"),
        )
        again.show()
        try:
            assert again.transfers.records[sent.transfer].state == "interrupted"
            await until(lambda: sent.state == "done", 60, "the resumed transfer done")
            assert not again.offers  # accepted once: the resume asked nothing
            received = user.downloads / "film.bin"
            await until(lambda: again.transfers.records[sent.transfer].state == "done", 15, "bob's row")
            assert hashlib.sha256(received.read_bytes()).hexdigest() == expected
            assert sent.detail.startswith("Done in")
        finally:
            await again.sign_out()
            again.close()
