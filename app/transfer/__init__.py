"""File transfer over the peer session: offers, untrusted names, progress, resume."""
