"""Helpers for the processes tests, benchmarks and the screenshot script start (servers, the app, coturn,
Xvfb)."""

from __future__ import annotations

import asyncio
import os
import subprocess


async def stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """End ``process``: SIGTERM, then SIGKILL if it is still there after ``grace`` seconds."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    """A virtual X display; returns the process and the display name (Xvfb picks a free number)."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1500x900x24", "-nolisten", "tcp"],
        pass_fds=[write],
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        xvfb.kill()
        raise SystemExit("Xvfb did not start (install it: apt-get install xvfb)")
    return xvfb, f":{number}"
