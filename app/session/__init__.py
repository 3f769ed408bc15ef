"""The encrypted, mutually authenticated peer session (QUIC over the path manager's socket)."""
