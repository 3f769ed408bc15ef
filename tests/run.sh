#!/usr/bin/env bash
# The whole test suite, as README and CI run it: install, lint, type-check, the package boundaries (the Qt fence), pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/dev-setup.sh --test
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== boundaries"; .venv/bin/python tests/check_boundaries.py
echo "== pytest"; .venv/bin/python -m pytest "$@"
