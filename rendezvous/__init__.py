"""Punchline's rendezvous server: accounts, contacts, presence, signalling and STUN."""
