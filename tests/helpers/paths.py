"""Where things are: the checkout the tests run from."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (README.md, pyproject.toml, app/, rendezvous/, tests/).
REPO_ROOT = Path(__file__).resolve().parents[2]
