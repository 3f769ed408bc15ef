"""The app as a person starts it (the real process, offscreen): ``punchline demo`` shows its two windows,
``punchline --host-server`` hosts the server and asks you to sign in, and both quit cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO_ROOT


def run_until_shown(home: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m app ARGS --report-startup``, its files under ``home``; wait for its first window."""
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DOWNLOAD_DIR": str(home / "Downloads"),
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "app", *args, "--report-startup"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None
    return app, app.stdout.readline()


def quit_with_sigterm(app: subprocess.Popen[str]) -> int:
    """SIGTERM, as a session manager sends at log-out; the exit status (killed after 20 s)."""
    app.send_signal(signal.SIGTERM)
    try:
        return app.wait(timeout=20)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()


def test_the_demo_opens_two_windows_and_quits_cleanly(tmp_path: Path) -> None:
    app, line = run_until_shown(tmp_path, "demo")
    try:
        assert line == "punchline: demo windows shown\n", app.stderr.read() if app.stderr else ""
        demo = tmp_path / "data" / "punchline" / "demo"
        assert sorted(p.name for p in demo.iterdir()) == ["alice", "bob", "server"]
    finally:
        assert quit_with_sigterm(app) == 0


def test_the_app_can_host_the_server_for_a_lan(tmp_path: Path) -> None:
    app, line = run_until_shown(tmp_path, "--host-server", "--port", "0", "--stun-port", "0")
    try:
        assert line == "punchline: sign-in window shown\n", app.stderr.read() if app.stderr else ""
        assert (tmp_path / "data" / "punchline" / "rendezvous").is_dir()
    finally:
        assert quit_with_sigterm(app) == 0
