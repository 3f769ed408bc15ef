"""The loss repair layer alone (sans-IO): two ends, a simulated lossy path and a clock."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from app.session.loss_repair import (
    PROTECTED,
    REPAIR,
    REPORT,
    SOURCE,
    LossRepair,
    RepairConfig,
    repair_blocks,
)


class Path:
    """Sender → receiver with independent random loss; reports travel back without loss."""

    def __init__(self, loss: float, seed: int = 1, config: RepairConfig | None = None) -> None:
        self.sender = LossRepair(config)
        self.receiver = LossRepair(config)
        self.loss = loss
        self.random = random.Random(seed)
        self.now = 0.0
        self.delivered: list[bytes] = []
        self.wire: list[bytes] = []

    def _carry(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self.wire.append(datagram)
            if self.random.random() < self.loss:
                continue
            deliver, replies = self.receiver.receive(datagram, self.now)
            self.delivered += deliver
            for reply in replies:
                _, more = self.sender.receive(reply, self.now)
                self._carry(more)

    def tick(self, dt: float) -> None:
        """Let ``dt`` seconds pass, running both ends' timers."""
        self.now += dt
        for end in (self.sender, self.receiver):
            deadline = end.next_deadline()
            if deadline is not None and deadline <= self.now:
                deliver, send = end.poll(self.now)
                if end is self.sender:
                    self._carry(send)
                else:
                    self.delivered += deliver
                    for reply in send:
                        _, more = self.sender.receive(reply, self.now)
                        self._carry(more)

    def send(self, packets: list[bytes], spacing: float = 0.0002) -> None:
        for packet in packets:
            self._carry(self.sender.protect(packet, self.now))
            self.tick(spacing)
        for _ in range(500):  # let every timer fire
            self.tick(0.001)


def packets(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    # QUIC-like: the fixed bit set, sizes from ACK-only packets to full ones.
    sizes = (40, 1200, 1275)
    return [
        bytes([0x40 | i % 64]) + i.to_bytes(4, "big") + rng.randbytes(rng.choice(sizes)) for i in range(n)
    ]


def test_a_clean_path_soon_costs_only_five_bytes_and_keeps_order() -> None:
    path = Path(loss=0.0)
    sent = packets(4000)
    path.send(sent[:2000])  # protected at first: loss is assumed until the receiver reports
    assert path.sender.stats.repair_per_group == 0
    path.wire.clear()
    path.send(sent[2000:])
    assert path.delivered == sent
    assert [d[0] for d in path.wire] == [SOURCE] * 2000
    assert sum(len(d) for d in path.wire) == sum(len(p) + 5 for p in sent[2000:])


def test_random_loss_is_repaired_in_order_once_the_receiver_reports_it() -> None:
    path = Path(loss=0.02, seed=7)
    path.send(packets(500, seed=1))  # the receiver measures the loss and reports it
    assert path.sender.stats.repair_per_group >= 2
    path.delivered.clear()
    given_up_before = path.receiver.stats.given_up
    sent = packets(20_000, seed=2)
    path.send(sent)
    stats = path.receiver.stats
    assert stats.repaired > 300
    given_up = stats.given_up - given_up_before
    assert given_up <= 5  # a group fails about once in a thousand
    delivered = set(path.delivered)
    assert len([p for p in sent if p not in delivered]) == given_up
    # In order: what QUIC sees is the sent sequence with at most a few holes.
    positions = [sent.index(p) for p in path.delivered]
    assert positions == sorted(positions)
    assert 0.01 < path.sender.stats.peer_loss < 0.03


def test_repair_stops_when_the_loss_does() -> None:
    path = Path(loss=0.05, seed=3)
    path.send(packets(1000))
    assert path.sender.stats.repair_per_group > 0
    path.loss = 0.0
    for _ in range(20):
        path.send(packets(300))
    assert path.sender.stats.repair_per_group == 0


def test_an_unrepairable_gap_is_given_up_after_the_hold_time() -> None:
    config = RepairConfig(hold=0.02)
    sender, receiver = LossRepair(config), LossRepair(config)
    sender.receive(struct.pack("!BII", REPORT, 1000, 50), 0.0)  # 5 % loss: protect
    wire = [sender.protect(p, 0.0) for p in packets(3)]
    assert all(w[0][0] == PROTECTED for w in wire)
    first, _ = receiver.receive(wire[0][0], 0.0)
    assert len(first) == 1
    held, _ = receiver.receive(wire[2][0], 0.001)  # the second is lost and its repair never comes
    assert held == []
    deadline = receiver.next_deadline()
    assert deadline == 0.021
    released, _ = receiver.poll(0.021)
    assert released == [wire[2][0][5:]]
    assert receiver.stats.given_up == 1


def test_without_repair_a_gap_does_not_delay_and_a_late_packet_still_arrives() -> None:
    sender, receiver = LossRepair(RepairConfig(prior=(0, 0))), LossRepair()
    wire = [sender.protect(p, 0.0)[0] for p in packets(3)]
    assert receiver.receive(wire[0], 0.0)[0] == [wire[0][5:]]
    assert receiver.receive(wire[2], 0.0)[0] == [wire[2][5:]]  # no repair coming: no waiting
    assert receiver.receive(wire[1], 0.0)[0] == [wire[1][5:]]  # reordered, not lost
    assert receiver.receive(wire[1], 0.0)[0] == []  # a duplicate is dropped


def test_bare_quic_from_a_peer_without_the_layer_is_delivered() -> None:
    quic = packets(1)[0]
    assert LossRepair().receive(quic, 0.0)[0] == [quic]


def test_the_repair_count_follows_the_binomial_tail() -> None:
    config = RepairConfig()
    assert repair_blocks(32, 0.0, config) == 0
    assert repair_blocks(32, 0.0005, config) == 0
    assert repair_blocks(32, 0.01, config) == 3
    assert repair_blocks(64, 0.01, config) == 4
    assert repair_blocks(1, 0.05, config) == 2  # a lone datagram (a voice frame) is sent three times
    assert repair_blocks(32, 0.9, config) == config.max_repair


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=60), max_size=30), st.sampled_from([SOURCE, PROTECTED, REPAIR, REPORT]))
def test_hostile_datagrams_never_break_the_receiver(datagrams: list[bytes], kind: int) -> None:
    receiver = LossRepair()
    now = 0.0
    for datagram in datagrams:
        for candidate in (datagram, bytes([kind]) + datagram):
            deliver, send = receiver.receive(candidate, now)
            assert all(isinstance(d, bytes) for d in deliver + send)
        now += 0.01
        receiver.poll(now)
    assert len(receiver._have) <= 8192


def test_a_forged_repair_header_cannot_corrupt_delivery() -> None:
    sender, receiver = LossRepair(), LossRepair()
    sender.receive(struct.pack("!BII", REPORT, 1000, 50), 0.0)
    wire = [w for p in packets(4) for w in sender.protect(p, 0.0)] + sender.poll(0.05)[1]
    repairs = repair_blocks(4, sender.stats.peer_loss, RepairConfig())
    assert [w[0] for w in wire] == [PROTECTED] * 4 + [REPAIR] * repairs
    # A group of 4 claims to be a group of 2 with tiny blocks, then the real repairs come.
    forged = struct.pack("!BIBBB", REPAIR, 0, 2, 3, 2) + b"\x00\x05xx"
    out: list[bytes] = []
    for datagram in [wire[0], forged, *wire[2:]]:
        out += receiver.receive(datagram, 0.0)[0]
    out += receiver.poll(1.0)[0]
    assert out == packets(4)  # the forged group was dropped; the real repair mended the loss


def test_datagrams_in_order_take_the_fast_path() -> None:
    sender, receiver = LossRepair(RepairConfig.OFF), LossRepair()
    wire = [sender.wrap(p) for p in packets(100)]
    assert receiver.receive(wire[0], 0.0)[0] == [wire[0][5:]]  # the first one starts the report timer
    assert [receiver.in_order(w) for w in wire[1:]] == [w[5:] for w in wire[1:]]
    assert receiver.next_deadline() == RepairConfig().report_interval  # no gap suspected
