"""Where a call's sound comes from and goes to: the sound card (the app's default) or WAV files.

The app picks a backend once; each call asks it for a fresh microphone and speaker. `FileAudio` is for
machines without a sound card (tests, screenshots, a server): it "hears" a WAV file and records what it plays.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.session.peer_session import PeerSession
from app.voice.audio_io import AudioFileError, Microphone, Speaker, WavMicrophone, WavSpeaker
from app.voice.call import MediaFactory
from app.voice.call_media import CallMedia, MediaConfig
from app.voice.opus_codec import CodecSettings
from app.voice.sound_devices import (
    AudioDevice,
    AudioDeviceError,
    DeviceMicrophone,
    DeviceSpeaker,
    ProblemHandler,
    list_devices,
)


class AudioBackend(Protocol):
    """Makes the microphone and speaker of each call, and lists the devices to choose from."""

    #: The devices chosen in the pickers, by name (None: the system's default).
    input_device: str | None
    output_device: str | None

    def microphone(self, settings: CodecSettings) -> Microphone:
        """A microphone for one call (raises `AudioDeviceError` or `AudioFileError` with a sentence)."""
        ...

    def speaker(self, settings: CodecSettings) -> Speaker:
        """A speaker for one call (or for the ringtone)."""
        ...

    def devices(self) -> list[AudioDevice]:
        """The devices the pickers offer (none for files)."""
        ...


@dataclass
class DeviceAudio:
    """The sound card: the chosen devices by name (None: the system's default; also the fallback)."""

    input_device: str | None = None
    output_device: str | None = None
    on_problem: ProblemHandler | None = None

    def microphone(self, settings: CodecSettings) -> Microphone:
        """The chosen input device."""
        return DeviceMicrophone(self.input_device, settings, on_problem=self.on_problem)

    def speaker(self, settings: CodecSettings) -> Speaker:
        """The chosen output device."""
        return DeviceSpeaker(self.output_device, settings, on_problem=self.on_problem)

    def devices(self) -> list[AudioDevice]:
        """What PortAudio lists; nothing when PortAudio is missing."""
        try:
            return list_devices()
        except AudioDeviceError:
            return []


@dataclass
class FileAudio:
    """No sound card: the microphone plays ``mic`` (48 kHz mono WAV); speakers record into ``record_dir``."""

    mic: Path
    record_dir: Path
    input_device: str | None = None  # files have no devices: kept for the pickers only
    output_device: str | None = None
    _count: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def microphone(self, settings: CodecSettings) -> Microphone:
        """The WAV file, paced like a real microphone."""
        return WavMicrophone(self.mic, settings)

    def speaker(self, settings: CodecSettings) -> Speaker:
        """A new recording, ``heard-1.wav``, ``heard-2.wav``…"""
        self.record_dir.mkdir(parents=True, exist_ok=True)
        return WavSpeaker(self.record_dir / f"heard-{next(self._count)}.wav")

    def devices(self) -> list[AudioDevice]:
        """Files have no devices to pick."""
        return []


class _Silence:
    """Stands in for a missing device: a microphone that captures silence, a speaker that plays nowhere."""

    def __init__(self, settings: CodecSettings) -> None:
        self._frame = bytes(settings.frame_bytes)
        self._period = settings.frame_ms / 1000

    async def read(self) -> bytes:
        await asyncio.sleep(self._period)
        return self._frame

    def play(self, pcm: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def call_media_for(
    backend: AudioBackend, config: MediaConfig | None = None, on_problem: ProblemHandler | None = None
) -> MediaFactory:
    """What `CallDesk` needs: each answered call gets the backend's microphone and speaker.

    A device that cannot open does not stop the call: it goes on without it (silence), and ``on_problem``
    hears why.
    """
    settings = config or MediaConfig()

    def open_or_silence(opener: Callable[[CodecSettings], Any], what: str) -> Any:
        try:
            return opener(settings.codec)
        except (AudioDeviceError, AudioFileError, OSError) as exc:
            if on_problem is not None:
                on_problem(f"No {what} for this call: {exc}")
            return _Silence(settings.codec)

    def media(session: PeerSession) -> CallMedia:
        microphone: Microphone = open_or_silence(backend.microphone, "microphone")
        speaker: Speaker = open_or_silence(backend.speaker, "speaker")
        return CallMedia(session, microphone, speaker, settings)

    return media
