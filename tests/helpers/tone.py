"""The one tone writer, for microphones made of WAV files, and what tells tones apart in what was heard.

Everything is 48 kHz, mono, 16-bit, as the app's audio is.
"""

from __future__ import annotations

import array
import itertools
import math
import wave
from pathlib import Path

RATE = 48_000


def tone_samples(hz: float, count: int, amplitude: int = 9000, start: int = 0) -> array.array[int]:
    """``count`` samples of a sine at ``hz`` from sample ``start`` on (``hz=0``: silence)."""
    return array.array(
        "h", (int(amplitude * math.sin(2 * math.pi * hz * i / RATE)) for i in range(start, start + count))
    )


def write_tone(path: Path, hz: float, seconds: float) -> None:
    """A WAV file of a pure tone at ``hz`` lasting ``seconds`` (``hz=0``: silence)."""
    samples = tone_samples(hz, int(RATE * seconds))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())


def segment(path: Path, start: float, end: float) -> array.array[int]:
    """The samples of a WAV file from ``start`` to ``end`` seconds."""
    with wave.open(str(path), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    return array.array("h", pcm[int(start * RATE) * 2 : int(end * RATE) * 2])


def pitch(samples: array.array[int]) -> float:
    """The frequency of a pure tone, from its zero crossings."""
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / RATE)
