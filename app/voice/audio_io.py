"""Where a call's audio comes from and goes to: the interfaces, and the WAV-file backend.

A `Microphone` hands out one frame of 16-bit mono 48 kHz PCM per frame period; a `Speaker` takes one per
frame period. The WAV backend reads a file as the microphone and writes what is played to a file, paced in
real time by the event loop's clock, so whole calls run headless (tests, the CLI, the benchmark). Sound
cards come through `app.voice.sound_devices` with the same interfaces.
"""

from __future__ import annotations

import array
import asyncio
import math
import wave
from pathlib import Path
from typing import Protocol

from app.errors import FinalError
from app.voice.opus_codec import CHANNELS, SAMPLE_BYTES, SAMPLE_RATE, CodecSettings


class AudioFileError(FinalError):
    """A WAV file that cannot be used as it is; the message says how to convert it."""


class Microphone(Protocol):
    """Captured audio, one frame at a time."""

    async def read(self) -> bytes:
        """The next frame of PCM, when it has been captured."""
        ...

    def close(self) -> None:
        """Stop capturing."""
        ...


class Speaker(Protocol):
    """Audio to play, one frame at a time."""

    def play(self, pcm: bytes) -> None:
        """Play one frame of PCM (called once per frame period)."""
        ...

    def close(self) -> None:
        """Stop playing (and finish any file)."""
        ...


class AudioProcessor(Protocol):
    """Echo cancellation / noise suppression: the frame to send, from the captured one and the one played."""

    def __call__(self, captured: bytes, played: bytes | None) -> bytes: ...


def level_dbfs(pcm: bytes) -> float:
    """The loudness of a frame in dB below full scale (-96 for silence): for an input level meter."""
    samples = array.array("h", pcm)
    if not samples:
        return -96.0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return max(-96.0, 20 * math.log10(rms / 32768)) if rms > 0 else -96.0


def scale(pcm: bytes, volume: float) -> bytes:
    """PCM with its volume multiplied by ``volume`` (clipped to 16 bits)."""
    if volume == 1.0:
        return pcm
    samples = array.array("h", pcm)
    for i, sample in enumerate(samples):
        samples[i] = max(-32768, min(32767, int(sample * volume)))
    return samples.tobytes()


class WavMicrophone:
    """A WAV file (48 kHz, mono, 16-bit) as the microphone, one frame per frame period; silence after it."""

    def __init__(self, path: Path, settings: CodecSettings | None = None) -> None:
        self.settings = settings or CodecSettings()
        try:
            with wave.open(str(path), "rb") as wav:
                shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
                if shape != (SAMPLE_RATE, CHANNELS, SAMPLE_BYTES):
                    raise AudioFileError(
                        f"{path} is {shape[0]} Hz, {shape[1]} channel(s), {8 * shape[2]}-bit; calls use "
                        f"48000 Hz mono 16-bit (convert with: sox {path} -r 48000 -c 1 -b 16 out.wav)"
                    )
                self._pcm = wav.readframes(wav.getnframes())
        except (OSError, EOFError, wave.Error) as exc:
            raise AudioFileError(f"cannot read {path} as a WAV file: {exc}") from exc
        self._position = 0
        self._next: float | None = None
        self.finished = asyncio.Event()

    @property
    def duration(self) -> float:
        """Seconds of audio in the file."""
        return len(self._pcm) / (SAMPLE_RATE * SAMPLE_BYTES)

    async def read(self) -> bytes:
        """The next frame, at the moment a real microphone would have captured it."""
        loop = asyncio.get_running_loop()
        period = self.settings.frame_ms / 1000
        now = loop.time()
        if self._next is None:
            self._next = now + period  # the first frame is full one period after capture starts
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next += period
        size = self.settings.frame_bytes
        frame = self._pcm[self._position : self._position + size]
        self._position += size
        if len(frame) < size:
            self.finished.set()
            frame += bytes(size - len(frame))
        return frame

    def close(self) -> None:
        """Nothing to release (the file was read at the start)."""


class WavSpeaker:
    """Writes every frame played to a WAV file (48 kHz, mono, 16-bit)."""

    def __init__(self, path: Path) -> None:
        try:
            self._wav = wave.open(str(path), "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise AudioFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_BYTES)
        self._wav.setframerate(SAMPLE_RATE)
        self.frames_played = 0

    def play(self, pcm: bytes) -> None:
        """Append one frame to the file."""
        self._wav.writeframes(pcm)
        self.frames_played += 1

    def close(self) -> None:
        """Finish the WAV header."""
        self._wav.close()
