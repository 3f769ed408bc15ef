#!/usr/bin/env bash
# Installs what Punchline needs on a Debian/Ubuntu machine into ./.venv.
#   packaging/dev-setup.sh          the desktop app, the CLI and the server
#   packaging/dev-setup.sh --test   plus the test tools and the system packages the tests use
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
# Calls: the Opus codec and PortAudio, which opuslib and sounddevice load at run time.
/sbin/ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0' || apt_packages+=(libopus0)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || apt_packages+=(libportaudio2)
# The window (PySide6): the libraries Qt's widgets load on Debian/Ubuntu.
for pair in libEGL.so.1:libegl1 libGL.so.1:libgl1 libfontconfig.so.1:libfontconfig1 \
    libxkbcommon.so.0:libxkbcommon0 libdbus-1.so.3:libdbus-1-3 libglib-2.0.so.0:libglib2.0-0; do
    /sbin/ldconfig -p 2>/dev/null | grep -q "${pair%%:*}" || apt_packages+=("${pair##*:}")
done
if [ "$with_tests" -eq 1 ]; then
    # coturn: a third-party STUN/TURN server and client to test interoperability against.
    command -v turnutils_stunclient >/dev/null || apt_packages+=(coturn)
    # The NAT lab (tests/helpers/natlab, its tests in tests/natlab): namespaces, veths and tbf (iproute2), NAT
    # rules (nftables), and conntrack to flush or inspect a router's mappings.
    command -v ip >/dev/null || apt_packages+=(iproute2)
    command -v nft >/dev/null || apt_packages+=(nftables)
    command -v conntrack >/dev/null || apt_packages+=(conntrack)
    # Screenshots (tests/screenshots.py): a virtual X display and what Qt's xcb platform loads there.
    command -v Xvfb >/dev/null || apt_packages+=(xvfb)
    for pair in libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1 \
        libxcb-shape.so.0:libxcb-shape0 libxcb-xkb.so.1:libxcb-xkb1 libxkbcommon-x11.so.0:libxkbcommon-x11-0 \
        libxcb-image.so.0:libxcb-image0 libxcb-render-util.so.0:libxcb-render-util0 \
        libxcb-xinerama.so.0:libxcb-xinerama0 libxcb-cursor.so.0:libxcb-cursor0; do
        /sbin/ldconfig -p 2>/dev/null | grep -q "${pair%%:*}" || apt_packages+=("${pair##*:}")
    done
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_packages+=(fonts-dejavu-core)
    # Packaging checks: the .desktop file's validator (systemd-analyze comes with systemd where it runs).
    command -v desktop-file-validate >/dev/null || apt_packages+=(desktop-file-utils)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "dev-setup: installing system packages: ${apt_packages[*]}"
    sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [ "$with_tests" -eq 1 ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[desktop,test]'
else
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[desktop]'
fi
