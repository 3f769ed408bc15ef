"""The voice core alone: real Opus, audio packets with redundancy, the jitter buffer on a fake clock."""

from __future__ import annotations

import array
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.voice.audio_packet import (
    AudioPacket,
    AudioPacketError,
    Packetizer,
    decode_packet,
    encode_packet,
    redundancy_for_loss,
)
from app.voice.jitter_buffer import Conceal, JitterBuffer, Play, Playout, Recover, Silence
from app.voice.opus_codec import CodecSettings, VoiceDecoder, VoiceEncoder
from tests.helpers.tone import tone_samples


def tone(frames: int, settings: CodecSettings, hz: float = 440.0) -> list[bytes]:
    """``frames`` PCM frames of one continuous tone."""
    n = settings.frame_samples
    return [tone_samples(hz, n, amplitude=8000, start=f * n).tobytes() for f in range(frames)]


def energy(pcm: bytes) -> float:
    samples = array.array("h", pcm)
    return math.sqrt(sum(s * s for s in samples) / len(samples))


@pytest.mark.parametrize("frame_ms", [20, 10])
def test_opus_round_trip_keeps_the_signal(frame_ms: int) -> None:
    settings = CodecSettings(frame_ms=frame_ms)
    encoder, decoder = VoiceEncoder(settings), VoiceDecoder(settings)
    frames = tone(50, settings)
    packets = [encoder.encode(f) for f in frames]
    assert all(0 < len(p) < 200 for p in packets)  # ~28 kbps: ~70 bytes per 20 ms
    decoded = [decoder.decode(p) for p in packets]
    assert all(len(d) == settings.frame_bytes for d in decoded)
    assert energy(b"".join(decoded[10:])) == pytest.approx(energy(b"".join(frames[10:])), rel=0.2)


def test_fec_and_concealment_fill_a_lost_frame() -> None:
    encoder, decoder = VoiceEncoder(), VoiceDecoder()
    encoder.set_expected_loss(10)
    packets = [encoder.encode(f) for f in tone(20, CodecSettings())]
    for p in packets[:10]:
        decoder.decode(p)
    recovered = decoder.recover(packets[11])  # frame 10 lost; its copy rides in packet 11
    assert energy(recovered) > 2000
    assert energy(decoder.conceal()) > 0
    with pytest.raises(ValueError, match="1920 bytes"):
        encoder.encode(b"\x00" * 100)


def test_silence_costs_next_to_nothing_with_dtx() -> None:
    encoder = VoiceEncoder()
    sizes = [len(encoder.encode(bytes(CodecSettings().frame_bytes))) for _ in range(100)]
    assert sum(size <= 2 for size in sizes[10:]) >= 80  # a comfort-noise update every 400 ms


def test_packets_carry_earlier_frames_across_wraparound() -> None:
    data = encode_packet(20, 0x0001, 0x0000_0100, b"new", [b"older", b"old"])
    packet = decode_packet(data)
    assert packet.frame_ms == 20
    assert [(f.seq, f.timestamp, f.opus) for f in packet.frames] == [
        (0xFFFF, (0x100 - 2 * 960) & 0xFFFF_FFFF, b"older"),
        (0x0000, (0x100 - 960) & 0xFFFF_FFFF, b"old"),
        (0x0001, 0x0000_0100, b"new"),
    ]


def test_the_packetizer_adds_redundancy_as_loss_grows() -> None:
    assert [redundancy_for_loss(x) for x in (0.0, 0.01, 0.05, 0.2)] == [0, 1, 2, 3]
    packetizer = Packetizer(20)
    packetizer.set_loss(0.05)
    packets = [decode_packet(packetizer.packet(bytes([i]) * 10)) for i in range(5)]
    assert [len(p.frames) for p in packets] == [1, 2, 3, 3, 3]
    assert [f.opus[0] for f in packets[4].frames] == [2, 3, 4]
    assert [f.seq for f in packets[4].frames] == [2, 3, 4]


@given(st.binary(max_size=64))
def test_any_bytes_give_a_packet_or_a_packet_error(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except AudioPacketError:
        return
    assert isinstance(packet, AudioPacket)
    assert packet.newest.opus


# --- the jitter buffer on a fake clock ---------------------------------------------------------------------


class Call:
    """Frames sent every 20 ms through a network with a delay per frame (None: lost), pulled every 20 ms."""

    def __init__(self, redundancy: float = 0.0) -> None:
        self.buffer = JitterBuffer(20)
        self.packetizer = Packetizer(20)
        self.packetizer.set_loss(redundancy)
        self.played: list[Playout] = []

    def run(self, delays: list[float | None]) -> list[Playout]:
        arrivals: list[tuple[float, bytes]] = []
        for seq, delay in enumerate(delays):
            data = self.packetizer.packet(seq.to_bytes(2, "big") + b"x")
            if delay is not None:
                arrivals.append((seq * 0.02 + delay, data))
        arrivals.sort()
        end = arrivals[-1][0] + 0.2  # the stream's end is not an underrun worth counting
        tick, i = 0.005, 0
        while tick < end:
            while i < len(arrivals) and arrivals[i][0] <= tick:
                self.buffer.put(decode_packet(arrivals[i][1]), arrivals[i][0])
                i += 1
            self.played.append(self.buffer.pull(tick))
            tick += 0.02
        return self.played


def frame_numbers(played: list[Playout]) -> list[int]:
    return [int.from_bytes(p.opus[:2], "big") for p in played if isinstance(p, Play)]


def test_a_steady_stream_plays_in_order_one_frame_behind() -> None:
    call = Call()
    played = call.run([0.030] * 100)
    assert frame_numbers(played) == list(range(100))
    first = next(i for i, p in enumerate(played) if isinstance(p, Play))
    last = max(i for i, p in enumerate(played) if isinstance(p, Play))
    assert all(isinstance(p, Silence) for p in played[:first])
    assert all(isinstance(p, Play) for p in played[first : last + 1])
    assert call.buffer.stats.target_delay == pytest.approx(0.02)
    assert call.buffer.stats.delay <= 0.04


def test_reordered_frames_play_in_order() -> None:
    delays: list[float | None] = [0.03] * 60
    for seq in range(10, 60, 7):
        delays[seq] = 0.045  # arrives after the next one
    call = Call()
    assert frame_numbers(call.run(delays)) == list(range(60))


def test_a_lost_frame_comes_back_from_fec_or_from_a_copy() -> None:
    delays: list[float | None] = [0.03] * 40
    delays[20] = None
    plain = Call().run(delays)
    assert Recover(opus_of(21)) in plain  # rebuilt from frame 21's in-band FEC
    redundant = Call(redundancy=0.05)
    assert frame_numbers(redundant.run(delays)) == list(range(40))
    assert redundant.buffer.stats.recovered_copy == 1


def opus_of(seq: int) -> bytes:
    return seq.to_bytes(2, "big") + b"x"


def test_the_target_follows_jitter_and_shrinks_when_the_network_calms() -> None:
    rng = random.Random(3)
    jittery: list[float | None] = [0.03 + rng.uniform(0, 0.06) for _ in range(300)]
    calm: list[float | None] = [0.03] * 400
    call = Call()
    played = call.run(jittery + calm)
    stats = call.buffer.stats
    assert stats.concealed - stats.underruns <= 15  # about 5 % of the jittery part may come too late
    assert stats.dropped >= 2  # it gave back the delay it no longer needed
    assert stats.target_delay == pytest.approx(0.02)
    assert stats.delay <= 0.06
    numbers = frame_numbers(played)
    assert numbers == sorted(numbers)


def test_an_underrun_waits_for_the_stream_instead_of_skipping_it() -> None:
    # The path stalls: frames 30-39 (sent 0.60-0.78 s) all arrive at 0.80 s, in order.
    delays: list[float | None] = [0.03] * 30
    delays += [0.8 - s * 0.02 for s in range(30, 40)]
    delays += [0.03] * 30
    call = Call()
    played = call.run(delays)
    assert frame_numbers(played)[:40] == list(range(40))
    assert any(isinstance(p, Conceal) for p in played)
    assert call.buffer.stats.underruns > 0
