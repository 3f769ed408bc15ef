"""Sound cards through sounddevice (PortAudio): microphones and speakers with the `audio_io` interfaces.

PortAudio calls our callbacks on its own thread. The microphone's callback copies each captured block and
hands it to the event loop with ``call_soon_threadsafe``; the speaker's callback takes frames from a
thread-safe queue that `play` fills (silence when it runs dry, so an underrun is a click, not a stall).
When a device disappears (unplugged headset), the stream reports an error or stops; the backend says so
through ``on_problem`` and reopens the system's default device, so the call goes on.

Echo cancellation and noise suppression: no maintained Python library for them installs here (the WebRTC
audio-processing bindings need a build this project does not ship), so `Microphone` frames go out as
captured. `app.voice.audio_io.AudioProcessor` is the hook for one (`CallMedia` takes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.errors import PunchlineError
from app.voice.opus_codec import CHANNELS, SAMPLE_RATE, CodecSettings

#: Called with a sentence for the user when a device fails and the default one is used instead.
ProblemHandler = Callable[[str], None]


class AudioDeviceError(PunchlineError):
    """No usable audio device (the message says which and why)."""


@dataclass(frozen=True)
class AudioDevice:
    """One sound device as PortAudio lists it."""

    index: int
    name: str
    inputs: int
    outputs: int
    default_input: bool
    default_output: bool


def _sounddevice() -> Any:
    try:
        import sounddevice  # noqa: PLC0415 - PortAudio is loaded only when a sound card is wanted
    except OSError as exc:  # libportaudio2 missing
        raise AudioDeviceError(f"PortAudio is not available: {exc}") from exc
    return sounddevice


def list_devices(backend: Any = None) -> list[AudioDevice]:
    """The sound devices this computer has, for the device pickers."""
    sd = backend or _sounddevice()
    default_in, default_out = sd.default.device
    return [
        AudioDevice(
            index,
            str(info["name"]),
            int(info["max_input_channels"]),
            int(info["max_output_channels"]),
            index == default_in,
            index == default_out,
        )
        for index, info in enumerate(sd.query_devices())
    ]


class _DeviceStream:
    """What both directions share: opening a PortAudio stream, falling back to the default device."""

    #: "microphone" or "speaker", for the messages; and the sounddevice stream class to open.
    what = ""
    stream_class = ""

    def __init__(
        self,
        device: int | str | None,
        settings: CodecSettings | None,
        on_problem: ProblemHandler | None,
        backend: Any,
    ) -> None:
        self.settings = settings or CodecSettings()
        self._sd = backend or _sounddevice()
        self._loop = asyncio.get_running_loop()
        self._on_problem = on_problem or (lambda message: None)
        self._stream: Any = None

    def _open(self, device: int | str | None) -> None:
        try:
            self._stream = getattr(self._sd, self.stream_class)(
                samplerate=SAMPLE_RATE,
                channels=CHANNELS,
                dtype="int16",
                blocksize=self.settings.frame_samples,
                device=device,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError, ValueError for an unknown device
            if device is None:
                raise AudioDeviceError(f"no {self.what} can be opened: {exc}") from exc
            self._on_problem(f"The {self.what} {device!r} cannot be used ({exc}); using the default one.")
            self._open(None)

    def _callback(self, data: Any, frames: int, time: Any, status: Any) -> None:
        raise NotImplementedError

    def _finished(self) -> None:
        # PortAudio's thread: the stream stopped without us (the device went away), or we closed it.
        with contextlib.suppress(RuntimeError):  # the event loop is already gone
            self._loop.call_soon_threadsafe(self._reopen)

    def _reopen(self) -> None:
        if self._stream is None:
            return  # closed on purpose
        self._on_problem(f"The {self.what} stopped working; switching to the default {self.what}.")
        self._open(None)

    def close(self) -> None:
        """Stop the stream."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


class DeviceMicrophone(_DeviceStream):
    """A sound card's input as a `Microphone` (48 kHz mono 16-bit, one frame per block)."""

    what, stream_class = "microphone", "RawInputStream"

    def __init__(
        self,
        device: int | str | None = None,
        settings: CodecSettings | None = None,
        *,
        on_problem: ProblemHandler | None = None,
        backend: Any = None,
    ) -> None:
        super().__init__(device, settings, on_problem, backend)
        self._frames: asyncio.Queue[bytes] = asyncio.Queue(maxsize=50)
        self._open(device)

    def _callback(self, data: Any, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: copy the block (its buffer is reused) and hand it to the event loop.
        block = bytes(data)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver, block)

    def _deliver(self, block: bytes) -> None:
        if self._frames.full():
            self._frames.get_nowait()  # we fell behind: drop the oldest, keep the delay short
        self._frames.put_nowait(block)

    async def read(self) -> bytes:
        """The next captured frame."""
        return await self._frames.get()


class DeviceSpeaker(_DeviceStream):
    """A sound card's output as a `Speaker`; ``volume`` scaling is the call's (`CallMedia.volume`)."""

    what, stream_class = "speaker", "RawOutputStream"

    def __init__(
        self,
        device: int | str | None = None,
        settings: CodecSettings | None = None,
        *,
        on_problem: ProblemHandler | None = None,
        backend: Any = None,
    ) -> None:
        super().__init__(device, settings, on_problem, backend)
        # Two frames of slack between our playout clock and the card's.
        self._frames: queue.Queue[bytes] = queue.Queue(maxsize=3)
        self._silence = bytes(self.settings.frame_bytes)
        self.underruns = 0
        self._open(device)

    def _callback(self, data: Any, frames: int, time: Any, status: Any) -> None:
        # PortAudio's thread: the next frame, or silence if the network has not delivered one in time.
        try:
            frame = self._frames.get_nowait()
        except queue.Empty:
            frame = self._silence
            self.underruns += 1
        data[: len(frame)] = frame

    def play(self, pcm: bytes) -> None:
        """Queue one frame; if the card has fallen behind, the oldest waiting frame is dropped."""
        try:
            self._frames.put_nowait(pcm)
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                self._frames.get_nowait()
            self._frames.put_nowait(pcm)
