"""The README's screenshots script still runs: Xvfb, Qt's xcb platform, the demo driven end to end."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.screenshots import SHOTS

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (packaging/dev-setup.sh --test installs it)"
)


def test_the_screenshot_script_makes_all_four_pictures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.screenshots", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in SHOTS:
        picture = (tmp_path / name).read_bytes()
        assert picture.startswith(b"\x89PNG"), name
        assert len(picture) > 5000, name  # a real window, not a blank square
