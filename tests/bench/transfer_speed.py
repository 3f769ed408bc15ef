"""Benchmark: one file through ``punchline-cli send``, next to baselines measured in the same run.

Loopback (no root needed): a 1 GiB file from ``send`` to ``listen --accept-files`` through a local
rendezvous server, and the same file through magic-wormhole (``wormhole send``/``receive`` with a local
mailbox server and transit relay, all on 127.0.0.1). Target: ≥ 50 MB/s for us, reported as a ratio to
magic-wormhole. Both are timed from the receiver's first sight of the offer to the file complete on disk
("transfer"), and ours also as the whole command (sign-in, gathering, hole punch, handshake included).

WAN (needs root for the NAT lab): a host behind a cone NAT sends to a public host over links limited to
``--wan-mbit`` with ``--wan-delay-ms`` each way per link and random loss. iperf3 TCP runs on the same path
right before, with the kernel's default congestion control (BBR on our test machine) and with CUBIC (the
default of Windows, macOS and most Linux desktops). Target: at least 0.9 times the better of the two. Our
transfer runs with loss repair (the default) and, as a reference, a smaller file without it.

magic-wormhole lives in its own virtualenv (``.bench-venv``, made on first use) so that its pinned
dependencies never touch the app's. iperf3 comes from Debian (installed when missing).

    .venv/bin/python -m tests.bench.transfer_speed                   # loopback, 1 GiB
    sudo .venv/bin/python -m tests.bench.transfer_speed --wan        # and the lab WAN link
    .venv/bin/python -m tests.bench.transfer_speed --size-mb 64 --json

It prints numbers and never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO_ROOT
from tests.helpers.poll import until

BENCH_VENV = REPO_ROOT / ".bench-venv"
WORMHOLE_PACKAGES = ["magic-wormhole", "magic-wormhole-mailbox-server", "magic-wormhole-transit-relay"]
PASSWORD = "benchmark password 1"
MB = 1_000_000


def same_size(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1):
            return True
    except OSError:
        return False


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes (incompressible, as most large files people send)."""
    block = os.urandom(4 * 1024 * 1024)
    with path.open("wb") as file:
        left = size
        while left:
            file.write(block[: min(left, len(block))])
            left -= min(left, len(block))


# ------------------------------------------------------------------------------------------ ours, loopback


async def spawn(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
    pipe = asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(
        *argv, stdout=pipe, stderr=pipe, stdin=asyncio.subprocess.DEVNULL, **kwargs
    )


async def read_events(
    process: asyncio.subprocess.Process, until: str, timeout: float
) -> list[dict[str, Any]]:
    """JSON lines (each stamped with its arrival time) up to the first with event ``until``."""
    assert process.stdout is not None
    lines: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await process.stdout.readline()
            if not raw:
                stderr = (await process.stderr.read()).decode() if process.stderr else ""
                raise RuntimeError(f"the process ended before '{until}': {lines[-3:]}\n{stderr[-2000:]}")
            line = json.loads(raw)
            line["_at"] = time.monotonic()
            lines.append(line)
            if line.get("event") == "error":
                raise RuntimeError(f"error: {line}")
            if line.get("event") == until:
                return lines


@contextlib.asynccontextmanager
async def rendezvous(work: Path) -> AsyncIterator[str]:
    port, stun = free_port(), free_port()
    server = await spawn(
        sys.executable, "-m", "rendezvous", "--host", "127.0.0.1", "--port", str(port),
        "--stun-port", str(stun), "--data", str(work / "server"), "--allow-loopback-peers", cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        url = f"ws://127.0.0.1:{port}"
        await until(functools.partial(accepting, port), 10, "the rendezvous server")
        yield url
    finally:
        server.terminate()
        await server.wait()


def cli(url: str, work: Path, user: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli.main", "--server", url, "--user", user,
            "--config-dir", str(work / f"config-{user}"), "--json", *args]  # fmt: skip


async def run_cli(url: str, work: Path, user: str, *args: str) -> None:
    process = await spawn(*cli(url, work, user, *args), cwd=REPO_ROOT, env=_env())
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{user} {args}: {out.decode()} {err.decode()}")


def _env() -> dict[str, str]:
    return {**os.environ, "PUNCHLINE_PASSWORD": PASSWORD}


async def ours_loopback(source: Path, work: Path) -> dict[str, Any]:
    """Send ``source`` from alice to bob on 127.0.0.1 through a local server; timings in seconds."""
    async with rendezvous(work) as url:
        for user in ("alice", "bob"):
            await run_cli(url, work, user, "register")
        await run_cli(url, work, "alice", "add", "bob")
        await run_cli(url, work, "bob", "accept", "alice")
        downloads = work / "ours-downloads"
        listener = await spawn(
            *cli(url, work, "bob", "listen", "--accept-files", str(downloads)),
            cwd=REPO_ROOT, env=_env(),
        )  # fmt: skip
        try:
            await read_events(listener, "listening", 30)
            started = time.monotonic()
            sender = await spawn(
                *cli(url, work, "alice", "send", str(source), "--to", "bob"),
                cwd=REPO_ROOT, env=_env(),
            )  # fmt: skip
            received = await read_events(listener, "finished", 600)
            lines = await read_events(sender, "finished", 60)
            await sender.wait()
        finally:
            listener.terminate()
            await listener.wait()
        offer_at = next(line["_at"] for line in received if line["event"] == "offer")
        done_at = received[-1]["_at"]
        ok = same_size(downloads / source.name, source)
        finished = lines[-1]
        return {
            "transfer_s": round(done_at - offer_at, 3),
            "command_s": round(done_at - started, 3),
            "path_type": finished.get("path_type"),
            "sender_rate_MBps": round(finished["rate"] / MB, 1),
            "complete": ok,
        }


# -------------------------------------------------------------------------------------- magic-wormhole


def ensure_wormhole() -> Path:
    """The bench virtualenv's bin folder, with magic-wormhole and its servers installed."""
    bin_dir = BENCH_VENV / "bin"
    if not (bin_dir / "wormhole").exists():
        print("installing magic-wormhole into .bench-venv ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check", *WORMHOLE_PACKAGES],
            check=True,
        )
    return bin_dir


async def wormhole_loopback(source: Path, work: Path) -> dict[str, Any]:
    """Send ``source`` with magic-wormhole through a local mailbox server and transit relay."""
    bin_dir = ensure_wormhole()
    mailbox_port, relay_port = free_port(), free_port()
    servers = [
        await spawn(
            str(bin_dir / "twist"),
            "wormhole-mailbox",
            f"--port=tcp:{mailbox_port}:interface=127.0.0.1",
            cwd=work,  # both servers keep an SQLite usage database in their working folder
        ),
        await spawn(
            str(bin_dir / "twist"), "transitrelay", f"--port=tcp:{relay_port}:interface=127.0.0.1", cwd=work
        ),
    ]
    try:
        for port in (mailbox_port, relay_port):
            await until(functools.partial(accepting, port), 10, f"the wormhole server on port {port}")
        common = [str(bin_dir / "wormhole"), "--relay-url", f"ws://127.0.0.1:{mailbox_port}/v1",
                  "--transit-helper", f"tcp:127.0.0.1:{relay_port}"]  # fmt: skip
        code = "7-benchmark-code"
        downloads = work / "wormhole-downloads"
        downloads.mkdir()
        sender = await spawn(*common, "send", "--code", code, str(source))
        await asyncio.sleep(0.5)  # the sender claims the code first
        started = time.monotonic()
        receiver = await spawn(*common, "receive", "--accept-file", code, cwd=downloads)
        _, err = await asyncio.wait_for(receiver.communicate(), 600)
        done = time.monotonic()
        await asyncio.wait_for(sender.wait(), 30)
        if receiver.returncode != 0:
            raise RuntimeError(f"wormhole receive failed: {err.decode()[-2000:]}")
        ok = same_size(downloads / source.name, source)
        return {"transfer_s": round(done - started, 3), "complete": ok}
    finally:
        for server in servers:
            server.terminate()
            await server.wait()


# ------------------------------------------------------------------------------------------------- WAN


def default_tcp_congestion_control() -> str:
    """The kernel's default TCP congestion control (namespaces inherit it)."""
    return Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()


async def wan(size: int, mbit: int, delay_ms: float, loss: float, seconds: int) -> dict[str, Any]:
    """iperf3 TCP, then our transfers, from a host behind a cone NAT to a public host over impaired links."""
    from tests.helpers.natlab.cli import Peers, read_until
    from tests.helpers.natlab.fixtures import LabFactory
    from tests.helpers.natlab.topology import missing_capability

    missing = missing_capability()
    if missing:
        return {"skipped": f"the NAT lab cannot run here: {missing}"}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        factory = LabFactory(work / "lab")
        try:
            lab = factory("cone", "public", rate_kbit=mbit * 1000, delay_ms=delay_ms, loss=loss)
            default_cc = default_tcp_congestion_control()
            iperf_mbit: dict[str, float] = {}
            for cc in dict.fromkeys([default_cc, "cubic"]):
                iperf_server = await lab.spawn("right", "iperf3", "-s", "-1", "-B", lab.right.ip, stdin=False)
                await asyncio.sleep(0.5)
                argv = ["iperf3", "-c", lab.right.ip, "-t", str(seconds), "-C", cc, "-J"]
                iperf = await lab.spawn("left", *argv, stdin=False)
                assert iperf.proc.stdout is not None
                report = json.loads(await asyncio.wait_for(iperf.proc.stdout.read(), seconds + 30))
                await iperf.wait(10)
                await iperf_server.wait(10)
                iperf_mbit[cc] = round(report["end"]["sum_received"]["bits_per_second"] / 1e6, 2)

            os.environ["PUNCHLINE_PASSWORD"] = PASSWORD
            peers = Peers(lab)
            await peers.start_server()
            await peers.befriend()
            downloads = work / "downloads"
            await peers.listen("right", "--accept-files", str(downloads))
            results: dict[str, Any] = {}
            for name, file_size, options in (
                ("ours", size, ()),
                ("ours_no_repair", size // 4, ("--no-loss-repair",)),
            ):
                source = work / f"{name}.bin"
                make_file(source, file_size)
                sender = await peers.send(str(source), *options)
                lines = await read_until(sender, lambda line: line["event"] == "finished", timeout=1800)
                await sender.wait(30)
                finished = lines[-1]
                results[name] = {
                    "mbit": round(finished["bytes"] * 8 / finished["seconds"] / 1e6, 2),
                    "bytes": finished["bytes"],
                    "path_type": finished.get("path_type"),
                    "complete": (downloads / source.name).stat().st_size == file_size,
                }
            best = max(iperf_mbit.values())
            return {
                "link": {"mbit": mbit, "one_way_delay_ms_per_link": delay_ms, "loss_percent_per_link": loss},
                "iperf3_tcp_mbit": iperf_mbit,
                **results,
                "ratio": round(results["ours"]["mbit"] / best, 2),
            }
        finally:
            await factory.aclose()


# ------------------------------------------------------------------------------------------------ main


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="loopback file size in MiB (default 1024)")
    parser.add_argument("--no-wormhole", action="store_true", help="skip the magic-wormhole baseline")
    parser.add_argument("--wan", action="store_true", help="also measure the NAT lab's WAN link (root)")
    parser.add_argument("--wan-size-mb", type=int, default=64, help="WAN file size in MiB (default 64)")
    parser.add_argument("--wan-mbit", type=int, default=50)
    parser.add_argument(
        "--wan-delay-ms", type=float, default=10.0, help="one way, per link: 40 ms round trip"
    )
    parser.add_argument("--wan-loss", type=float, default=0.5, help="percent per link and direction")
    parser.add_argument("--iperf-seconds", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    results: dict[str, Any] = {"size_bytes": size}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        source = work / "payload.bin"
        make_file(source, size)
        ours = await ours_loopback(source, work)
        ours["MBps"] = round(size / ours["transfer_s"] / MB, 1)
        results["ours_loopback"] = ours
        shutil.rmtree(work / "ours-downloads", ignore_errors=True)
        if not args.no_wormhole:
            wormhole = await wormhole_loopback(source, work)
            wormhole["MBps"] = round(size / wormhole["transfer_s"] / MB, 1)
            results["wormhole_loopback"] = wormhole
            results["ratio_to_wormhole"] = round(ours["MBps"] / wormhole["MBps"], 2)
    if args.wan:
        results["wan"] = await wan(
            args.wan_size_mb * 1024 * 1024,
            args.wan_mbit,
            args.wan_delay_ms,
            args.wan_loss,
            args.iperf_seconds,
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"file: {size / MB:.0f} MB of random bytes")
    print(f"ours (loopback):   {ours['MBps']:7.1f} MB/s  ({ours['transfer_s']} s transfer, "
          f"{ours['command_s']} s whole command, {ours['path_type']})")  # fmt: skip
    if "wormhole_loopback" in results:
        wormhole = results["wormhole_loopback"]
        print(f"magic-wormhole:    {wormhole['MBps']:7.1f} MB/s  ({wormhole['transfer_s']} s)  "
              f"ratio {results['ratio_to_wormhole']}")  # fmt: skip
    if "wan" in results:
        w = results["wan"]
        if "skipped" in w:
            print(f"WAN: skipped ({w['skipped']})")
        else:
            tcp = ", ".join(f"{cc} {rate}" for cc, rate in w["iperf3_tcp_mbit"].items())
            print(f"WAN {w['link']}:\n  iperf3 TCP ({tcp}) Mbit/s\n"
                  f"  ours {w['ours']['mbit']} Mbit/s ({w['ours']['path_type']}), "
                  f"ratio {w['ratio']} to the better TCP\n"
                  f"  ours without loss repair: {w['ours_no_repair']['mbit']} Mbit/s "
                  f"({w['ours_no_repair']['bytes'] // 2**20} MiB)")  # fmt: skip


if __name__ == "__main__":
    if "--wan" in sys.argv and shutil.which("iperf3") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "iperf3"], check=True, env=env)
    asyncio.run(main())
