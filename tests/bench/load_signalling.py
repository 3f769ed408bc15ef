"""Load benchmark of the rendezvous server's signalling: clients held, memory per client, forward latency.

What it measures, against ONE rendezvous server process on 127.0.0.1 (STUN off):

1. **Clients held**: N clients (default 5000) sign in with session tokens (the reconnect path real clients
   use), at most 100 at a time so the listen backlog is never overrun. Reports sign-in throughput in
   clients/s, and how many clients are still connected at the end.
2. **Memory per idle client**: the server's RSS (VmRSS in /proc/PID/status) right after it starts, empty,
   and again after all N are signed in and idle for a few seconds. Reports the difference in MiB and in
   KiB per client.
3. **Signalling forward latency**: at a steady rate (default 500 messages/s for 20 s) a client sends
   ``send_signal`` to its mutual contact with ``time.monotonic()`` in the payload, and the receiving client
   records arrival - send (the monotonic clock is system-wide on Linux, so this works across processes).
   Reports p50/p90/p99/max, messages delivered and lost, the achieved rate, the send -> ``ok`` round trip,
   the server's CPU time in that phase (utime + stime from /proc/PID/stat), and its garbage-collection
   pauses, matched against the slow messages.

How it works:

* The database is seeded before the server starts, directly through `rendezvous.store.Store`, in the data
  directory the server then uses. It gets users ``user00000``... that share one precomputed argon2 hash
  (hashing N times would take minutes and is not what is measured), one token per user bound to that
  client's device id (`DeviceIdentity.generate()`), and mutual contacts 2k <-> 2k+1.
* The clients are the app's real `SignallingClient`, all held by asyncio in one separate load process.
  ``--procs 2`` splits them over two processes, which only helps with more than two cores. The load
  processes run with their garbage collector off (``--load-gc`` turns it on), so that their own pauses do
  not pass for server latency.
* With two or more cores the server is pinned to CPU 0 and everything else to the other CPUs, so the
  server has a core of its own.
* The server is the unmodified ``rendezvous`` module run as ``python -m rendezvous`` would run it. By
  default it is started through a few lines of ``python -c`` that add a `gc.callbacks` hook timing its
  collections before running the module; ``--no-server-gc-watch`` starts plain ``python -m rendezvous``.
* Every phase has a time limit. The server is always stopped (SIGTERM, then SIGKILL), and the child
  processes get SIGTERM if this script dies.

Run it from the repository root. It prints numbers and does not pass or fail on time::

    .venv/bin/python -m tests.bench.load_signalling             # 5000 clients, 500 msg/s for 20 s
    .venv/bin/python -m tests.bench.load_signalling --quick     # smoke run: 500 clients for 5 s
    .venv/bin/python -m tests.bench.load_signalling --json      # also one JSON object on stdout

``.venv/bin/python tests/bench/load_signalling.py`` works too. With ``--json`` the human-readable lines go
to stderr and stdout carries only the JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.account.identity import DeviceIdentity
from app.signalling.client import (
    ClientOptions,
    Credentials,
    NotConnected,
    ServerError,
    SignallingClient,
    SignallingError,
)
from app.signalling.events import Disconnected, SessionEnded, SignalReceived
from rendezvous.accounts import hash_password, new_token, token_digest
from rendezvous.store import DATABASE_NAME, Store
from tests.helpers.paths import REPO_ROOT
from tests.helpers.poll import until

MODULE = "tests.bench.load_signalling"
CLIENT_IMPL = "app.signalling.client.SignallingClient"
TARGET_CLIENTS = 5000
TARGET_RATE = 500.0
TARGET_P99_MS = 50.0
SLOW_MS = 10.0  # messages slower than this are matched against the server's GC pauses
PR_SET_PDEATHSIG = 1  # prctl(2)
GC_LOG_ENV = "PUNCHLINE_BENCH_GC_LOG"

# Runs the server exactly as ``python -m rendezvous ARGS`` would, after adding a gc.callbacks hook that
# appends "<monotonic time at the end> <generation> <seconds>" to the file named by $PUNCHLINE_BENCH_GC_LOG.
SERVER_GC_WATCH = f"""\
import gc, os, runpy, time
log = open(os.environ["{GC_LOG_ENV}"], "w", buffering=1)
began = 0.0
def watch(phase, info):
    global began
    if phase == "start":
        began = time.perf_counter()
    else:
        log.write(f"{{time.monotonic():.6f}} {{info['generation']}} {{time.perf_counter() - began:.6f}}\\n")
gc.callbacks.append(watch)
runpy.run_module("rendezvous", run_name="__main__", alter_sys=True)
"""


class BenchError(Exception):
    """The benchmark could not run (the server did not start, a load process died...)."""


# ---------------------------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class ClientSeed:
    """One benchmark client: its account, session token and device key (raw Ed25519 private key, hex)."""

    username: str
    token: str
    private_key: str

    def identity(self) -> DeviceIdentity:
        """The device identity the token is bound to."""
        return DeviceIdentity(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.private_key)))


def seed_database(data_dir: Path, clients: int) -> list[ClientSeed]:
    """Create the users, tokens and mutual contact pairs (2k <-> 2k+1) the server will find at start."""
    password_hash = hash_password("benchmark password, never used to sign in")
    seeds: list[ClientSeed] = []
    store = Store(data_dir / DATABASE_NAME)
    try:
        for i in range(clients):
            username = f"user{i:05d}"
            identity = DeviceIdentity.generate()
            token = new_token()
            store.create_user(username, password_hash)
            store.add_token(token_digest(token), username, identity.device_id)
            raw = identity.private_key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            seeds.append(ClientSeed(username, token, raw.hex()))
        store.set_edges(
            *(
                edge
                for k in range(0, clients - 1, 2)
                for edge in (
                    (seeds[k].username, seeds[k + 1].username, "contact"),
                    (seeds[k + 1].username, seeds[k].username, "contact"),
                )
            )
        )
    finally:
        store.close()
    return seeds


# ---------------------------------------------------------------------------------------------- processes


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (children inherit it); return the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _die_with_parent() -> None:
    """Run in a child before exec: SIGTERM it when the benchmark process dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from VmRSS in /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def process_open_files(pid: int) -> int:
    """How many file descriptors a process holds (listening socket, connections, database...)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class GcPause:
    """One garbage collection: when it ended (monotonic seconds), which generation, how long it took."""

    end: float
    generation: int
    seconds: float

    @property
    def start(self) -> float:
        """When it began."""
        return self.end - self.seconds


def gc_summary(pauses: Sequence[GcPause], origin: float) -> dict[str, Any]:
    """Collections per generation, the longest pause (and when, relative to ``origin``), the total."""
    longest = max(pauses, key=lambda p: p.seconds, default=None)
    by_generation = Counter(f"gen{p.generation}" for p in pauses)
    return {
        "collections": dict(sorted(by_generation.items())),
        "total_ms": round(sum(p.seconds for p in pauses) * 1000, 1),
        "max_ms": round(longest.seconds * 1000, 1) if longest else 0.0,
        "max_generation": longest.generation if longest else None,
        "max_at_s": round(longest.start - origin, 2) if longest else None,
    }


def describe_gc(summary: dict[str, Any]) -> str:
    """One line for `gc_summary`."""
    counts = ", ".join(f"{n} {name}" for name, n in summary["collections"].items()) or "no collections"
    if summary["max_generation"] is None:
        return counts
    return (
        f"{counts}; longest {summary['max_ms']} ms (gen{summary['max_generation']} at "
        f"{summary['max_at_s']:+.1f} s), total {summary['total_ms']} ms"
    )


class ServerProcess:
    """The rendezvous server as a child process, its JSON log going to a file."""

    def __init__(self, data_dir: Path, log_path: Path, gc_log: Path | None, cpus: set[int] | None) -> None:
        self.log_path = log_path
        self.gc_log = gc_log
        self._log = log_path.open("wb")
        launcher = ["-c", SERVER_GC_WATCH] if gc_log else ["-m", "rendezvous"]
        options = ["--host", "127.0.0.1", "--port", "0", "--stun-port", "off", "--data", str(data_dir)]
        self.command = [sys.executable, *launcher, *options]
        env = dict(os.environ)
        if gc_log:
            env[GC_LOG_ENV] = str(gc_log)
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads exist yet
        )
        if cpus:
            os.sched_setaffinity(self.process.pid, cpus)
        self.pid = self.process.pid

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's JSON log lines so far (other lines are kept as ``{"text": ...}``)."""
        lines: list[dict[str, Any]] = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            lines.append(value if isinstance(value, dict) else {"text": text})
        return lines

    def log_tail(self, count: int = 20) -> str:
        """The last lines of the server's log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])

    def gc_pauses(self, since: float, until: float) -> list[GcPause]:
        """The server's collections that ended between two monotonic times (none without the GC watch)."""
        if self.gc_log is None or not self.gc_log.exists():
            return []
        pauses = []
        for line in self.gc_log.read_text().splitlines():
            end, generation, seconds = line.split()
            pause = GcPause(float(end), int(generation), float(seconds))
            if since <= pause.end <= until:
                pauses.append(pause)
        return pauses

    async def wait_listening(self, timeout: float) -> str:
        """The URL from the server's ``listening`` line."""

        def url() -> str | None:
            for line in self.log_lines():
                if line.get("event") == "listening" and isinstance(line.get("url"), str):
                    return str(line["url"])
            if self.process.poll() is not None:
                raise BenchError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            return None

        try:
            found = await until(url, timeout, "the server's listening line")
        except TimeoutError:
            raise BenchError(
                f"the server did not start listening within {timeout:g} s:\n{self.log_tail()}"
            ) from None
        assert found is not None
        return found

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited within 15 s; return the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class LoadProcess:
    """One load-generating child process (this module with ``--worker``), driven by JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    @classmethod
    async def start(cls, worker_args: list[str], cpus: set[int]) -> LoadProcess:
        """Start ``python -m tests.bench.load_signalling --worker WORKER_ARGS``."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            MODULE,
            "--worker",
            *worker_args,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # the answer to "steady" carries every latency on one line
            preexec_fn=_die_with_parent,
        )
        if cpus:
            os.sched_setaffinity(process.pid, cpus)
        return cls(process)

    async def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one command and wait for its one-line JSON answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(
                f"load process {self.pid} did not finish {command['cmd']!r} in {timeout:g} s"
            ) from None
        if not line:
            raise BenchError(f"load process {self.pid} exited during {command['cmd']!r}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        """Ask it to close its clients and exit; kill it if that takes longer than 35 s."""
        if self.process.returncode is None:
            with contextlib.suppress(BenchError, OSError, ValueError):
                await self.call({"cmd": "stop"}, 30.0)
            try:
                await asyncio.wait_for(self.process.wait(), 5.0)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


# ---------------------------------------------------------------------------------------------- load side


class GcWatch:
    """Records this process's garbage collections (a long one stalls every client the process holds)."""

    def __init__(self) -> None:
        self._began = 0.0
        self.pauses: list[GcPause] = []
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append(
                GcPause(time.monotonic(), info["generation"], time.perf_counter() - self._began)
            )


class Worker:
    """Holds its share of the clients: signs them in, sends at a steady rate, records arrivals."""

    def __init__(
        self, url: str, pairs: list[tuple[ClientSeed, ClientSeed]], *, concurrency: int, pad: int
    ) -> None:
        self._url = url
        self._pairs = pairs
        self._concurrency = concurrency
        self._pad = "x" * pad
        self._gc = GcWatch()
        self._clients: dict[str, SignallingClient] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._arrivals: dict[int, tuple[float, float]] = {}  # seq -> (send time, forward latency)
        self._expected: int | None = None  # arrivals that complete the steady phase, once known
        self._all_arrived = asyncio.Event()
        self._disconnects = 0

    async def sign_in(self) -> dict[str, Any]:
        """Sign every client in with its token, ``concurrency`` at a time."""
        gate = asyncio.Semaphore(self._concurrency)
        errors: Counter[str] = Counter()

        async def one(seed: ClientSeed) -> None:
            async with gate:
                client = SignallingClient(
                    self._url,
                    Credentials(seed.username, token=seed.token),
                    seed.identity(),
                    options=ClientOptions(open_timeout=30.0, request_timeout=30.0),
                )
                try:
                    await client.start()
                except SignallingError as exc:
                    errors[f"{type(exc).__name__}: {exc}"] += 1
                    return
                self._clients[seed.username] = client
                self._consumers.append(asyncio.create_task(self._consume(client)))

        started = time.monotonic()
        await asyncio.gather(*(one(seed) for pair in self._pairs for seed in pair))
        return {
            "signed_in": len(self._clients),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "seconds": time.monotonic() - started,
        }

    async def _consume(self, client: SignallingClient) -> None:
        while True:
            event = await client.next_event()
            now = time.monotonic()
            if isinstance(event, SignalReceived):
                seq, sent = event.payload.get("seq"), event.payload.get("t")
                if isinstance(seq, int) and isinstance(sent, float):
                    self._arrivals.setdefault(seq, (sent, now - sent))
                    if self._expected is not None and len(self._arrivals) >= self._expected:
                        self._all_arrived.set()
            elif isinstance(event, Disconnected | SessionEnded):
                self._disconnects += 1

    async def steady(self, rate: float, seconds: float, start: float, grace: float) -> dict[str, Any]:
        """From monotonic time ``start``, send ``rate`` signals/s for ``seconds``, alternating directions."""
        pairs = [
            (a, b) for a, b in self._pairs if a.username in self._clients and b.username in self._clients
        ]
        if not pairs:
            raise BenchError("no pair of clients is signed in")
        self._arrivals.clear()
        self._expected = None
        self._all_arrived.clear()
        self._gc.pauses.clear()
        total = int(rate * seconds)
        interval = 1.0 / rate
        accepted = 0
        errors: Counter[str] = Counter()
        round_trips: list[float] = []
        sends: set[asyncio.Task[None]] = set()
        first_send = last_send = max_lag = 0.0

        async def send_one(seq: int, sender: SignallingClient, to: str) -> None:
            nonlocal accepted
            sent_at = time.monotonic()
            try:
                await sender.send_signal(to, {"seq": seq, "t": sent_at, "pad": self._pad})
            except ServerError as exc:
                errors[exc.code] += 1
                return
            except NotConnected:
                errors["not_connected"] += 1
                return
            accepted += 1
            round_trips.append(time.monotonic() - sent_at)

        seq = 0
        while seq < total:
            due = start + seq * interval
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            max_lag = max(max_lag, now - due)
            first_send = first_send or now
            last_send = now
            a, b = pairs[seq % len(pairs)]
            sender, receiver = (a, b) if (seq // len(pairs)) % 2 == 0 else (b, a)
            task = asyncio.create_task(send_one(seq, self._clients[sender.username], receiver.username))
            sends.add(task)
            task.add_done_callback(sends.discard)
            seq += 1

        deadline = time.monotonic() + grace
        if sends:
            await asyncio.wait(sends, timeout=grace)
        for task in list(sends):
            task.cancel()
        self._expected = accepted
        if len(self._arrivals) < accepted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_arrived.wait(), max(0.0, deadline - time.monotonic()))
        self._expected = None
        return {
            "sent": total,
            "accepted": accepted,
            "errors": dict(errors),
            "delivered": len(self._arrivals),
            "latencies": [[round(sent, 6), round(lat, 6)] for sent, lat in self._arrivals.values()],
            "round_trips": [round(rtt, 6) for rtt in round_trips],
            "first_send": first_send,
            "last_send": last_send,
            "max_lag": max_lag,
            "gc": [[p.end, p.generation, p.seconds] for p in self._gc.pauses],
        }

    def held(self) -> dict[str, Any]:
        """How many clients are connected right now, and how many drops were seen."""
        connected = sum(1 for client in self._clients.values() if client.connected)
        return {"connected": connected, "disconnects": self._disconnects}

    async def close(self) -> None:
        """Close every client (their close handshakes run concurrently)."""
        for task in self._consumers:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20.0):
                await asyncio.gather(*(c.close() for c in self._clients.values()), return_exceptions=True)


async def worker_main(args: argparse.Namespace, seeds: list[ClientSeed], out: TextIO) -> None:
    """The load process: answer the driver's commands on stdin, one JSON line each, until ``stop`` or EOF."""
    pairs = [(seeds[k], seeds[k + 1]) for k in range(0, len(seeds) - 1, 2)]
    worker = Worker(args.url, pairs[args.index :: args.of], concurrency=args.concurrency, pad=args.pad)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    try:
        while line := await commands.readline():
            command = json.loads(line)
            answer: dict[str, Any]
            if command["cmd"] == "sign_in":
                answer = await worker.sign_in()
            elif command["cmd"] == "steady":
                answer = await worker.steady(
                    command["rate"], command["seconds"], command["start"], command["grace"]
                )
            elif command["cmd"] == "held":
                answer = worker.held()
            else:
                break
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        await worker.close()
        out.write(json.dumps({"stopped": True}) + "\n")
        out.flush()


def run_worker(args: argparse.Namespace) -> None:
    """Entry point of a load process."""
    raise_open_files_limit()
    if not args.load_gc:
        gc.disable()  # a bounded run; cyclic garbage waits for the exit
    seeds = [ClientSeed(**item) for item in json.loads(Path(args.seeds).read_text())]
    out = sys.stdout
    sys.stdout = sys.stderr  # only the answers go to the driver's pipe
    asyncio.run(worker_main(args, seeds, out))


# ---------------------------------------------------------------------------------------------- driver


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


def latency_summary_ms(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9, max and mean of latencies given in seconds, in milliseconds."""
    ordered = sorted(values)
    summary = {f"p{q * 100:g}": percentile(ordered, q) for q in (0.5, 0.9, 0.99, 0.999)}
    summary["max"] = ordered[-1] if ordered else 0.0
    summary["mean"] = sum(ordered) / len(ordered) if ordered else 0.0
    return {name: round(value * 1000, 2) for name, value in summary.items()}


def overlaps(pauses: Sequence[GcPause], begin: float, end: float) -> bool:
    """Whether any pause overlaps the interval [begin, end]."""
    return any(p.start <= end and p.end >= begin for p in pauses)


def machine_facts() -> dict[str, Any]:
    """Cores, CPU model, memory, kernel, Python and library versions."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    somaxconn = "unknown"
    with contextlib.suppress(OSError):
        somaxconn = Path("/proc/sys/net/core/somaxconn").read_text().strip()
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "websockets": importlib.metadata.version("websockets"),
        "somaxconn": somaxconn,
    }


class Output:
    """Human-readable lines: to stdout, or to stderr when stdout carries the JSON object."""

    def __init__(self, json_mode: bool) -> None:
        self._stream = sys.stderr if json_mode else sys.stdout

    def line(self, label: str, text: str) -> None:
        """One line, label first."""
        print(f"{label + ':':<11} {text}", file=self._stream, flush=True)


async def run_benchmark(args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """Seed, start the server and the load processes, run the three phases, stop everything."""
    report: dict[str, Any] = {
        "command": shlex.join(sys.orig_argv),
        "machine": machine_facts(),
        "config": {
            "clients": args.clients,
            "rate": args.rate,
            "seconds": args.seconds,
            "idle_seconds": args.idle,
            "load_processes": args.procs,
            "sign_in_concurrency": args.concurrency,
            "payload_pad_bytes": args.pad,
            "client": CLIENT_IMPL,
            "load_gc": args.load_gc,
            "server_gc_watch": args.server_gc_watch,
        },
    }
    facts = report["machine"]
    out.line("command", report["command"])
    out.line(
        "machine",
        f"{facts['cores']} cores ({facts['cpu_model']}), {facts['memory_gib']} GiB RAM, Linux "
        f"{facts['kernel']}, {facts['python']}, websockets {facts['websockets']}, "
        f"somaxconn {facts['somaxconn']}",
    )
    nofile = raise_open_files_limit()
    cores = sorted(os.sched_getaffinity(0))
    server_cpus: set[int] | None = None
    load_cpus = set(cores)
    if args.pin and len(cores) >= 2:
        server_cpus, load_cpus = {cores[0]}, set(cores[1:])
        os.sched_setaffinity(0, load_cpus)
    placement = (
        f"server pinned to CPU {cores[0]}, load and driver to CPU {','.join(map(str, sorted(load_cpus)))}"
        if server_cpus
        else "not pinned"
    )
    report["config"].update(rlimit_nofile=nofile, placement=placement)
    out.line(
        "setup",
        f"{args.clients} clients ({CLIENT_IMPL}) in {args.procs} load process(es) with GC "
        f"{'on' if args.load_gc else 'off'}; {placement}; RLIMIT_NOFILE {nofile}; "
        f"sign-in {args.concurrency} at a time",
    )

    with tempfile.TemporaryDirectory(prefix="punchline-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        started = time.monotonic()
        seeds = seed_database(data_dir, args.clients)
        seeds_path = Path(tmp) / "seeds.json"
        seeds_path.write_text(json.dumps([asdict(seed) for seed in seeds]))
        report["seed"] = {"users": len(seeds), "seconds": round(time.monotonic() - started, 2)}
        out.line(
            "seed",
            f"{len(seeds)} users with one token each, {len(seeds) // 2} mutual contact pairs, "
            f"in {report['seed']['seconds']:.1f} s",
        )

        gc_log = Path(tmp) / "server-gc.log" if args.server_gc_watch else None
        server = ServerProcess(data_dir, Path(tmp) / "server.log", gc_log, server_cpus)
        report["config"]["server_command"] = shlex.join(server.command)
        workers: list[LoadProcess] = []
        try:
            url = await server.wait_listening(30.0)
            await asyncio.sleep(1.0)
            empty_kib = process_rss_kib(server.pid)
            concurrency = max(1, args.concurrency // args.procs)
            for index in range(args.procs):
                worker_args = [
                    f"--url={url}",
                    f"--seeds={seeds_path}",
                    f"--index={index}",
                    f"--of={args.procs}",
                    f"--concurrency={concurrency}",
                    f"--pad={args.pad}",
                    *(["--load-gc"] if args.load_gc else []),
                ]
                workers.append(await LoadProcess.start(worker_args, load_cpus))
            await _phases(args, out, report, server=server, workers=workers, empty_kib=empty_kib)
        finally:
            for worker in workers:
                await worker.stop()
            status = server.stop()
            levels = Counter(str(line.get("level", "other")) for line in server.log_lines())
            errors = levels["error"] + levels["critical"]
            report["server_log"] = {"exit_status": status, "warnings": levels["warning"], "errors": errors}
            out.line(
                "server log",
                f"{levels['warning']} warnings, {errors} errors; exit status {status} after SIGTERM",
            )
            if errors:
                print(server.log_tail(), file=sys.stderr)
    return report


async def _phases(
    args: argparse.Namespace,
    out: Output,
    report: dict[str, Any],
    *,
    server: ServerProcess,
    workers: list[LoadProcess],
    empty_kib: int,
) -> None:
    # Phase 1: sign in.
    cpu_before = process_cpu_seconds(server.pid)
    load_before = sum(process_cpu_seconds(w.pid) for w in workers)
    started = time.monotonic()
    answers = await asyncio.gather(*(w.call({"cmd": "sign_in"}, 60.0 + args.clients / 20) for w in workers))
    elapsed = time.monotonic() - started
    signed_in = sum(a["signed_in"] for a in answers)
    failed = sum(a["failed"] for a in answers)
    errors: Counter[str] = Counter()
    for answer in answers:
        errors.update(answer["errors"])
    sign_in_gc = gc_summary(server.gc_pauses(started, time.monotonic()), started)
    report["sign_in"] = {
        "signed_in": signed_in,
        "failed": failed,
        "errors": dict(errors),
        "seconds": round(elapsed, 2),
        "clients_per_second": round(signed_in / elapsed, 1),
        "server_cpu_seconds": round(process_cpu_seconds(server.pid) - cpu_before, 2),
        "load_cpu_seconds": round(sum(process_cpu_seconds(w.pid) for w in workers) - load_before, 2),
        "server_gc": sign_in_gc,
    }
    out.line(
        "sign-in",
        f"{signed_in}/{args.clients} signed in with tokens in {elapsed:.1f} s = "
        f"{signed_in / elapsed:.0f} clients/s; CPU: server {report['sign_in']['server_cpu_seconds']:.1f} s, "
        f"load {report['sign_in']['load_cpu_seconds']:.1f} s"
        + (f"; {failed} failed: {dict(errors)}" if failed else ""),
    )
    if args.server_gc_watch:
        out.line("server gc", f"during sign-in: {describe_gc(sign_in_gc)}")

    # Phase 2: idle, then memory.
    await asyncio.sleep(args.idle)
    loaded_kib = process_rss_kib(server.pid)
    delta_kib = loaded_kib - empty_kib
    report["memory"] = {
        "empty_rss_mib": round(empty_kib / 1024, 1),
        "loaded_rss_mib": round(loaded_kib / 1024, 1),
        "delta_mib": round(delta_kib / 1024, 1),
        "kib_per_client": round(delta_kib / max(1, signed_in), 1),
        "server_open_fds": process_open_files(server.pid),
    }
    memory = report["memory"]
    out.line(
        "memory",
        f"server RSS {memory['empty_rss_mib']} MiB empty -> {memory['loaded_rss_mib']} MiB with "
        f"{signed_in} clients idle {args.idle:g} s: +{memory['delta_mib']} MiB = "
        f"{memory['kib_per_client']} KiB per client (server fds {memory['server_open_fds']})",
    )

    # Phase 3: steady signalling.
    cpu_before = process_cpu_seconds(server.pid)
    load_before = sum(process_cpu_seconds(w.pid) for w in workers)
    measured_from = time.monotonic()
    start = measured_from + 0.5
    grace = 5.0
    command = {"cmd": "steady", "rate": args.rate / len(workers), "seconds": args.seconds}
    answers = await asyncio.gather(
        *(w.call({**command, "start": start, "grace": grace}, args.seconds + grace + 60.0) for w in workers)
    )
    measured_to = time.monotonic()
    window = measured_to - measured_from  # 0.5 s lead-in, sending, waiting for the last arrivals
    server_cpu = process_cpu_seconds(server.pid) - cpu_before
    load_cpu = sum(process_cpu_seconds(w.pid) for w in workers) - load_before
    sent = sum(a["sent"] for a in answers)
    accepted = sum(a["accepted"] for a in answers)
    delivered = sum(a["delivered"] for a in answers)
    refused: Counter[str] = Counter()
    for answer in answers:
        refused.update(answer["errors"])
    flights = [(float(sent_at), float(lat)) for a in answers for sent_at, lat in a["latencies"]]
    first, last = min(a["first_send"] for a in answers), max(a["last_send"] for a in answers)
    achieved = (sent - 1) / (last - first) if last > first else 0.0
    per_second: list[dict[str, float]] = []
    for second in range(math.ceil(args.seconds)):
        values = sorted(lat for sent_at, lat in flights if second <= sent_at - start < second + 1)
        if values:
            per_second.append(
                {"second": second, "n": len(values), "p99_ms": round(percentile(values, 0.99) * 1000, 1)}
            )
    forward = latency_summary_ms([lat for _, lat in flights])
    round_trip = latency_summary_ms([rtt for a in answers for rtt in a["round_trips"]])
    server_pauses = server.gc_pauses(measured_from, measured_to)
    load_pauses = [GcPause(*p) for a in answers for p in a["gc"]]
    slow = [(s, lat) for s, lat in flights if lat * 1000 > SLOW_MS]
    big_server = [p for p in server_pauses if p.seconds * 1000 >= 5.0]
    big_load = [p for p in load_pauses if p.seconds * 1000 >= 5.0]
    report["steady"] = {
        "offered_rate": args.rate,
        "achieved_rate": round(achieved, 1),
        "sent": sent,
        "accepted": accepted,
        "delivered": delivered,
        "lost": accepted - delivered,
        "refused": dict(refused),
        "forward_latency_ms": forward,
        "send_to_ok_ms": round_trip,
        "per_second_p99_ms": per_second,
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_percent_of_core": round(100 * server_cpu / window, 1),
        "server_cpu_us_per_message": round(1e6 * server_cpu / max(1, sent), 1),
        "load_cpu_percent_of_core": round(100 * load_cpu / window, 1),
        "measured_seconds": round(window, 2),
        "max_send_schedule_lag_ms": round(max(a["max_lag"] for a in answers) * 1000, 2),
        "server_gc": gc_summary(server_pauses, start),
        "load_gc": gc_summary(load_pauses, start),
        "slow_messages": {
            "threshold_ms": SLOW_MS,
            "count": len(slow),
            "during_server_gc_pause_5ms": sum(1 for s, lat in slow if overlaps(big_server, s, s + lat)),
            "during_load_gc_pause_5ms": sum(1 for s, lat in slow if overlaps(big_load, s, s + lat)),
        },
    }
    steady = report["steady"]
    out.line(
        "steady",
        f"{args.rate:g} msg/s offered for {args.seconds:g} s: {sent} sent, {accepted} accepted, "
        f"{delivered} delivered, {accepted - delivered} lost"
        + (f", refused {dict(refused)}" if refused else "")
        + f"; achieved {achieved:.1f} msg/s",
    )
    out.line(
        "latency",
        f"forward p50 {forward['p50']:.2f} ms, p90 {forward['p90']:.2f}, p99 {forward['p99']:.2f}, "
        f"p99.9 {forward['p99.9']:.2f}, max {forward['max']:.2f}, mean {forward['mean']:.2f}; "
        f"send->ok p50 {round_trip['p50']:.2f} ms, p99 {round_trip['p99']:.2f}, max {round_trip['max']:.2f}",
    )
    out.line("p99/second", " ".join(f"{w['p99_ms']:g}" for w in per_second) + " (ms, by second of sending)")
    out.line(
        "cpu",
        f"server {server_cpu:.2f} s in {window:.1f} s = {steady['server_cpu_percent_of_core']}% of a core "
        f"({steady['server_cpu_us_per_message']:.0f} us per message sent); load "
        f"{steady['load_cpu_percent_of_core']}% of a core; max send-schedule lag "
        f"{steady['max_send_schedule_lag_ms']} ms",
    )
    if args.server_gc_watch:
        out.line("server gc", f"during steady phase: {describe_gc(steady['server_gc'])}")
    if args.load_gc:
        out.line("load gc", f"during steady phase: {describe_gc(steady['load_gc'])}")
    slow_info = steady["slow_messages"]
    out.line(
        "slow",
        f"{slow_info['count']} messages over {SLOW_MS:g} ms; in flight during a server GC pause >= 5 ms: "
        f"{slow_info['during_server_gc_pause_5ms'] if args.server_gc_watch else 'not watched'}"
        + (
            f", during a load GC pause >= 5 ms: {slow_info['during_load_gc_pause_5ms']}"
            if args.load_gc
            else ""
        ),
    )

    answers = await asyncio.gather(*(w.call({"cmd": "held"}, 30.0) for w in workers))
    connected = sum(a["connected"] for a in answers)
    disconnects = sum(a["disconnects"] for a in answers)
    report["held"] = {
        "connected_at_end": connected,
        "disconnects": disconnects,
        "server_open_fds": process_open_files(server.pid),
    }
    out.line(
        "held",
        f"{connected}/{args.clients} clients still connected after the steady phase, "
        f"{disconnects} disconnects seen (server fds {report['held']['server_open_fds']})",
    )
    full_size = args.clients >= TARGET_CLIENTS and args.rate >= TARGET_RATE
    met = full_size and connected >= TARGET_CLIENTS and forward["p99"] <= TARGET_P99_MS
    report["target"] = {
        "clients": TARGET_CLIENTS,
        "rate": TARGET_RATE,
        "p99_ms": TARGET_P99_MS,
        "met": met if full_size else None,
    }
    verdict = "met" if met else "not met" if full_size else "not run at that size"
    out.line(
        "target",
        f"{TARGET_CLIENTS} clients, p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE:g} msg/s: {verdict} "
        "(informational; this script never fails on time)",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--worker`` and its options are for the load processes this script starts)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.load_signalling",
        description="Load benchmark of the rendezvous server: clients held, memory, forward latency.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, help="signed-in clients (default 5000; 500 with --quick)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="signals per second, steady phase")
    parser.add_argument("--seconds", type=float, help="steady phase length (default 20; 5 with --quick)")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before measuring memory")
    parser.add_argument("--procs", type=int, default=1, help="load-generating processes")
    parser.add_argument("--concurrency", type=int, default=100, help="sign-ins in flight at once")
    parser.add_argument("--pad", type=int, default=200, help="filler bytes in each signal payload")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and load")
    parser.add_argument(
        "--load-gc", action="store_true", help="keep the load processes' garbage collector on"
    )
    parser.add_argument(
        "--no-server-gc-watch",
        dest="server_gc_watch",
        action="store_false",
        help="run plain `python -m rendezvous`, without timing its garbage collections",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 clients for 5 s")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 500 if args.quick else TARGET_CLIENTS
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.clients < 2 or args.clients % 2:
        parser.error("--clients must be an even number, at least 2 (clients come in contact pairs)")
    if min(args.rate, args.seconds, args.procs, args.concurrency) <= 0 or args.idle < 0:
        parser.error("--rate, --seconds, --procs and --concurrency must be positive")
    return args


async def _driver(args: argparse.Namespace, out: Output) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # so `finally` still runs
    return await run_benchmark(args, out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one load process); 1 only if it could not run."""
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    out = Output(args.json)
    try:
        report = asyncio.run(_driver(args, out))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
