"""Loss repair under QUIC: random loss is mended before QUIC's congestion control takes it for congestion.

Why: qh3's congestion control (CUBIC, fixed inside the library) cuts its pace by 30 % at every loss. On a
50 Mbit/s link with 40 ms round trip and 1 % random loss — a busy Wi-Fi, a poor DSL line — a file went at
4.6 Mbit/s where TCP (BBR, this machine's default) managed 45 (`tests/bench/transfer_speed.py --wan`).
Random loss is not congestion; so each side adds a thin layer between QUIC and the path:

* every QUIC datagram goes out behind a 5-byte header: kind and a 32-bit sequence number;
* while the peer reports loss, the sender closes groups of up to `RepairConfig.group_size` datagrams (or
  what arrived within `group_delay`) with *m* repair datagrams (Reed-Solomon, `zfec`), where *m* is the
  fewest that leave a group unrepairable less than once in `group_target` groups at the reported loss;
* the receiver hands datagrams to QUIC in sequence order; after a gap in a protected group it holds the
  later ones (at most `hold` seconds) until the repair fills it, so QUIC sees neither the loss nor a
  reordering; an unprotected gap (no repair coming) is passed on at once;
* every `report_interval` seconds the receiver reports the loss it saw before repair.

Congestion shows as bursts of loss that no group can repair, and those still reach QUIC, which slows as it
should. On a clean path *m* is 0 and the layer costs 5 bytes per datagram. This module is sans-IO: it is fed
datagrams and the time, and returns what to send and what to deliver (`PeerSession` is its adapter).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import ClassVar

import zfec

from app.session.datagram_kinds import PathKind

# Kinds (the first byte; `app.session.datagram_kinds` holds them all): in RFC 7983's 20-63 range, never
# STUN (0-3), ChannelData (64-79) or QUIC (64-255), so these share the path with the hole punch's checks.
SOURCE, PROTECTED, REPAIR, REPORT = (int(kind) for kind in PathKind)  # plain ints on the hot path

_SOURCE = struct.Struct("!BI")
_REPAIR = struct.Struct("!BIBBB")
_REPORT = struct.Struct("!BII")
_LENGTH = struct.Struct("!H")
_MASK = 0xFFFFFFFF
_HALF = 1 << 31
#: Packets and groups further than this behind the delivery point are forgotten.
_WINDOW = 4096
#: zfec encodes at most 256 blocks per group.
_MAX_BLOCKS = 255


@dataclass(frozen=True)
class RepairConfig:
    """How much repair to send and how long to wait for it (the defaults are measured on the lab's WAN)."""

    #: Largest group of datagrams one set of repair blocks covers (bigger groups need fewer repair blocks
    #: per datagram for the same safety: at 1 % loss 6 % for 64, 9 % for 32, 12 % for 16).
    group_size: int = 64
    #: A group closes this many seconds after its first datagram even when not full (calls, small writes).
    group_delay: float = 0.012
    #: Seconds the receiver holds datagrams behind a gap while waiting for the repair.
    hold: float = 0.035
    #: Seconds between loss reports.
    report_interval: float = 0.25
    #: Loss assumed before the first report (expected, missing), so that a transfer starting at once is
    #: already protected: a loss in slow start would leave CUBIC crawling up for many seconds. Counts decay
    #: by half at every report, so a clean path drops repair within a report or two.
    prior: tuple[int, int] = (200, 2)
    #: Below this reported loss rate no repair is sent (CUBIC copes; the overhead would not pay).
    min_loss: float = 0.001
    #: Accept one unrepairable group in this many (picks the number of repair blocks).
    group_target: int = 1000
    #: At most this many repair blocks per group, whatever the loss.
    max_repair: int = 16

    #: Never send repair (datagrams still carry the header, and repair from the peer is still used).
    OFF: ClassVar[RepairConfig]


RepairConfig.OFF = RepairConfig(min_loss=math.inf, prior=(0, 0))


def repair_blocks(group_size: int, loss: float, config: RepairConfig) -> int:
    """The fewest repair blocks for which a group of ``group_size`` fails less than once in ``group_target``.

    A group of k datagrams and m repair blocks is lost when more than m of its k + m datagrams are lost
    (independently, with probability ``loss`` each).
    """
    if loss < config.min_loss or group_size < 1:
        return 0
    loss = min(loss, 0.5)
    target = 1.0 / config.group_target
    for m in range(1, config.max_repair + 1):
        n = group_size + m
        survive = sum(math.comb(n, i) * loss**i * (1 - loss) ** (n - i) for i in range(m + 1))
        if 1.0 - survive < target:
            return m
    return config.max_repair


@dataclass
class _OutgoingGroup:
    base: int
    started: float
    packets: list[bytes] = field(default_factory=list)


@dataclass
class _IncomingGroup:
    k: int
    n: int
    size: int
    blocks: dict[int, bytes] = field(default_factory=dict)


@dataclass
class RepairStats:
    """Counters for the status panel and the benchmark."""

    repair_sent: int = 0
    repaired: int = 0
    given_up: int = 0
    #: Loss the peer last reported (our datagrams lost on the way, before repair).
    peer_loss: float = 0.0
    #: Repair blocks per group now being sent.
    repair_per_group: int = 0


class LossRepair:
    """One end of the repair layer: `protect` what QUIC sends, `receive` what arrives, `poll` on timers."""

    def __init__(self, config: RepairConfig | None = None) -> None:
        self.config = config or RepairConfig()
        self.stats = RepairStats()
        # Sending.
        self._seq = 0
        self._group: _OutgoingGroup | None = None
        self._expected, self._missing = (float(n) for n in self.config.prior)
        self._set_loss()
        self._encoders: dict[tuple[int, int], zfec.Encoder] = {}
        # Receiving.
        self._next = 0
        self._have: dict[int, bytes] = {}
        self._abandoned: set[int] = set()  # missing datagrams whose group can no longer be repaired
        self._groups: dict[int, _IncomingGroup] = {}
        self._gap_since: float | None = None
        self._highest = -1
        self._report_highest = -1
        self._report_received = 0
        self._report_due: float | None = None
        #: Set when a deadline may now come before the one the adapter booked (see `next_deadline`).
        self.wake = False

    # --- sending ------------------------------------------------------------------------------------------

    def wrap(self, packet: bytes) -> bytes:
        """The datagram to send for one QUIC datagram while not `protecting` (`protect`'s fast path)."""
        seq = self._seq
        self._seq = seq + 1
        return _SOURCE.pack(SOURCE, seq & _MASK) + packet

    def protect(self, packet: bytes, now: float) -> list[bytes]:
        """The datagrams to send for one QUIC datagram: itself behind a header, and any repairs now due."""
        if not self.protecting:
            return [self.wrap(packet)]
        seq = self._seq
        self._seq = seq + 1
        group = self._group
        if group is None:
            group = self._group = _OutgoingGroup(seq, now)
            self.wake = True
        group.packets.append(packet)
        out = [_SOURCE.pack(PROTECTED, seq & _MASK) + packet]
        if len(group.packets) >= self.config.group_size:
            out += self._close_group()
        return out

    def flush(self) -> list[bytes]:
        """Close the open group now (its repair goes out at once): after audio, which cannot wait."""
        return self._close_group()

    def _close_group(self) -> list[bytes]:
        group, self._group = self._group, None
        if group is None:
            return []
        k = len(group.packets)
        m = max(1, repair_blocks(k, self.stats.peer_loss, self.config))  # a small group needs fewer
        size = max(len(p) for p in group.packets) + _LENGTH.size
        blocks = tuple(_LENGTH.pack(len(p)) + p + bytes(size - _LENGTH.size - len(p)) for p in group.packets)
        encoder = self._encoders.get((k, k + m))
        if encoder is None:
            encoder = self._encoders[(k, k + m)] = zfec.Encoder(k, k + m)
        repairs = encoder.encode(blocks, tuple(range(k, k + m)))
        self.stats.repair_sent += m
        base = group.base & _MASK
        return [_REPAIR.pack(REPAIR, base, k, k + m, k + i) + bytes(r) for i, r in enumerate(repairs)]

    def _peer_reported(self, expected: int, missing: int) -> None:
        # Counts, not rates, are averaged: a report on 2000 datagrams outweighs one on 10 (a quiet moment).
        self._expected = self._expected / 2 + expected
        self._missing = self._missing / 2 + min(missing, expected)
        self._set_loss()

    def _set_loss(self) -> None:
        self.stats.peer_loss = self._missing / self._expected if self._expected else 0.0
        self.stats.repair_per_group = repair_blocks(self.config.group_size, self.stats.peer_loss, self.config)
        #: Whether repair is being sent: `protect` then; otherwise `wrap` does.
        self.protecting = self.stats.repair_per_group > 0

    # --- receiving ----------------------------------------------------------------------------------------

    def in_order(self, datagram: bytes) -> bytes | None:
        """The QUIC datagram in ``datagram`` if it is simply the next one expected, else None: then `receive`.

        The fast path: nothing held, no gap, the report timer already running.
        """
        expected = self._next
        if (
            len(datagram) > _SOURCE.size
            and (datagram[0] == SOURCE or datagram[0] == PROTECTED)
            and expected > self._highest
            and self._report_due is not None
            and int.from_bytes(datagram[1:5], "big") == expected & _MASK
        ):
            self._highest = expected
            self._next = expected + 1
            self._report_received += 1
            packet = datagram[_SOURCE.size :]
            if datagram[0] == PROTECTED:  # kept for repairing its group's other datagrams
                self._have[expected] = packet
                if len(self._have) > _WINDOW:
                    self._forget()
            return packet
        return None

    def receive(self, datagram: bytes, now: float) -> tuple[list[bytes], list[bytes]]:
        """Take one datagram from the path; return (QUIC datagrams to deliver in order, datagrams to send).

        Anything that is not this layer's (a bare QUIC datagram from an older peer) is delivered as it is;
        malformed headers are dropped.
        """
        deliver: list[bytes] = []
        send: list[bytes] = []
        if not datagram:
            return deliver, send
        kind = datagram[0]
        if kind in (SOURCE, PROTECTED):
            if len(datagram) <= _SOURCE.size:
                return deliver, send
            seq = self._unwrap(_SOURCE.unpack_from(datagram)[1])
            if seq not in self._have:
                self._count_arrival(seq, now)
                self._accept(seq, datagram[_SOURCE.size :], kind == PROTECTED, now, deliver)
        elif kind == REPAIR:
            self._repair_arrived(datagram, now, deliver)
        elif kind == REPORT:
            if len(datagram) == _REPORT.size:
                _, expected, missing = _REPORT.unpack(datagram)
                self._peer_reported(expected, missing)
        elif kind & 0x40:
            deliver.append(datagram)  # bare QUIC
        return deliver, send

    def _unwrap(self, seq: int) -> int:
        # Serial number arithmetic (RFC 1982): the sequence nearest the delivery point.
        return self._next + ((seq - self._next + _HALF) & _MASK) - _HALF

    def _count_arrival(self, seq: int, now: float) -> None:
        self._report_received += 1
        self._highest = max(self._highest, seq)
        if self._report_due is None:
            self._report_due = now + self.config.report_interval
            self.wake = True

    def _accept(self, seq: int, packet: bytes, protected: bool, now: float, deliver: list[bytes]) -> None:
        if seq < self._next - _WINDOW:
            return
        self._have[seq] = packet
        if seq < self._next:
            deliver.append(packet)  # late: its gap was given up already; QUIC sorts it out
            return
        if seq > self._next and not protected:
            self._skip_to(seq, deliver)  # no repair is coming: do not make QUIC wait
        self._advance(deliver)
        if len(self._have) > 2 * _WINDOW:
            self._skip_to(min(s for s in self._have if s >= self._next), deliver)
            self._advance(deliver)
        self._watch_gap(now)

    def _watch_gap(self, now: float) -> None:
        """Start the hold timer when datagrams wait behind a gap."""
        if self._next <= self._highest and self._gap_since is None:
            self._gap_since = now
            self.wake = True

    def _advance(self, deliver: list[bytes]) -> None:
        have, abandoned, seq = self._have, self._abandoned, self._next
        while True:
            if seq in have:
                deliver.append(have[seq])
            elif seq in abandoned:
                abandoned.discard(seq)
                self.stats.given_up += 1
            else:
                break
            seq += 1
        if seq != self._next:
            self._next = seq
            self._gap_since = None
            if len(have) > _WINDOW:
                self._forget()

    def _skip_to(self, seq: int, deliver: list[bytes]) -> None:
        """Give up on every missing datagram before ``seq``, delivering what is held before it."""
        held = sorted(s for s in self._have if self._next <= s < seq)
        self.stats.given_up += seq - self._next - len(held)
        deliver.extend(self._have[s] for s in held)
        self._next = seq
        self._gap_since = None

    def _forget(self) -> None:
        horizon = self._next - _WINDOW // 2
        self._have = {s: p for s, p in self._have.items() if s >= horizon}
        self._abandoned = {s for s in self._abandoned if s >= horizon}
        self._groups = {b: g for b, g in self._groups.items() if b + g.k > horizon}

    def _repair_arrived(self, datagram: bytes, now: float, deliver: list[bytes]) -> None:
        if len(datagram) <= _REPAIR.size + _LENGTH.size:
            return
        _, base32, k, n, index = _REPAIR.unpack_from(datagram)
        block = datagram[_REPAIR.size :]
        if not (1 <= k <= index < n <= _MAX_BLOCKS):
            return
        base = self._unwrap(base32)
        if base + k <= self._next or base < self._next - _WINDOW or base > self._next + _WINDOW:
            return
        group = self._groups.get(base)
        if group is None:
            group = self._groups[base] = _IncomingGroup(k, n, len(block))
        elif (group.k, group.n, group.size) != (k, n, len(block)):
            return
        group.blocks[index] = block
        self._try_repair(base, group, now, deliver)

    def _try_repair(self, base: int, group: _IncomingGroup, now: float, deliver: list[bytes]) -> None:
        missing = [s for s in range(base, base + group.k) if s not in self._have]
        if not missing:
            del self._groups[base]
            return
        if len(missing) > len(group.blocks):
            # Repair blocks come in order: those before the latest one seen are lost. If the rest cannot
            # cover the gap, waiting is pointless: pass the group on to QUIC now.
            if len(missing) > len(group.blocks) + group.n - 1 - max(group.blocks):
                del self._groups[base]
                self._abandoned.update(missing)
                self._advance(deliver)
                self._watch_gap(now)
            return
        blocks: list[bytes] = []
        numbers: list[int] = []
        payload = group.size - _LENGTH.size
        for i in range(group.k):
            packet = self._have.get(base + i)
            if packet is None:
                continue
            if len(packet) > payload:
                del self._groups[base]  # not the group the sender encoded: a forged or broken header
                return
            blocks.append(_LENGTH.pack(len(packet)) + packet + bytes(payload - len(packet)))
            numbers.append(i)
        for index, block in group.blocks.items():
            if len(blocks) == group.k:
                break
            blocks.append(block)
            numbers.append(index)
        decoded = zfec.Decoder(group.k, group.n).decode(tuple(blocks), tuple(numbers))
        del self._groups[base]
        for seq in missing:
            block = bytes(decoded[seq - base])
            (length,) = _LENGTH.unpack_from(block)
            if length == 0 or length > payload:
                continue
            self.stats.repaired += 1
            self._accept(seq, block[_LENGTH.size : _LENGTH.size + length], True, now, deliver)

    # --- time ---------------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `poll` next has work: a group to close, a gap to give up, a report to send."""
        deadlines = [
            d
            for d in (
                self._group.started + self.config.group_delay if self._group is not None else None,
                self._gap_since + self.config.hold if self._gap_since is not None else None,
                self._report_due,
            )
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> tuple[list[bytes], list[bytes]]:
        """Do what is due at ``now``; return (QUIC datagrams to deliver, datagrams to send)."""
        deliver: list[bytes] = []
        send: list[bytes] = []
        group = self._group
        if group is not None and now >= group.started + self.config.group_delay:
            send += self._close_group()
        if self._gap_since is not None and now >= self._gap_since + self.config.hold:
            self._gap_since = None
            later = [s for s in self._have if s > self._next]
            if later:
                self._skip_to(min(later), deliver)
                self._advance(deliver)
            else:
                self._highest = self._next - 1  # what was counted ahead is gone (forgotten)
            self._watch_gap(now)
        if self._report_due is not None and now >= self._report_due:
            # Reports stop while nothing arrives; the next arrival starts them again.
            self._report_due = now + self.config.report_interval if self._report_received else None
            send.append(self._report())
        return deliver, send

    def _report(self) -> bytes:
        expected = max(0, self._highest - self._report_highest)
        missing = max(0, expected - self._report_received)
        self._report_highest = self._highest
        self._report_received = 0
        return _REPORT.pack(REPORT, expected & _MASK, missing & _MASK)
