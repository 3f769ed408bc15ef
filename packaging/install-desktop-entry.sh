#!/usr/bin/env bash
# Adds Punchline to your desktop's application menu (for you only; no root needed).
#   bash packaging/install-desktop-entry.sh [PROGRAM]
# PROGRAM: the punchline to start — the bundle's (build/bundle/dist/punchline/punchline) or an installed
# one (default: `punchline` on your PATH). Undo with: bash packaging/install-desktop-entry.sh --remove
set -euo pipefail
cd "$(dirname "$0")/.."
data="${XDG_DATA_HOME:-$HOME/.local/share}"
entry="$data/applications/punchline.desktop"
icon="$data/icons/hicolor/scalable/apps/punchline.svg"

if [ "${1:-}" = "--remove" ]; then
    rm -f "$entry" "$icon"
    echo "Removed $entry and $icon"
else
    program="${1:-$(command -v punchline || true)}"
    if [ -z "$program" ] || [ ! -x "$program" ]; then
        echo "install-desktop-entry: no punchline program found; name it: $0 PATH/TO/punchline" >&2
        exit 2
    fi
    program="$(realpath "$program")"
    mkdir -p "$(dirname "$entry")" "$(dirname "$icon")"
    cp resources/icons/punchline.svg "$icon"
    # Exec and TryExec get the program's full path (quoted for paths with spaces, as the spec says).
    sed -e "s|^Exec=punchline|Exec=\"$program\"|" -e "s|^TryExec=punchline|TryExec=$program|" \
        resources/punchline.desktop > "$entry"
    echo "Installed $entry (starts $program) and $icon"
fi
command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
