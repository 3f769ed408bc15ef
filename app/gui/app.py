"""The desktop app's composition root: one event loop for Qt and asyncio (qasync), sign in, main window.

``punchline`` signs in (with the remembered token when there is one) and opens the main window;
``punchline --host-server`` first starts a rendezvous server inside the app for the LAN; ``punchline demo``
starts one on loopback with two users who are already contacts, and opens a window for each.

Thread rule: everything runs on the one thread of this loop; only PortAudio's callbacks run elsewhere,
and they hand frames over through thread-safe queues (`app.voice.sound_devices`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import platformdirs
import qasync
from PySide6.QtWidgets import QApplication, QMessageBox

from app.account.identity import load_or_create_identity
from app.account.remembered import RememberedSignIn
from app.account.signing_in import AccountError, register, sign_in
from app.desktop_options import parse_args
from app.embedded_server import StartupError, host_server, lan_address, start_demo
from app.gui.icons import icon
from app.gui.main_window import MainWindow, open_main_window
from app.gui.sign_in_dialog import SignInDialog
from app.signalling.client import DEFAULT_SERVER, Credentials, SignallingClient, SignallingError
from app.voice.audio_backend import AudioBackend, DeviceAudio, FileAudio

T = TypeVar("T")
SIGNED_OUT = "signed out by you"


async def _shown(args: argparse.Namespace, what: str) -> None:
    if args.report_startup:
        await asyncio.sleep(0)  # one turn of Qt's loop: the show request has gone to the window system
        print(f"punchline: {what} shown", flush=True)


def audio_backend(args: argparse.Namespace, config_dir: Path) -> AudioBackend:
    """The sound card, or WAV files with ``--audio-file``."""
    if args.audio_file:
        return FileAudio(args.audio_file, config_dir / "call-recordings")
    return DeviceAudio()


def run(args: argparse.Namespace) -> int:
    """Start the app with its parsed command line (`app.desktop_options`); return when the user quits."""
    app = QApplication(["punchline"])
    app.setApplicationName("Punchline")
    app.setDesktopFileName("punchline")
    app.setWindowIcon(icon("punchline"))
    app.setQuitOnLastWindowClosed(False)  # the tray may keep it running; quitting is explicit
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        main = run_demo(args) if args.command == "demo" else run_signed_in(args)
        status: int = loop.run_until_complete(main)
    return status


async def run_signed_in(args: argparse.Namespace) -> int:
    """Sign in (remembered token, else the window), then the main window until Quit."""
    config = args.config_dir or platformdirs.user_config_path("punchline", appauthor=False)
    downloads = args.downloads or platformdirs.user_downloads_path()
    identity = load_or_create_identity(config)
    remembered = RememberedSignIn(config)
    last_server, last_user = remembered.last()
    server = None
    if args.host_server:
        data = platformdirs.user_data_path("punchline", appauthor=False) / "rendezvous"
        try:
            server = await host_server(data, port=args.port, stun_port=args.stun_port)
        except (OSError, StartupError) as exc:
            QMessageBox.critical(None, "Punchline", f"Cannot host the server: {exc}")
            return 1
        args.server = f"ws://localhost:{server.port}"
    default_server = args.server or last_server or DEFAULT_SERVER
    quit_requested = asyncio.Event()
    _quit_on_signals(quit_requested)
    signed_in: asyncio.Queue[SignallingClient] = asyncio.Queue()

    async def signing_in(server_url: str, name: str, password: str) -> SignallingClient:
        return await sign_in(server_url, Credentials(name, password=password), identity)

    dialog = SignInDialog(signing_in, register, server=default_server, username=last_user or "")
    dialog.signed_in.connect(signed_in.put_nowait)
    dialog.rejected.connect(quit_requested.set)

    # The token is kept per server: ``--server`` naming the remembered one keeps the sign-in, another asks.
    token = remembered.token(default_server, last_user) if last_user else None
    if token and last_user:
        try:
            signed_in.put_nowait(await sign_in(default_server, Credentials(last_user, token=token), identity))
        except AccountError as exc:
            if exc.code == "auth_failed":
                remembered.forget(default_server, last_user)
            dialog.message.setText(exc.message)
    if signed_in.empty():
        dialog.show()
        await _shown(args, "sign-in window")
    window: MainWindow | None = None
    try:
        while True:
            client = await _first(signed_in.get(), quit_requested.wait())
            if client is None:
                return 0
            server_url = dialog.server.text().strip() or default_server
            if dialog.remember.isChecked() and client.token:
                remembered.remember(server_url, client.username, client.token)
            dialog.hide()
            audio = audio_backend(args, config)
            # The devices picked in the last call are the ones to use (missing ones fall back to the default).
            audio.input_device = remembered.option("input_device")
            audio.output_device = remembered.option("output_device")
            window = open_main_window(client, identity, config, downloads=downloads, audio=audio)
            window.tray_option.setChecked(bool(remembered.option("close_to_tray", False)))
            window.tray_option.toggled.connect(lambda on: remembered.set_option("close_to_tray", on))
            window.quit_requested.connect(quit_requested.set)
            ended: asyncio.Queue[str] = asyncio.Queue()
            window.session_ended.connect(ended.put_nowait)
            window.sign_out_requested.connect(functools.partial(ended.put_nowait, SIGNED_OUT))
            if server is not None:
                lan = lan_address() or "this computer's address"
                window.say(f"Hosting a server: others on your network sign in at ws://{lan}:{server.port}")
            window.show()
            window.start_network_check()  # quietly: the Network check window and the pair verdicts use it
            await _shown(args, "main window")
            reason = await _first(ended.get(), quit_requested.wait())
            if reason == SIGNED_OUT:
                with contextlib.suppress(SignallingError):
                    await client.sign_out()  # the token no longer works anywhere
            remembered.set_option("input_device", audio.input_device)
            remembered.set_option("output_device", audio.output_device)
            await window.sign_out()
            window.quit_on_close = False  # closed to show the sign-in window, not to quit
            window.close()
            window = None
            if reason is None:
                return 0
            remembered.forget(server_url, client.username)
            dialog.message.setText(
                "Signed out." if reason == SIGNED_OUT else f"You were signed out: {reason}"
            )
            dialog.password.clear()
            dialog.show()
    finally:
        if window is not None:
            await window.sign_out()
        if server is not None:
            await server.close()


async def run_demo(args: argparse.Namespace) -> int:
    """An embedded server, two users who are contacts, a window for each, side by side."""
    folder = platformdirs.user_data_path("punchline", appauthor=False) / "demo"
    shutil.rmtree(folder, ignore_errors=True)  # a fresh demo each time (its own throwaway accounts)
    demo = await start_demo(folder)
    quit_requested = asyncio.Event()
    _quit_on_signals(quit_requested)
    windows: list[MainWindow] = []
    try:
        for index, user in enumerate(demo.users):
            window = open_main_window(
                user.client,
                user.identity,
                user.config_dir,
                downloads=user.downloads,
                audio=audio_backend(args, user.config_dir),
            )
            window.setWindowTitle(f"Punchline demo — {user.client.username}")
            window.move(40 + index * 620, 60)
            window.resize(600, 560)
            window.quit_requested.connect(quit_requested.set)
            other = demo.users[1 - index].client.username
            window.select(other)
            window.say(f"Demo: {other} is in the other window. Drop a file on {other}, or press Call.")
            window.show()
            window.start_network_check()
            windows.append(window)
        await _shown(args, "demo windows")
        await quit_requested.wait()
        return 0
    finally:
        for window in windows:
            await window.sign_out()
            window.close()
        await demo.close()


def _quit_on_signals(quit_requested: asyncio.Event) -> None:
    """SIGINT and SIGTERM quit like the Quit menu (hang up, transfers left resumable).

    Python runs signal handlers only between its own bytecodes, and Qt's loop may wait in C++ for a long
    time; the wake-up fd makes the signal a readable socket that Qt's loop watches.
    """
    pair = socket.socketpair()
    reader, writer = pair
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: None)  # the wake-up fd does the work

    def woken() -> None:  # holds ``pair``: both sockets live as long as the loop watches
        with contextlib.suppress(OSError):
            pair[0].recv(64)
        quit_requested.set()

    asyncio.get_running_loop().add_reader(reader.fileno(), woken)


async def _first(wanted: Awaitable[T], stop: Awaitable[object]) -> T | None:
    """Wait for ``wanted`` unless ``stop`` finishes first (then None)."""
    a = asyncio.ensure_future(wanted)
    b = asyncio.ensure_future(stop)
    done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return a.result() if a in done else None


if __name__ == "__main__":
    sys.exit(run(parse_args(sys.argv[1:])))
