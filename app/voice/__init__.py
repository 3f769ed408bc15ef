"""Voice calls: Opus frames, their packets on the session, the jitter buffer, audio devices."""
