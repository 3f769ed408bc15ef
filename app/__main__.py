"""``punchline``: the desktop app's entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app. The window is not built yet: say so plainly and point at what works today."""
    print(
        "punchline: the desktop window is not part of this version yet.\n"
        "Use 'punchline-cli' (accounts, contacts, whoami) and 'punchline-rendezvous' (the server).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
