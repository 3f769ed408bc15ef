"""Everything the tests share that is not a test: the rendezvous server and clients, sessions on loopback,
the one poll-until (`poll.until`), the one tree digest (`files.tree_digest`), the one tone writer
(`tone.write_tone`), STUN/TURN and UDP helpers, coturn, the simulated Internet, the GUI's demo windows, and
the NAT lab (`helpers.natlab`). No test module imports another test module: what they share lives here."""
