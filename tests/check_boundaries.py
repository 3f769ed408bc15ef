"""The package boundaries, checked on the source (imports found with ``ast``) by the test command.

* Only ``app/gui/`` imports Qt (PySide6, shiboken6): the core stays testable headless.
* The app reaches the server only through the neutral ``rendezvous.wire`` (wire formats, default ports);
  ``app/embedded_server.py``, which runs the server inside the app, is the one exception.
* ``rendezvous.wire`` imports nothing from ``app`` and nothing of ``rendezvous`` outside itself.
* The NAT code does not import the network check (the check builds on the NAT code, not the other way).
* Nothing outside ``app/cli/`` imports the command line.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = ("PySide6", "shiboken6")


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def qt_imports(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) for every Qt import in one Python file."""
    return [(line, name) for line, name in imported_modules(path) if name.split(".")[0] in QT_MODULES]


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(path: Path) -> list[str]:
    """What ``path`` imports across a boundary it must not cross."""
    relative = path.relative_to(ROOT).as_posix()
    module = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    found: list[str] = []
    for line, name in imported_modules(path):
        where = f"{relative}:{line}: imports {name}"
        if name.split(".")[0] in QT_MODULES and not _under(module, "app.gui"):
            found.append(f"{where} (only app/gui/ may import Qt)")
        if (
            _under(module, "app")
            and _under(name, "rendezvous")
            and not _under(name, "rendezvous.wire")
            and module != "app.embedded_server"
        ):
            found.append(f"{where} (the app reaches the server only through rendezvous.wire)")
        if _under(module, "rendezvous.wire") and (
            _under(name, "app") or (_under(name, "rendezvous") and not _under(name, "rendezvous.wire"))
        ):
            found.append(f"{where} (rendezvous.wire is neutral: it imports neither side)")
        if _under(module, "app.nat") and _under(name, "app.netcheck"):
            found.append(f"{where} (the NAT code does not import the network check)")
        if _under(name, "app.cli") and not _under(module, "app.cli"):
            found.append(f"{where} (nothing outside app/cli/ imports the command line)")
    return found


def main() -> int:
    """Scan app/ and rendezvous/; print each violation and return non-zero if any."""
    bad: list[str] = []
    for package in ("app", "rendezvous"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad.extend(violations(path))
    for line in bad:
        print(line)
    print(f"boundaries: {'FAILED' if bad else 'ok'} ({len(bad)} imports across a boundary)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
