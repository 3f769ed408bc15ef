"""The app's event loop (qasync on PySide6) survives long use: Qt's callbacks keep Python's books straight.

PySide6-Essentials 6.12.0 released one reference to None on every callback from Qt; on Python 3.11 (where
None is not immortal) the app aborted with "none_dealloc" after about 8000 timer events — two minutes of a
call. This runs 3000 timer events and checks that None's reference count did not fall.
"""

from __future__ import annotations

import asyncio
import sys


async def test_timer_callbacks_do_not_release_none() -> None:
    before = sys.getrefcount(None)
    for _ in range(3000):
        await asyncio.sleep(0)
        await asyncio.sleep(0.0001)  # a Qt timer event in qasync
    assert sys.getrefcount(None) >= before - 100
