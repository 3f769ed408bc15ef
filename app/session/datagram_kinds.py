"""Every first byte that tells one kind of datagram from another, in one table.

Two layers demultiplex on a first byte:

* **On the UDP path** (RFC 7983 §7, one socket for everything): 0-3 STUN (hole-punch checks, consent,
  TURN control), 64-79 TURN ChannelData, 64-255 bare QUIC packets, and our loss-repair layer's kinds
  below (20-63, a range nothing else on the path uses).
* **Inside QUIC DATAGRAM frames** (RFC 9221, encrypted): the first byte says which layer of ours reads
  it; `PeerSession.set_datagram_receiver` routes by it.
"""

from __future__ import annotations

from enum import IntEnum


class PathKind(IntEnum):
    """The loss-repair layer's datagrams on the path (`app.session.loss_repair`)."""

    SOURCE = 0x30  #: a QUIC datagram no repair will cover
    PROTECTED = 0x31  #: a QUIC datagram in a group that repair datagrams will follow
    REPAIR = 0x32  #: a repair block: base sequence, k, n, block index, block
    REPORT = 0x33  #: what the sender of this report received since its last one


class DatagramKind(IntEnum):
    """The first byte of a QUIC DATAGRAM frame's payload: who reads it."""

    ECHO_REQUEST = 0x7E  #: round-trip probe (`app.session.echo`): sequence, send time
    ECHO_REPLY = 0x7F  #: the same bytes sent back
    AUDIO = 0xA1  #: Opus frames with redundancy (`app.voice.audio_packet`)
    AUDIO_REPORT = 0xA2  #: the listener's loss, jitter and delay report (`app.voice.call_media`)
