"""``punchline``: the desktop app's entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app: sign in, then your contacts (calls and files in the window come next)."""
    from app.gui.app import run  # noqa: PLC0415 - Qt loads only when the window is wanted

    return run(sys.argv if argv is None else ["punchline", *argv])


if __name__ == "__main__":
    sys.exit(main())
