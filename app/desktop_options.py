"""The ``punchline`` command line, read without Qt (``--self-test`` and ``--version`` need no window)."""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path

from app.signalling.client import DEFAULT_SERVER
from rendezvous.wire.ports import DEFAULT_PORT, DEFAULT_STUN_PORT


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``punchline [demo] [options]``."""
    parser = argparse.ArgumentParser(prog="punchline", description="Call friends and send them files.")
    parser.add_argument("command", nargs="?", choices=["demo"], help="demo: two users on this computer")
    parser.add_argument(
        "--server", help=f"rendezvous server URL (default: the last one, or {DEFAULT_SERVER})"
    )
    parser.add_argument(
        "--host-server", action="store_true", help="run a rendezvous server inside the app for your LAN"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="signalling port of the hosted server")
    parser.add_argument(
        "--stun-port", type=int, default=DEFAULT_STUN_PORT, help="STUN/TURN port of the hosted server"
    )
    parser.add_argument("--config-dir", type=Path, help="where keys, settings and history are kept")
    parser.add_argument("--downloads", type=Path, help="where received files go (default: your Downloads)")
    parser.add_argument(
        "--audio-file",
        type=Path,
        metavar="MIC.wav",
        help="no sound card: send this 48 kHz mono WAV as the microphone, record what you hear",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('punchline')}")
    parser.add_argument(
        "--self-test", action="store_true", help="check Qt, Opus, PortAudio, UDP and the key store, then exit"
    )
    # For tests/bench/app_startup.py: print a line when the first window is on screen.
    parser.add_argument("--report-startup", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)
