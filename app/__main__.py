"""``punchline``: the desktop app's entry point (``punchline --self-test`` checks an installed bundle)."""

from __future__ import annotations

import sys

from app.desktop_options import parse_args


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app: sign in, then your contacts; or run the self-test."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        import platformdirs  # noqa: PLC0415

        from app.self_test import run as self_test  # noqa: PLC0415

        return self_test(args.config_dir or platformdirs.user_config_path("punchline", appauthor=False))
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
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
