"""Punchline's client: the Qt-free core (signalling, NAT discovery, sessions) and, in ``app.gui``, the desktop UI."""
