"""The one poll-until: for a value that changes with nothing to await on (a counter, a widget, a list of
events, a log file), let the running loop work and look again until it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often the condition is looked at (the loop runs freely in between: Qt's as well as asyncio's).
INTERVAL = 0.02


async def until(condition: Callable[[], T], timeout: float, what: str = "the condition") -> T:
    """Wait until ``condition()`` is true and return its value; `TimeoutError` naming ``what`` after
    ``timeout`` seconds.

    It sleeps between looks, so it also works in the app's loop (qasync), where a nested ``qtbot.waitUntil``
    loop would stall the core's asyncio tasks.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        if loop.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        await asyncio.sleep(INTERVAL)
    return value
