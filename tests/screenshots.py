"""Screenshots of the desktop app for the README, under Xvfb with Qt's real xcb platform.

    .venv/bin/python -m tests.screenshots [--out resources/screenshots]

It runs the demo (an embedded server, alice and bob as contacts, WAV files for sound), drives it like a
person would — sends a file, a bigger one, calls — and saves ``main-window.png``, ``transfer.png``,
``call.png`` and ``status-panel.png``. Needs the Debian package xvfb (packaging/dev-setup.sh --test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from tests.helpers.paths import REPO_ROOT
from tests.helpers.poll import until
from tests.helpers.processes import start_xvfb

SHOTS = ("main-window.png", "transfer.png", "call.png", "status-panel.png")
DEFAULT_OUT = REPO_ROOT / "resources" / "screenshots"


async def shoot(out: Path, scratch: Path) -> None:
    """Run the demo and save the four pictures into ``out``."""
    from tests.helpers.gui import demo_windows  # Qt loads here, after the display is set

    async with demo_windows(scratch, tones=(440, 660), seconds=20) as (_, windows):
        for index, window in enumerate(windows):
            window.setWindowTitle(f"Punchline — {window.client.username}")
            window.resize(980, 640)
            window.move(10 + 500 * index, 10)
        alice, bob = windows
        await until(lambda: alice.contact_list.rows() == ["●  bob — online"], 30, "bob online")
        alice.select("bob")
        bob.select("alice")
        for window in windows:  # as the app does after sign-in: the pair verdict needs both
            window.start_network_check()
        await until(lambda: all(w.network_report is not None for w in windows), 30, "the network checks")

        async def accept_offers() -> None:
            while True:
                for banner in list(bob.offers.values()):
                    banner.accept_button.click()
                await asyncio.sleep(0.05)

        accepting = asyncio.ensure_future(accept_offers())
        notes = scratch / "meeting notes.txt"
        notes.write_text("Agenda: the trip, the tickets, the photos.\n" * 200)
        alice.send_files("bob", [notes])
        await until(
            lambda: any(r.state == "done" for r in alice.transfers.records.values()), 30, "a finished send"
        )
        video = scratch / "holiday video.mp4"
        with video.open("wb") as file:
            file.truncate(600_000_000)  # sparse: reads fast, sends at the session's speed
        alice.send_files("bob", [video])

        def halfway() -> bool:
            return any(
                r.title == video.name and 0.25 < r.fraction < 0.75 for r in alice.transfers.records.values()
            )

        await until(halfway, 60, "the big transfer halfway")
        await asyncio.sleep(0.3)  # one more progress report: speed and time left shown
        alice.grab().save(str(out / "transfer.png"))
        big = next(r for r in alice.transfers.records.values() if r.title == video.name)
        await until(lambda: not big.active, 120, "the big transfer to finish")
        accepting.cancel()
        alice.say("Drop files on a contact to send them; press Call to talk.")
        await asyncio.sleep(0.3)
        alice.grab().save(str(out / "main-window.png"))

        alice.pane.call_button.click()
        await until(lambda: len(bob.calls) == 1, 30, "the call ringing")
        incoming = next(iter(bob.calls.values()))
        await until(incoming.accept_button.isVisible, 30, "the accept button")
        incoming.accept_button.click()
        outgoing = next(iter(alice.calls.values()))
        await until(lambda: outgoing.phase == "active", 30, "the call answered")
        await asyncio.sleep(3.2)
        alice.refresh_pane()
        outgoing.grab().save(str(out / "call.png"))
        alice.pane.status.grab().save(str(out / "status-panel.png"))
        outgoing.hangup_button.click()
        await until(lambda: incoming.phase == "ended", 30, "the call ended")


def main(argv: list[str] | None = None) -> int:
    """Start Xvfb, take the screenshots, stop Xvfb."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb, display = start_xvfb()
    try:
        os.environ["DISPLAY"] = display
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        import qasync
        from PySide6.QtWidgets import QApplication

        app = QApplication(["punchline-screenshots"])
        app.setQuitOnLastWindowClosed(False)
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with tempfile.TemporaryDirectory(prefix="punchline-shots-") as scratch, loop:
            loop.run_until_complete(shoot(args.out, Path(scratch)))
    except TimeoutError as gave_up:
        raise SystemExit(f"screenshots: {gave_up}") from None
    finally:
        xvfb.terminate()
        xvfb.wait(5)
    for name in SHOTS:
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
