"""``punchline --self-test``: check, with no display and no network, what a packaged app can break.

Each check exercises one thing a bundle must carry: Qt and its plugins (offscreen: widgets, the SVG icon
engine, the app icon), libopus (a frame encoded and decoded), PortAudio (initialised; a machine without a
sound card still passes), a UDP socket (a datagram to itself on loopback), and the identity key store
(writable, owner-only). The first failure stops the test with a sentence and exit status 1.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path


class SelfTestFailed(Exception):
    """A check failed; the message says what and how to fix it when we know."""


def check_qt() -> str:
    """Qt's widgets draw offscreen and the SVG icons load (the platform and image plugins are there)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.gui.self_check import draw_a_window  # noqa: PLC0415 - Qt loads only for this check

    return draw_a_window()


def check_opus() -> str:
    """libopus encodes and decodes one 20 ms frame."""
    from app.voice.opus_codec import CodecSettings, VoiceDecoder, VoiceEncoder  # noqa: PLC0415

    settings = CodecSettings()
    pcm = bytes(settings.frame_bytes)
    packet = VoiceEncoder(settings).encode(pcm)
    decoded = VoiceDecoder(settings).decode(packet)
    if len(decoded) != len(pcm):
        raise SelfTestFailed(f"Opus decoded {len(decoded)} bytes instead of {len(pcm)}")
    import opuslib.api.info  # noqa: PLC0415

    version = opuslib.api.info.get_version_string()
    return (
        f"{version.decode() if isinstance(version, bytes) else version}: a 20 ms frame in {len(packet)} bytes"
    )


def check_portaudio() -> str:
    """PortAudio loads and lists the sound devices (none is fine: calls then say so)."""
    from app.voice.sound_devices import AudioDeviceError, list_devices  # noqa: PLC0415

    try:
        devices = list_devices()
    except AudioDeviceError as exc:
        raise SelfTestFailed(str(exc)) from exc
    import sounddevice  # noqa: PLC0415

    return f"{sounddevice.get_portaudio_version()[1]}, {len(devices)} device(s)"


def check_udp() -> str:
    """A UDP socket opens and carries a datagram to itself on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(2.0)
        port = udp.getsockname()[1]
        udp.sendto(b"punchline self-test", ("127.0.0.1", port))
        data, _ = udp.recvfrom(64)
    if data != b"punchline self-test":
        raise SelfTestFailed("a UDP datagram to ourselves came back changed")
    return f"a datagram to 127.0.0.1:{port} and back"


def check_key_store(config_dir: Path) -> str:
    """The folder where the identity key lives can hold an owner-only file."""
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=config_dir, prefix=".self-test-", delete=True) as probe:
            os.fchmod(probe.fileno(), 0o600)
            probe.write(b"x")
            probe.flush()
    except OSError as exc:
        raise SelfTestFailed(f"cannot write to {config_dir}: {exc.strerror or exc}") from exc
    return f"{config_dir} is writable"


def run(config_dir: Path, out: Callable[[str], None] = print) -> int:
    """Run every check in order; 0 when all pass, 1 at the first failure (said in one line)."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        out(f"Punchline {metadata.version('punchline')} self-test (Python {sys.version.split()[0]})")
    checks: list[tuple[str, Callable[[], str]]] = [
        ("Qt", check_qt),
        ("Opus", check_opus),
        ("PortAudio", check_portaudio),
        ("UDP", check_udp),
        ("key store", lambda: check_key_store(config_dir)),
    ]
    for name, check in checks:
        try:
            detail = check()
        except Exception as exc:
            out(f"FAILED {name}: {exc}")
            return 1
        out(f"ok     {name}: {detail}")
    out("All checks passed.")
    return 0
