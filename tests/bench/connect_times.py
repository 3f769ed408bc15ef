"""Benchmark: how fast two contacts get a usable path, through real NAT routers at 40 ms round trip.

In the NAT lab (tests/helpers/natlab, needs root), each site's WAN link delays 10 ms each way, so client to
server is 20 ms and client to client 40 ms round trip. The real ``punchline-cli listen`` runs as bob; for each
round, ``punchline-cli connect`` signs in as alice and prints ``dialing`` just before it dials (both sides
are then online and signed in). Measured from that line to the first ``path`` line (first usable path) and
to the first path whose kind is ``direct`` (targets: 1 s and 2 s). Times are taken as the lines arrive.

    sudo .venv/bin/python -m tests.bench.connect_times            # 5 rounds per NAT pairing
    sudo .venv/bin/python -m tests.bench.connect_times --rounds 10 --json

It prints numbers and never fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers.natlab.cli import Peers, read_until
from tests.helpers.natlab.fixtures import LabFactory
from tests.helpers.natlab.topology import missing_capability

ONE_WAY_DELAY_MS = 10.0  # per site's WAN link: 40 ms client-to-client round trip
PAIRINGS = (("cone", "cone"), ("symmetric", "symmetric"), ("cone", "symmetric"), ("udp_blocked", "cone"))


async def measure(factory: LabFactory, left: str, right: str, rounds: int) -> dict[str, Any]:
    """Connect ``rounds`` times between hosts behind ``left`` and ``right`` NATs; times in ms."""
    lab = factory(left, right, delay_ms=ONE_WAY_DELAY_MS)  # type: ignore[arg-type]
    peers = Peers(lab)
    await peers.start_server()
    await peers.befriend()
    await peers.listen()
    first_ms: list[float] = []
    direct_ms: list[float] = []
    kinds: list[str] = []
    for _ in range(rounds):
        proc = await peers.connect("left", "--count", "30", "--interval", "0.05")
        await read_until(proc, lambda line: line["event"] == "dialing", timeout=30)
        dialed = time.monotonic()
        lines = await read_until(proc, lambda line: line["event"] == "path", timeout=30)
        first_ms.append((time.monotonic() - dialed) * 1000)
        kinds.append(lines[-1]["kind"])
        if lines[-1]["kind"] == "direct":
            direct_ms.append(first_ms[-1])
        else:
            rest = await read_until(
                proc,
                lambda line: (
                    line["event"] == "summary"
                    or (line["event"] == "path_changed" and line["kind"] == "direct")
                ),
                timeout=30,
            )
            if rest[-1]["event"] == "path_changed":
                direct_ms.append((time.monotonic() - dialed) * 1000)
        await proc.kill()
    return {
        "pairing": f"{left}<->{right}",
        "rounds": rounds,
        "first_path_kinds": kinds,
        "first_path_ms": summary(first_ms),
        "direct_path_ms": summary(direct_ms) if direct_ms else None,
    }


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max in ms."""
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


async def run(rounds: int) -> list[dict[str, Any]]:
    """Every pairing, each in a fresh lab torn down afterwards."""
    results = []
    with tempfile.TemporaryDirectory(prefix="punchline-bench-") as tmp:
        os.environ.setdefault("PUNCHLINE_PASSWORD", "benchmark password 1")
        for left, right in PAIRINGS:
            factory = LabFactory(Path(tmp) / f"{left}-{right}")
            try:
                results.append(await measure(factory, left, right, rounds))
            finally:
                await factory.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the numbers (and, with --json, one JSON object)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.connect_times", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reason = missing_capability()
    if reason is not None:
        print(f"cannot run the NAT lab here: {reason}", file=sys.stderr)
        return 1
    results = asyncio.run(run(args.rounds))
    for result in results:
        first, direct = result["first_path_ms"], result["direct_path_ms"]
        kinds = ", ".join(sorted(set(result["first_path_kinds"])))
        line = (
            f"{result['pairing']:<22} first usable path ({kinds}): median {first['median']} ms "
            f"(min {first['min']}, max {first['max']})"
        )
        if direct:
            line += f"; direct: median {direct['median']} ms (max {direct['max']})"
        print(line, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"one_way_delay_ms_per_site": ONE_WAY_DELAY_MS, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
