"""The ports a client expects a rendezvous server on, unless told otherwise (shared by both sides)."""

from __future__ import annotations

#: WebSocket signalling (``ws://host:8765``).
DEFAULT_PORT = 8765
#: STUN and TURN, UDP and TCP (RFC 8489 §18.6, RFC 8656: 3478).
DEFAULT_STUN_PORT = 3478
