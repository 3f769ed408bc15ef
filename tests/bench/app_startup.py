"""Benchmark: the desktop app's start-up time, and the idle CPU and memory of a signed-in app.

With ``--executable build/bundle/dist/punchline/punchline`` it measures the packaged app instead.

The real app (``python -m app``) runs under Xvfb with Qt's xcb platform, as on a desktop, against a local
rendezvous server, with a contact (bob) online:

- first run: from launching the process to the sign-in window on screen;
- remembered: with a saved session token, to the main window on screen (signed in, contacts shown);
- idle: that signed-in app left alone for ``--idle-seconds``: CPU time (user + system, % of one core) and
  resident memory (RSS, MB) at the end.

Targets: start ≤ 1.5 s, idle ≤ 1 % CPU, ≤ 150 MB. It prints numbers and never fails on them.

    .venv/bin/python -m tests.bench.app_startup [--runs 5] [--idle-seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.account.identity import load_or_create_identity
from app.account.remembered import RememberedSignIn
from app.account.signing_in import register, sign_in
from app.signalling.client import Credentials, SignallingClient
from rendezvous.config import Limits, ServerConfig
from rendezvous.server import RendezvousServer
from tests.helpers.paths import REPO_ROOT
from tests.helpers.processes import start_xvfb, stop

PASSWORD = "correct horse battery"
COLD = False  # --cold: every start from an empty page cache (root)


async def launch(
    config: Path, *, display: str, program: list[str]
) -> tuple[asyncio.subprocess.Process, float, str]:
    """Start the app; returns it, the seconds until it said a window is shown, and which window."""
    if COLD:
        drop_page_cache()
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *program,
        "--config-dir",
        str(config),
        "--downloads",
        str(config / "Downloads"),
        "--report-startup",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the app exited before showing a window")
            if line.startswith("punchline: ") and line.rstrip().endswith(" shown"):
                return process, time.perf_counter() - started, line[len("punchline: ") : -len(" shown\n")]


def drop_page_cache() -> None:
    """Empty the kernel's page cache (root): the next start reads the app from disk, a cold start."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(runs: int, idle_seconds: float, program: list[str]) -> dict[str, Any]:
    """Start the app ``runs`` times each way, then watch one signed-in app idle."""
    xvfb, display = start_xvfb()
    work = Path(tempfile.mkdtemp(prefix="punchline-startup-"))
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        stun_port=0,
        data_dir=work / "server",
        limits=Limits(registrations_per_ip_per_hour=99),
    )
    server = await RendezvousServer.start(config)
    bob: SignallingClient | None = None
    try:
        for name in ("alice", "bob"):
            await register(server.url, name, PASSWORD)
        bob = await sign_in(
            server.url, Credentials("bob", password=PASSWORD), load_or_create_identity(work / "bob")
        )
        first_runs: list[float] = []
        for run in range(runs):
            process, seconds, window = await launch(work / f"fresh-{run}", display=display, program=program)
            assert window == "sign-in window", window
            first_runs.append(seconds)
            await stop(process)
        alice_dir = work / "alice"
        alice = await sign_in(
            server.url, Credentials("alice", password=PASSWORD), load_or_create_identity(alice_dir)
        )
        await alice.add_contact("bob")
        await bob.accept_contact("alice")
        assert alice.token is not None
        RememberedSignIn(alice_dir).remember(server.url, "alice", alice.token)
        await alice.close()
        remembered_runs: list[float] = []
        idle: dict[str, float] = {}
        for run in range(runs):
            process, seconds, window = await launch(alice_dir, display=display, program=program)
            assert window == "main window", window
            remembered_runs.append(seconds)
            if run == runs - 1:
                await asyncio.sleep(3.0)  # let start-up work (imports, first paint, presence) finish
                before, at = cpu_seconds(process.pid), time.monotonic()
                await asyncio.sleep(idle_seconds)
                used, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - at
                idle = {
                    "seconds": round(elapsed, 1),
                    "cpu_percent": round(100 * used / elapsed, 2),
                    "rss_mb": round(rss_mb(process.pid), 1),
                }
            await stop(process)
    finally:
        if bob is not None:
            await bob.close()
        await server.close()
        xvfb.terminate()
        xvfb.wait(5)
    return {
        "program": " ".join(program),
        "cold": COLD,
        "runs": runs,
        "first_run_to_sign_in_window_s": _summary(first_runs),
        "remembered_to_main_window_s": _summary(remembered_runs),
        "idle_signed_in": idle,
        "targets": {"start_s": 1.5, "idle_cpu_percent": 1.0, "rss_mb": 150},
    }


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
    }


def main() -> None:
    """Run and print the numbers."""
    parser = argparse.ArgumentParser(description="Desktop app start-up time and idle cost.")
    parser.add_argument("--runs", type=int, default=5, help="starts of each kind (median reported)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="how long to watch the idle app")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--executable", type=Path, help="start this program (the bundle's punchline) instead of python -m app"
    )
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each start (root)")
    args = parser.parse_args()
    global COLD  # noqa: PLW0603 - a switch of this script, set once
    COLD = args.cold
    program = [str(args.executable)] if args.executable else [sys.executable, "-m", "app"]
    report = asyncio.run(measure(args.runs, args.idle_seconds, program))
    if args.json:
        print(json.dumps(report))
        return
    first, remembered, idle = (
        report["first_run_to_sign_in_window_s"],
        report["remembered_to_main_window_s"],
        report["idle_signed_in"],
    )
    print(
        f"first run → sign-in window:   median {first['median']:.2f} s"
        f" (min {first['min']:.2f}, max {first['max']:.2f})"
    )
    print(
        f"remembered → main window:     median {remembered['median']:.2f} s"
        f" (min {remembered['min']:.2f}, max {remembered['max']:.2f})   target ≤ 1.5 s"
    )
    print(
        f"idle, signed in ({idle['seconds']:.0f} s):      CPU {idle['cpu_percent']:.2f} % of one core"
        f" (target ≤ 1 %), RSS {idle['rss_mb']:.0f} MB (target ≤ 150 MB)"
    )


if __name__ == "__main__":
    main()
