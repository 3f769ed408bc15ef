#!/usr/bin/env bash
# Builds the desktop app as a self-contained one-folder bundle (PyInstaller) and runs its self-test.
#   bash packaging/build-bundle.sh [OUT]      default OUT: build/bundle
# The bundle is OUT/dist/punchline/ (start it with OUT/dist/punchline/punchline); the self-test runs it with
# an empty environment and from another folder, so nothing of this checkout or its virtualenv can help it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-build/bundle}")"

bash packaging/dev-setup.sh
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[desktop,bundle]'
started=$(date +%s)
.venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
    --distpath "$out/dist" --workpath "$out/work" packaging/punchline.spec
echo "build-bundle: built in $(( $(date +%s) - started )) s: $out/dist/punchline ($(du -sh "$out/dist/punchline" | cut -f1))"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
env -i HOME="$scratch" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
    "$out/dist/punchline/punchline" --self-test --config-dir "$scratch/config"
