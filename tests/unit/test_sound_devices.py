"""The sound-card backend against a stand-in for PortAudio (this machine has no sound card).

The stand-in calls the stream callbacks from its own thread every frame period, as PortAudio does, and can
make a device vanish; everything else is the real backend.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.voice.sound_devices import AudioDeviceError, DeviceMicrophone, DeviceSpeaker, list_devices

FRAME = 960 * 2


class FakeStream:
    def __init__(
        self,
        backend: FakeSoundDevice,
        kind: str,
        device: Any,
        callback: Any,
        finished_callback: Any,
        **_: Any,
    ) -> None:
        if device not in (None, *backend.devices):
            raise ValueError(f"no device {device!r}")
        self.backend, self.kind, self.device = backend, kind, device
        self.callback, self.finished_callback = callback, finished_callback
        self.running = False
        backend.streams.append(self)

    def start(self) -> None:
        self.running = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        counter = 0
        while self.running:
            if self.kind == "input":
                self.callback(bytes([counter % 256]) * FRAME, 960, None, None)
            else:
                out = bytearray(FRAME)
                self.callback(out, 960, None, None)
                self.backend.played.append(bytes(out))
            counter += 1
            time.sleep(0.005)

    def vanish(self) -> None:
        self.running = False
        self.finished_callback()

    def close(self) -> None:
        self.running = False
        self.finished_callback()


class FakeSoundDevice:
    """Just what the backend uses of the sounddevice module."""

    def __init__(self) -> None:
        self.devices = ["headset", "speakers"]
        self.streams: list[FakeStream] = []
        self.played: list[bytes] = []
        self.default = type("Default", (), {"device": (0, 1)})()

    def RawInputStream(self, **kwargs: Any) -> FakeStream:
        return FakeStream(self, "input", **kwargs)

    def RawOutputStream(self, **kwargs: Any) -> FakeStream:
        return FakeStream(self, "output", **kwargs)

    def query_devices(self) -> list[dict[str, Any]]:
        return [
            {"name": "headset", "max_input_channels": 1, "max_output_channels": 2},
            {"name": "speakers", "max_input_channels": 0, "max_output_channels": 2},
        ]


def test_devices_are_listed_with_the_defaults_marked() -> None:
    devices = list_devices(FakeSoundDevice())
    assert [(d.name, d.inputs, d.default_input, d.default_output) for d in devices] == [
        ("headset", 1, True, False),
        ("speakers", 0, False, True),
    ]


async def test_the_microphone_hands_captured_frames_to_the_event_loop() -> None:
    backend = FakeSoundDevice()
    microphone = DeviceMicrophone("headset", backend=backend)
    frames = [await asyncio.wait_for(microphone.read(), 2) for _ in range(5)]
    microphone.close()
    assert all(len(f) == FRAME for f in frames)
    assert len({f[0] for f in frames}) == 5  # five different blocks, in order


async def test_a_vanished_microphone_is_replaced_by_the_default_one() -> None:
    backend = FakeSoundDevice()
    problems: list[str] = []
    microphone = DeviceMicrophone("headset", backend=backend, on_problem=problems.append)
    await asyncio.wait_for(microphone.read(), 2)
    backend.streams[0].vanish()
    await asyncio.sleep(0.05)
    assert problems == ["The microphone stopped working; switching to the default microphone."]
    assert backend.streams[-1].device is None
    await asyncio.wait_for(microphone.read(), 2)  # still capturing
    microphone.close()


async def test_an_unknown_device_falls_back_to_the_default_and_says_so() -> None:
    backend = FakeSoundDevice()
    problems: list[str] = []
    speaker = DeviceSpeaker("usb thing", backend=backend, on_problem=problems.append)
    assert "cannot be used" in problems[0]
    assert backend.streams[-1].device is None
    speaker.close()


async def test_the_speaker_plays_queued_frames_and_silence_when_starved() -> None:
    backend = FakeSoundDevice()
    speaker = DeviceSpeaker(backend=backend)
    for value in (1, 2):
        speaker.play(bytes([value]) * FRAME)
    await asyncio.sleep(0.1)
    speaker.close()
    played = [frame[0] for frame in backend.played]
    assert [value for value in played if value] == [1, 2]  # in order, each once
    assert played[-1] == 0  # then silence: the network had nothing more
    assert speaker.underruns >= 1


async def test_no_device_at_all_is_a_clear_error() -> None:
    backend = FakeSoundDevice()
    backend.devices = []

    def broken(**kwargs: Any) -> FakeStream:
        raise OSError("no default input device")

    backend.RawInputStream = broken  # type: ignore[method-assign]
    with pytest.raises(AudioDeviceError, match="no microphone can be opened"):
        DeviceMicrophone(backend=backend)
