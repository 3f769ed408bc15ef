"""PyInstaller runtime hook: libopus and PortAudio come from the bundle, not from the system.

opuslib and sounddevice look their libraries up with ``ctypes.util.find_library``, which knows only the
system's folders. This runs before the app imports them and answers with the copies in the bundle's
``punchline-libs`` folder (see punchline.spec), so the user installs nothing.
"""

import ctypes.util
import sys
from pathlib import Path

_BUNDLED = Path(getattr(sys, "_MEIPASS", ".")) / "punchline-libs"
_system_find_library = ctypes.util.find_library


def _find_library(name: str) -> str | None:
    for candidate in sorted(_BUNDLED.glob(f"*{name}*")):
        return str(candidate)
    return _system_find_library(name)


ctypes.util.find_library = _find_library
