"""Punchline's client: the Qt-free core (signalling, NAT discovery, sessions) and the UI (``app.gui``)."""
