"""Packaging: the desktop bundle builds and passes its self-test; the .desktop entry, the systemd unit and
the server's pipx install are checked with the tools that judge them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

PACKAGING = REPO_ROOT / "packaging"


def run(
    *argv: str | Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env=env,
    )


def test_the_bundle_builds_from_this_checkout_and_passes_its_self_test(tmp_path: Path) -> None:
    """The whole of packaging/build-bundle.sh: PyInstaller, then the bundle's --self-test with an empty
    environment (slow: about half a minute)."""
    done = run("bash", PACKAGING / "build-bundle.sh", tmp_path / "bundle", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "All checks passed.", done.stdout[-3000:]
    assert [line.split(":")[0] for line in lines[-6:-1]] == [
        "ok     Qt",
        "ok     Opus",
        "ok     PortAudio",
        "ok     UDP",
        "ok     key store",
    ]
    internal = tmp_path / "bundle" / "dist" / "punchline" / "_internal"
    assert sorted(p.name for p in (internal / "punchline-libs").iterdir()) == [
        "libopus.so.0",
        "libportaudio.so.2",
    ]
    assert (internal / "resources" / "icons" / "punchline.svg").exists()
    version = run(
        internal.parent / "punchline", "--version", env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin"}
    )
    assert version.stdout == f"punchline {metadata.version('punchline')}\n", (
        version.stderr
    )  # bundled metadata


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="no desktop-file-validate")
def test_the_desktop_entry_is_valid_and_installs_for_one_user(tmp_path: Path) -> None:
    assert run("desktop-file-validate", REPO_ROOT / "resources" / "punchline.desktop").stdout == ""
    program = tmp_path / "bundle" / "punchline"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    done = run("bash", PACKAGING / "install-desktop-entry.sh", program, env=env)
    assert done.returncode == 0, done.stderr
    entry = tmp_path / "data" / "applications" / "punchline.desktop"
    assert f'Exec="{program}"' in entry.read_text()
    assert (tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "punchline.svg").exists()
    checked = run("desktop-file-validate", entry)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    run("bash", PACKAGING / "install-desktop-entry.sh", "--remove", env=env)
    assert not entry.exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze on this machine")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` with ExecStart pointed at this checkout's server (it checks the program)."""
    server = Path(sys.executable).with_name("punchline-rendezvous")
    unit = (PACKAGING / "punchline-rendezvous.service").read_text()
    assert "ExecStart=/usr/local/bin/punchline-rendezvous " in unit
    copy = tmp_path / "punchline-rendezvous.service"
    copy.write_text(unit.replace("/usr/local/bin/punchline-rendezvous", str(server)))
    done = run("systemd-analyze", "verify", copy)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys and bad values are only warnings: none allowed


def test_the_server_installs_with_pipx_without_the_desktop_parts(tmp_path: Path) -> None:
    """pipx in a throwaway virtualenv installs this checkout; the server runs, and no Qt came with it."""
    tools = tmp_path / "tools"
    assert run(sys.executable, "-m", "venv", tools).returncode == 0
    assert run(tools / "bin" / "pip", "install", "-q", "pipx", timeout=300).returncode == 0
    source = tmp_path / "source"  # a copy: building in place would leave build/ in this checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("app", "rendezvous"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    done = run(tools / "bin" / "pipx", "install", source, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    helped = run(tmp_path / "bin" / "punchline-rendezvous", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--relay-ports" in helped.stdout
    python = tmp_path / "pipx" / "venvs" / "punchline" / "bin" / "python"
    assert run(python, "-c", "import PySide6").returncode != 0  # the server needs no Qt
    window = run(tmp_path / "bin" / "punchline")
    assert window.returncode == 2
    assert "pip install 'punchline[desktop]'" in window.stderr
