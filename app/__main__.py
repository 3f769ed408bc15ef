"""``punchline``: the desktop app's entry point (``punchline --self-test`` checks an installed bundle)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app: sign in, then your contacts; or run the self-test."""
    args = sys.argv[1:] if argv is None else argv
    if "--self-test" in args:
        import platformdirs  # noqa: PLC0415

        from app.self_test import run as self_test  # noqa: PLC0415

        config = _config_dir(args) or platformdirs.user_config_path("punchline", appauthor=False)
        return self_test(config)
    try:
        from app.gui.app import run  # noqa: PLC0415 - Qt loads only when the window is wanted
    except ImportError as exc:
        if exc.name not in ("PySide6", "qasync", "keyring"):
            raise
        print(
            f"punchline: the desktop window needs {exc.name}, which is not installed here.\n"
            "Install it with: pip install 'punchline[desktop]' (or use punchline-cli).",
            file=sys.stderr,
        )
        return 2
    return run(["punchline", *args])


def _config_dir(args: list[str]) -> Path | None:
    """``--config-dir DIR`` from the command line, if given (the self-test checks that folder)."""
    for i, arg in enumerate(args):
        if arg == "--config-dir" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--config-dir="):
            return Path(arg.split("=", 1)[1])
    return None


if __name__ == "__main__":
    sys.exit(main())
