"""Getting two peers a UDP path: candidates, TURN client, hole punching."""
