"""The ringtone: a short sound from ``resources/sounds`` played on a speaker, over and over, until stopped.

It goes through the same `Speaker` as the call's audio (PortAudio, or a file without a sound card), so it
needs no multimedia library; a missing device only means a silent ring (the window still shows the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

from app.voice.audio_io import Speaker
from app.voice.opus_codec import CodecSettings

RINGTONE = Path(__file__).resolve().parents[2] / "resources" / "sounds" / "ringtone.wav"


async def ring(
    speaker: Speaker, settings: CodecSettings, *, pause: float = 1.5, path: Path = RINGTONE
) -> None:
    """Play ``path``, then ``pause`` s of silence, again and again until cancelled; then close the speaker."""
    loop = asyncio.get_running_loop()
    try:
        with wave.open(str(path), "rb") as wav:
            pcm = wav.readframes(wav.getnframes())
        size = settings.frame_bytes
        frames = [pcm[i : i + size].ljust(size, b"\0") for i in range(0, len(pcm), size)]
        frames += [bytes(size)] * int(pause * 1000 / settings.frame_ms)
        period = settings.frame_ms / 1000
        next_at = loop.time()
        while True:
            for frame in frames:
                speaker.play(frame)
                next_at += period
                await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        with contextlib.suppress(Exception):
            speaker.close()
