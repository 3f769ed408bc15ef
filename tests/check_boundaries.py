"""Fails when anything outside app/gui/ imports PySide6 (or shiboken6).

Only the GUI package may touch Qt, so the core stays testable headless. This is a static check on the
source (import statements found with ``ast``), run by the test command before pytest.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QT_MODULES = ("PySide6", "shiboken6")
ALLOWED = ROOT / "app" / "gui"


def qt_imports(path: Path) -> list[tuple[int, str]]:
    """Return (line, module) for every Qt import in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        found.extend((node.lineno, n) for n in names if n.split(".")[0] in QT_MODULES)
    return found


def main() -> int:
    """Scan app/ and rendezvous/; print each offending import and return non-zero if any."""
    bad: list[str] = []
    for package in ("app", "rendezvous"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ALLOWED):
                continue
            bad.extend(f"{path.relative_to(ROOT)}:{line}: imports {mod}" for line, mod in qt_imports(path))
    for line in bad:
        print(line)
    print(f"qt fence: {'FAILED' if bad else 'ok'} ({len(bad)} Qt imports outside app/gui/)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
