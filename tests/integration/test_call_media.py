"""A call's audio over a real QUIC session on loopback: WAV files as microphones and speakers, real Opus."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.voice.audio_io import WavMicrophone, WavSpeaker, level_dbfs
from app.voice.call_media import CallMedia, MediaConfig, estimate_mos
from app.voice.opus_codec import CodecSettings
from tests.helpers.sessions import Peer, session_pair
from tests.helpers.tone import pitch, segment, write_tone


async def test_a_call_carries_audio_both_ways_and_mute_silences_it(tmp_path: Path) -> None:
    write_tone(tmp_path / "alice.wav", 440, 4)
    write_tone(tmp_path / "bob.wav", 1000, 4)
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path)) as (ours, theirs):
        alice = CallMedia(
            ours, WavMicrophone(tmp_path / "alice.wav"), WavSpeaker(tmp_path / "alice-hears.wav")
        )
        bob = CallMedia(theirs, WavMicrophone(tmp_path / "bob.wav"), WavSpeaker(tmp_path / "bob-hears.wav"))
        calls = [asyncio.create_task(alice.run()), asyncio.create_task(bob.run())]
        await asyncio.sleep(2.0)
        alice.muted = True
        await asyncio.sleep(1.5)
        stats = bob.stats()
        alice.stop()
        bob.stop()
        await asyncio.gather(*calls)
    alice.speaker.close()
    bob.speaker.close()
    assert 950 < pitch(segment(tmp_path / "alice-hears.wav", 0.5, 3.0)) < 1050
    assert 420 < pitch(segment(tmp_path / "bob-hears.wav", 0.5, 1.8)) < 460
    assert level_dbfs(segment(tmp_path / "bob-hears.wav", 2.6, 3.3).tobytes()) < -50  # muted
    assert stats.rtt_ms is not None
    assert stats.rtt_ms < 50
    assert stats.concealed <= 3
    assert stats.loss_in == 0
    assert 20_000 < stats.bitrate < 45_000
    assert stats.quality > 4.0


def test_the_quality_estimate_falls_with_delay_and_loss() -> None:
    assert estimate_mos(40, 0.0) > 4.3
    assert estimate_mos(40, 0.05) < estimate_mos(40, 0.01) < estimate_mos(40, 0.0)
    assert estimate_mos(400, 0.0) < 3.6


async def test_each_side_may_send_10_or_20_ms_frames(tmp_path: Path) -> None:
    write_tone(tmp_path / "alice.wav", 440, 3)
    write_tone(tmp_path / "bob.wav", 1000, 3)
    short = MediaConfig(codec=CodecSettings(frame_ms=10))
    async with session_pair(Peer("alice", tmp_path), Peer("bob", tmp_path)) as (ours, theirs):
        alice = CallMedia(
            ours,
            WavMicrophone(tmp_path / "alice.wav", short.codec),
            WavSpeaker(tmp_path / "alice-hears.wav"),
            short,
        )
        bob = CallMedia(theirs, WavMicrophone(tmp_path / "bob.wav"), WavSpeaker(tmp_path / "bob-hears.wav"))
        calls = [asyncio.create_task(alice.run()), asyncio.create_task(bob.run())]
        await asyncio.sleep(2.0)
        alice.stop()
        bob.stop()
        await asyncio.gather(*calls)
    assert 950 < pitch(segment(tmp_path / "alice-hears.wav", 0.5, 1.5)) < 1050
    assert 420 < pitch(segment(tmp_path / "bob-hears.wav", 0.5, 1.5)) < 460
    assert bob.stats().concealed <= 3
