"""Forwarding throughput of our TURN relay next to coturn's, on 127.0.0.1, with the same client and load.

What it measures, in one run, for each server (ours, then coturn 4.6.x ``turnserver``):

* One UDP allocation with a channel bound to an echo peer (coturn's ``turnutils_peer``, which sends every
  datagram back to its sender, i.e. to the relayed address). Each datagram is relayed twice: client ->
  peer as ChannelData, and peer -> client (the relay wraps it in ChannelData again).
* At each offered rate (default 5k, 10k, 20k, 40k, 80k datagrams/s; ``--rates``) the client sends
  ``--size``-byte payloads (default 1200) for ``--seconds`` (default 2) and counts what comes back
  (waiting 0.5 s more for stragglers). Reported: delivered round trips per second, payload Mbit/s
  delivered, loss in %, the rate actually offered (the Python load generator may fall short at high
  rates; it is the same for both servers), and the server's CPU time per second
  of load (utime + stime from /proc/PID/stat).
* "ratio ours/coturn" compares the best delivered rate of each server over all offered rates.
* Our relay runs with its per-allocation bandwidth cap (TurnQuotas.bytes_per_second, 2 MB/s) lifted, as
  coturn has none by default; ``--keep-cap`` measures it as shipped (then it delivers ~200 datagrams/s).

How: our server is the unmodified ``python -m rendezvous`` in its own process (STUN/TURN only matter; the
WebSocket port is 0), coturn is started as tests/helpers/coturn.py starts it. The relay under test is
pinned to CPU 0 and the load generator and echo peer to CPU 1 (with two or more cores). The client is the
app's sans-IO `TurnAllocation` driven over a plain socket for the Allocate/ChannelBind exchange; the load
then re-sends the ChannelData frame it produced from a non-blocking socket. Every process started is stopped
(SIGTERM, then SIGKILL).

Run it from the repository root; it prints numbers and never passes or fails on time::

    .venv/bin/python -m tests.bench.relay_throughput
    .venv/bin/python -m tests.bench.relay_throughput --seconds 3 --size 1200 --rates 10000,40000 --json

turnutils_uclient was not used as the load: it paces its own sends and reports its transmit time in whole
seconds, which makes it a poor throughput meter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from app.nat.turn_client import AllocationFailed, ChannelBound, ChannelFailed, TurnAllocation
from rendezvous.wire.stun import Address
from rendezvous.wire.turn import make_rest_credentials
from tests.helpers.coturn import free_udp_port

HOST = "127.0.0.1"
SECRET = "relay throughput benchmark secret"
SERVER_CPU = 0
LOAD_CPU = 1


@dataclass
class RateResult:
    """The outcome of one offered rate against one server."""

    offered_rate: int
    sent: int
    received: int
    seconds: float
    send_errors: int
    server_cpu_per_s: float

    @property
    def achieved_offered(self) -> float:
        """Datagrams per second actually sent."""
        return self.sent / self.seconds

    @property
    def delivered(self) -> float:
        """Round trips (datagrams back at the client) per second."""
        return self.received / self.seconds

    @property
    def loss(self) -> float:
        """Lost share of the datagrams sent, in percent."""
        return 100.0 * (1 - self.received / self.sent) if self.sent else 0.0


def pin(cpu: int) -> None:
    """Pin the calling process to ``cpu`` when the machine has more than one core."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(args: list[str], cpu: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` pinned to ``cpu``; SIGTERM (then SIGKILL) it on the way out."""
    process = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: pin(cpu),  # noqa: PLW1509 (no threads here)
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: Run ``python -m rendezvous`` with the per-allocation bandwidth cap (TurnQuotas.bytes_per_second) lifted.
#: The default TurnConfig's quotas instance is the default every TurnConfig gets, so patching it is enough.
UNCAPPED = (
    "import runpy, sys, rendezvous.config as c; "
    "object.__setattr__(c.TurnConfig.quotas, 'bytes_per_second', 10**12); "
    "object.__setattr__(c.TurnConfig.quotas, 'burst_bytes', 10**12); "
    "sys.argv[0] = 'rendezvous'; runpy.run_module('rendezvous', run_name='__main__', alter_sys=True)"
)


def our_server(directory: Path, port: int, *, keep_cap: bool) -> list[str]:
    """Command line of our rendezvous server with its TURN relay on UDP ``port`` (cap lifted unless kept)."""
    secret_file = directory / "turn_secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    start = ["-m", "rendezvous"] if keep_cap else ["-c", UNCAPPED]
    return [
        sys.executable, *start, "--host", HOST, "--port", "0", "--stun-port", str(port),
        "--data", str(directory / "data"), "--turn-secret-file", str(secret_file), "--log-level", "warning",
        "--allow-loopback-peers", "--relay-ports", "40000-48999",
    ]  # fmt: skip


def coturn_server(directory: Path, port: int, turnserver: str) -> list[str]:
    """Command line of coturn as tests/helpers/coturn.py runs it, checking TURN REST credentials."""
    return [
        turnserver, "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
        "--use-auth-secret", "--static-auth-secret", SECRET, "--realm", "punchline.test",
        "--listening-ip", HOST, "--listening-port", str(port), "--relay-ip", HOST,
        "--min-port", "49152", "--max-port", "65535", "--allow-loopback-peers",
        "--pidfile", str(directory / "turnserver.pid"), "--db", str(directory / "turndb"),
        "--log-file", str(directory / "turnserver.log"), "--simple-log", "--no-stdout-log",
    ]  # fmt: skip


def bind_channel(sock: socket.socket, server: Address, peer: Address, timeout: float = 10.0) -> bytes:
    """Allocate on ``server`` and bind a channel to ``peer``; returns the bound channel number (2 bytes).

    Retries the whole exchange until ``timeout`` (the server may still be starting).
    """
    deadline = time.monotonic() + timeout
    while True:
        creds = make_rest_credentials(SECRET, "bench", now=time.time(), ttl=3600)
        allocation = TurnAllocation(server, creds.username, creds.password)
        allocation.add_peer(peer, time.monotonic())
        attempt_end = min(deadline, time.monotonic() + 2.0)
        while time.monotonic() < attempt_end:
            now = time.monotonic()
            allocation.handle_timer(now)
            for data, address in allocation.datagrams_to_send(now):
                sock.sendto(data, address)
            while (event := allocation.next_event()) is not None:
                if isinstance(event, ChannelBound):
                    frame = bytearray()
                    allocation.send_to_peer(peer, b"", now)
                    for data, _ in allocation.datagrams_to_send(now):
                        frame += data
                    return bytes(frame[:2])
                if isinstance(event, (AllocationFailed, ChannelFailed)):
                    raise RuntimeError(f"TURN setup failed: {event}")
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready:
                data, source = sock.recvfrom(65535)
                allocation.receive_datagram(data, source, time.monotonic())
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no channel bound on {server} within {timeout} s")


def drain(sock: socket.socket, size: int) -> int:
    """Read everything waiting on the non-blocking ``sock``; returns how many echoed frames it held."""
    count = 0
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return count
        if len(data) >= size + 4 and 0x40 <= data[0] <= 0x4F:
            count += 1


def run_rate(  # noqa: PLR0917
    sock: socket.socket, server: Address, frame: bytes, rate: int, seconds: float, pid: int
) -> RateResult:
    """Offer ``rate`` frames/s for ``seconds`` to ``server``, count the echoes (plus 0.5 s to drain)."""
    size = len(frame) - 4
    sent = received = errors = 0
    cpu_before = cpu_seconds(pid)
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = min(int((now - start) * rate), sent + 256)
        while sent < due:
            try:
                sock.sendto(frame, server)
                sent += 1
            except (BlockingIOError, OSError):
                errors += 1
                break
        received += drain(sock, size)
        if sent >= int((time.monotonic() - start) * rate):
            select.select([sock], [], [], 0.0005)
    cpu_used = cpu_seconds(pid) - cpu_before
    linger = time.monotonic() + 0.5
    while (left := linger - time.monotonic()) > 0:
        select.select([sock], [], [], left)
        received += drain(sock, size)
    return RateResult(rate, sent, received, seconds, errors, cpu_used / seconds)


def bench_server(  # noqa: PLR0917
    name: str, command: list[str], port: int, peer: Address, rates: list[int], seconds: float, size: int
) -> list[RateResult]:
    """Start one server, set up a channel to ``peer`` and run every rate against it."""
    server = (HOST, port)
    results: list[RateResult] = []
    with running(command, SERVER_CPU) as process, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        header = bind_channel(sock, server, peer)
        frame = header + size.to_bytes(2, "big") + bytes(size)
        sock.setblocking(False)
        for rate in rates:
            result = run_rate(sock, server, frame, rate, seconds, process.pid)
            results.append(result)
            print(f"  {name:6} offered {rate:>6}/s (sent {result.achieved_offered:8.0f}/s): "
                  f"{result.delivered:8.0f} datagrams/s back, loss {result.loss:5.1f}%, "
                  f"server CPU {100 * result.server_cpu_per_s:3.0f}%", flush=True)  # fmt: skip
            time.sleep(0.2)
            drain(sock, size)
    return results


def summary_line(name: str, results: list[RateResult], size: int) -> str:
    """'name: N datagrams/s (X Mbit/s, loss L%)' for the best delivered rate."""
    best = max(results, key=lambda r: r.delivered)
    mbit = best.delivered * size * 8 / 1e6
    return (
        f"{name}: {best.delivered:.0f} datagrams/s ({mbit:.1f} Mbit/s, loss {best.loss:.1f}%)"
        f" at offered {best.offered_rate}/s"
    )


def main() -> None:
    """Parse options, run both servers, print (and optionally dump as JSON) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="load time per offered rate")
    parser.add_argument("--size", type=int, default=1200, help="payload bytes per datagram")
    parser.add_argument(
        "--rates", default="5000,10000,20000,40000,80000", help="offered datagrams/s, comma-separated"
    )
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    parser.add_argument(
        "--keep-cap",
        action="store_true",
        help="keep our relay's per-allocation bandwidth cap (2 MB/s; coturn has none by default)",
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    turnserver, peer_tool = shutil.which("turnserver"), shutil.which("turnutils_peer")
    if turnserver is None or peer_tool is None:
        sys.exit("coturn (turnserver, turnutils_peer; Debian: coturn) is not installed")
    pin(LOAD_CPU)
    peer_port = free_udp_port()
    peer: Address = (HOST, peer_port)
    all_results: dict[str, list[RateResult]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp,
        running([peer_tool, "-L", HOST, "-p", str(peer_port)], LOAD_CPU),
    ):
        directory = Path(tmp)
        print(
            f"payload {args.size} bytes, {args.seconds} s per rate, rates {rates};"
            " each datagram is relayed twice"
        )
        ours_port, coturn_port = free_udp_port(), free_udp_port()
        commands = {
            "ours": (our_server(directory, ours_port, keep_cap=args.keep_cap), ours_port),
            "coturn": (coturn_server(directory, coturn_port, turnserver), coturn_port),
        }
        for name, (command, port) in commands.items():
            all_results[name] = bench_server(name, command, port, peer, rates, args.seconds, args.size)
    print(summary_line("ours", all_results["ours"], args.size))
    print(summary_line("coturn", all_results["coturn"], args.size))
    best = {name: max(r.delivered for r in results) for name, results in all_results.items()}
    ratio = best["ours"] / best["coturn"] if best["coturn"] else float("nan")
    print(f"ratio ours/coturn: {ratio:.2f} (target >= 0.5, informational)")
    if args.json:
        payload = {
            "size": args.size,
            "seconds": args.seconds,
            "ratio": ratio,
            "servers": {
                name: [asdict(r) | {"delivered": r.delivered, "loss": r.loss} for r in results]
                for name, results in all_results.items()
            },
        }
        print(json.dumps(payload))


if __name__ == "__main__":
    main()
