"""Wire formats that both the server and the client import: the signalling schema and the STUN codec."""
