"""Tests on one computer: real sockets on loopback, the real server, the CLI and other subprocesses, coturn
and aioice against ours, and the packaging (the bundle, the .desktop entry, the systemd unit, pipx)."""
