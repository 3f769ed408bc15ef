"""``punchline --self-test`` from the source tree: every check passes here; a broken part is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO_ROOT


def self_test(config_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "app", "--self-test", "--config-dir", str(config_dir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_check_passes_on_this_machine(tmp_path: Path) -> None:
    done = self_test(tmp_path / "config")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [line.split(":")[0].split(maxsplit=1) for line in done.stdout.splitlines()[1:-1]]
    assert checks == [["ok", "Qt"], ["ok", "Opus"], ["ok", "PortAudio"], ["ok", "UDP"], ["ok", "key store"]]
    assert done.stdout.splitlines()[-1] == "All checks passed."


def test_the_first_failure_is_named_and_exits_non_zero(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the config folder should be")
    done = self_test(blocked)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1].startswith(f"FAILED key store: cannot write to {blocked}")
