"""``punchline demo`` as a person starts it: the real app shows its two windows and quits on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_opens_two_windows_and_quits_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_DATA_HOME": str(tmp_path / "data"),  # the demo's server and accounts go here
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    app = subprocess.Popen(
        [sys.executable, "-m", "app", "demo", "--report-startup"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        started = time.monotonic()
        line = app.stdout.readline()
        assert line == "punchline: demo windows shown\n", app.stderr.read() if app.stderr else ""
        assert time.monotonic() - started < 30
        demo = tmp_path / "data" / "punchline" / "demo"
        assert sorted(p.name for p in demo.iterdir()) == ["alice", "bob", "server"]
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=20) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
