"""Benchmarks: scripts that print numbers (``python -m tests.bench.NAME``), not pass/fail on time
(STYLE.md, 10). pytest collects only test_bench_smoke.py here, which checks that the scripts still run."""
