"""Helpers for the processes tests and benchmarks start (servers, the app, coturn)."""

from __future__ import annotations

import asyncio


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
