"""The load benchmark still runs end to end (tiny size, no timing asserted: numbers are the script's job)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT


def test_load_benchmark_runs_and_delivers_every_message() -> None:
    size = ["--clients", "20", "--rate", "50", "--seconds", "1", "--idle", "0"]
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.load_signalling", *size, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sign_in"]["signed_in"] == 20
    steady = report["steady"]
    assert steady["sent"] == steady["accepted"] == steady["delivered"] == 50
    assert report["held"]["connected_at_end"] == 20
    assert report["server_log"] == {"exit_status": 0, "warnings": 0, "errors": 0}


def test_transfer_benchmark_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.transfer_speed", "--size-mb", "8", "--no-wormhole", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ours_loopback"]["complete"] is True
    assert report["ours_loopback"]["MBps"] > 0


@pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (dev-setup.sh --test installs it)"
)
def test_app_startup_benchmark_starts_the_real_app_both_ways() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.app_startup", "--runs", "1", "--idle-seconds", "1", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["first_run_to_sign_in_window_s"]["median"] > 0
    assert report["remembered_to_main_window_s"]["median"] > 0
    assert report["idle_signed_in"]["rss_mb"] > 0
