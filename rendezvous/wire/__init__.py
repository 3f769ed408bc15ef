"""What the client and the server share, and nothing else: the wire formats and the default ports.

This is the one neutral package of the two sides: the signalling schema (JSON over WebSocket), the STUN and
TURN codecs, and the default ports. The app imports the server only through it (apart from
`app.embedded_server`, which runs the server inside the app); it imports nothing from ``app`` and nothing
from ``rendezvous`` outside ``rendezvous.wire`` (`tests/check_boundaries.py` enforces both).
"""
