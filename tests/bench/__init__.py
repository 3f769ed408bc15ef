"""Benchmarks: scripts that print numbers; not tests, and pytest does not collect them (STYLE.md, 10)."""
