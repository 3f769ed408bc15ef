"""Benchmark: speech through a real call in the NAT lab, scored with PESQ wideband, and the delay it adds.

For each network condition, a lab with two cone NATs (10 ms each way on each WAN link, so 20 ms one way
between the callers) runs the real rendezvous server and CLI: alice ``call``s bob with speech made by
espeak-ng as her microphone, bob ``listen --answer``s and records what he hears. The recording is aligned
with the speech by cross-correlation and scored with PESQ wideband (ITU-T P.862.2, PyPI ``pesq``, run in
``.bench-venv``). Mouth-to-ear delay comes from the same alignment and the two processes' monotonic clocks
(one machine): when alice's first microphone sample left and when bob's recording started. The app-added
delay is that minus the network's 20 ms. Targets: PESQ ≥ 4.0 clean, ≥ 3.5 at 5 % random loss, ≥ 3.0 at
10 %; app-added delay ≤ 60 ms.

    sudo .venv/bin/python -m tests.bench.call_quality            # clean, 5 %, 10 %, 5 % + jitter
    sudo .venv/bin/python -m tests.bench.call_quality --json

espeak-ng and sox come from Debian, numpy and pesq go into ``.bench-venv`` (installed when missing). It
prints numbers and never fails on quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO_ROOT
from tests.helpers.server import PASSWORD
from tests.helpers.tone import write_tone

BENCH_VENV = REPO_ROOT / ".bench-venv"
ONE_WAY_NETWORK = 0.020  # two WAN links, 10 ms each
SPEECH = (
    "The quick brown fox jumps over the lazy dog. A call should sound clear even when the network "
    "drops packets. Please remember to bring the maps, the tickets, and some warm clothes for the "
    "evening. We will meet at the station at half past seven, next to the bakery."
)
# name, loss per WAN link and direction (two links: 1 - (1 - p)^2 end to end), jitter per link (ms), and
# whether a file transfer on the same session saturates the link (then limited to TRANSFER_MBIT)
CONDITIONS = [
    ("clean", 0.0, 0.0, False),
    ("5% loss", 2.53, 0.0, False),
    ("10% loss", 5.13, 0.0, False),
    ("5% loss + jitter", 2.53, 10.0, False),
    ("clean + transfer", 0.0, 0.0, True),
]
TRANSFER_MBIT = 20


def tools() -> Path:
    """Install what is missing (espeak-ng, sox; numpy and pesq in the bench venv); return its python."""
    missing = [p for p, tool in (("espeak-ng", "espeak-ng"), ("sox", "sox")) if shutil.which(tool) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import numpy, pesq"], capture_output=True, check=False)
    if probe.returncode != 0:
        print("installing numpy and pesq into .bench-venv ...", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "pesq"], check=True)
    return python


def make_speech(work: Path) -> tuple[Path, Path, float]:
    """Speech at 48 kHz (the microphone, with 1 s of silence before and after) and the same at 16 kHz."""
    raw, speech, reference = work / "raw.wav", work / "speech48.wav", work / "speech16.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH], check=True)
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(speech), "pad", "1", "1"], check=True
    )
    subprocess.run(["sox", str(speech), "-r", "16000", str(reference)], check=True)
    with wave.open(str(speech), "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
    return speech, reference, seconds


@dataclass(frozen=True)
class Setup:
    """What every condition shares: the scratch folder, the speech files and the scorer's python."""

    work: Path
    microphone: Path
    reference: Path
    seconds: float
    scorer: Path


def score(setup: Setup, far: Path) -> dict[str, Any]:
    """Where the speech starts in ``far`` and its PESQ-WB (in the bench venv)."""
    far16 = far.with_name("far16.wav")
    subprocess.run(["sox", str(far), "-r", "16000", str(far16)], check=True)
    script = REPO_ROOT / "tests" / "bench" / "pesq_score.py"
    argv = [str(setup.scorer), str(script), str(setup.reference), str(far16)]
    result: dict[str, Any] = json.loads(
        subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    )
    return result


def transfer_rate(lines: list[dict[str, Any]], seconds: float) -> float | None:
    """Mbit/s of the file sent during the call (its last progress line over the call's length)."""
    progress = [line for line in lines if line["event"] == "progress"]
    return round(progress[-1]["bytes"] * 8 / seconds / 1e6, 1) if progress else None


async def one_condition(
    name: str, loss: float, jitter: float, transfer: bool, setup: Setup
) -> dict[str, Any]:
    """One call under one condition: PESQ and delays (and with ``transfer``, a file sent during it)."""
    from tests.helpers.natlab.cli import Peers, read_until
    from tests.helpers.natlab.fixtures import LabFactory

    seconds = setup.seconds
    folder = setup.work / name.replace(" ", "_").replace("%", "pct").replace("+", "and")
    folder.mkdir()
    silence, far = folder / "silence.wav", folder / "far.wav"
    write_tone(silence, 0, seconds + 5)  # 0 Hz: silence
    factory = LabFactory(folder / "lab")
    try:
        rate = TRANSFER_MBIT * 1000 if transfer else None
        lab = factory("cone", "cone", delay_ms=10, loss=loss, jitter_ms=jitter, rate_kbit=rate)
        os.environ["PUNCHLINE_PASSWORD"] = PASSWORD
        peers = Peers(lab)
        await peers.start_server()
        await peers.befriend()
        options = ["--answer", "--mic", str(silence), "--record", str(far)]
        send: list[str] = []
        if transfer:
            big = folder / "big.bin"
            with big.open("wb") as file:  # more than the link carries during the call
                file.truncate(TRANSFER_MBIT * 125_000 * int(seconds + 10))
            options += ["--accept-files", str(folder / "downloads")]
            send = ["--send", str(big)]
        listener = await peers.listen("right", *options)
        argv = peers.argv(
            "alice", "call", "bob", "--mic", str(setup.microphone), "--record", str(folder / "near.wav"),
            "--seconds", f"{seconds + 1.5:.1f}", *send,
        )  # fmt: skip
        caller = await lab.spawn("left", *argv, stdin=False)
        sent = await read_until(caller, lambda line: line["event"] == "call_ended", timeout=seconds + 60)
        heard = await read_until(listener, lambda line: line["event"] == "call_ended", timeout=15)
    finally:
        await factory.aclose()
    capture = next(line for line in sent if line["event"] == "media_times")
    playout = next(line for line in heard if line["event"] == "media_times")
    scored = score(setup, far)
    mouth_to_ear = playout["first_playout_at"] + scored["lag_seconds"] - capture["first_capture_at"]
    windows = scored["window_lags"] or [scored["lag_seconds"]]
    final = playout["final"]
    return {
        "condition": name,
        "loss_per_link_percent": loss,
        "jitter_per_link_ms": jitter,
        "pesq_wb": scored["pesq"],
        "mouth_to_ear_ms": round(1000 * mouth_to_ear, 1),
        "mouth_to_ear_max_ms": round(1000 * (mouth_to_ear + max(windows) - scored["lag_seconds"]), 1),
        "app_added_ms": round(1000 * (mouth_to_ear - ONE_WAY_NETWORK), 1),
        "receiver": {
            k: final[k] for k in ("loss_in", "concealed", "fec_recovered", "copies_used", "buffer_ms")
        },
        "transfer_mbit_during_call": transfer_rate(sent, seconds) if transfer else None,
        "sender_redundancy": next(
            (line["redundancy"] for line in reversed(sent) if line["event"] == "call_stats"), None
        ),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="run only the condition whose name starts with this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from tests.helpers.natlab.topology import missing_capability

    missing = missing_capability()
    if missing:
        print(f"the NAT lab cannot run here: {missing}")
        return
    scorer = tools()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        microphone, reference, seconds = make_speech(work)
        setup = Setup(work, microphone, reference, seconds, scorer)
        for name, loss, jitter, transfer in CONDITIONS:
            if args.only and not name.startswith(args.only):
                continue
            results.append(await one_condition(name, loss, jitter, transfer, setup))
    clean = next((r for r in results if r["condition"] == "clean"), None)
    for r in results:
        if r["condition"].endswith("transfer") and clean is not None:
            r["delay_growth_ms"] = round(r["mouth_to_ear_max_ms"] - clean["mouth_to_ear_ms"], 1)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"speech: {seconds:.1f} s from espeak-ng; network one way {1000 * ONE_WAY_NETWORK:.0f} ms")
    for r in results:
        print(
            f"{r['condition']:18} PESQ-WB {r['pesq_wb']:.2f}   mouth-to-ear {r['mouth_to_ear_ms']:6.1f} ms "
            f"(app-added {r['app_added_ms']:5.1f} ms)   loss seen {100 * r['receiver']['loss_in']:.1f} %, "
            f"concealed {r['receiver']['concealed']}, copies used {r['receiver']['copies_used']}, "
            f"FEC {r['receiver']['fec_recovered']}, redundancy {r['sender_redundancy']}"
            + (f"   worst 2 s: {r['mouth_to_ear_max_ms']} ms" if r["condition"].endswith("transfer") else "")
            + (f", growth {r['delay_growth_ms']} ms" if "delay_growth_ms" in r else "")
            + (f"; file {r['transfer_mbit_during_call']} Mbit/s" if r["transfer_mbit_during_call"] else "")
        )


if __name__ == "__main__":
    asyncio.run(main())
