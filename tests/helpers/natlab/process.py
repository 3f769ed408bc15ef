"""Running programs inside a lab namespace (`ip netns exec`), with output captured and a sure death."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import signal
import sys
from pathlib import Path

from tests.helpers.paths import REPO_ROOT

_PR_SET_PDEATHSIG = 1


def venv_python() -> str:
    """The repo's virtualenv interpreter (the one running the tests when that is missing)."""
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process dies (a crash, kill -9), so does this.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LabProcess:
    """A process in a lab host: stdout is a pipe of (JSON) lines, stderr goes to a file for post-mortems."""

    def __init__(self, proc: asyncio.subprocess.Process, label: str, stderr_path: Path) -> None:
        self.proc = proc
        self.label = label
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        """The process id (of the program itself: `ip netns exec` execs it)."""
        return self.proc.pid

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def read_line(self, timeout: float = 10) -> str:
        """The next line of stdout; raise with the stderr shown if the process ends or stays silent."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            message = f"{self.label}: no output in {timeout} s; stderr:\n{self.stderr_text()}"
            raise TimeoutError(message) from None
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"{self.label}: exited ({code}) without output; stderr:\n{self.stderr_text()}")
        return line.decode().rstrip("\n")

    async def read_json(self, timeout: float = 10) -> object:
        """The next stdout line, parsed as JSON."""
        line = await self.read_line(timeout)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise RuntimeError(f"{self.label}: not JSON: {line!r}; stderr:\n{self.stderr_text()}") from None

    async def send_json(self, value: object) -> None:
        """Write one JSON line to the process's stdin."""
        assert self.proc.stdin is not None, "started with stdin=False"
        self.proc.stdin.write(json.dumps(value).encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait(self, timeout: float = 10) -> int:
        """Wait for the process to exit; return its exit status."""
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the program alone (it quits the way a person stops it)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                # ``ip netns exec`` execs the program: the child's pid is the program's.
                os.kill(self.proc.pid, signal.SIGINT)

    def kill_nowait(self) -> None:
        """SIGKILL the process group (the program and anything it started), without waiting."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def kill(self) -> None:
        """SIGKILL the process group and reap it."""
        self.kill_nowait()
        with contextlib.suppress(ProcessLookupError):
            await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


_counter = itertools.count()


def _stderr_path(work_dir: Path, label: str) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir / f"{label}-{next(_counter)}.stderr"


async def spawn(ns: str, argv: list[str], work_dir: Path, *, label: str, stdin: bool = True) -> LabProcess:
    """Start ``argv`` in namespace ``ns`` (``"python"`` as argv[0] means the repo's venv interpreter)."""
    if argv and argv[0] == "python":
        argv = [venv_python(), *argv[1:]]
    stderr_path = _stderr_path(work_dir, label)
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            ns,
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=REPO_ROOT,
            env=_environment(),
            start_new_session=True,  # its own process group, so teardown kills its children too
            preexec_fn=_die_with_parent,  # only ctypes.prctl: no locks taken
        )
    return LabProcess(proc, label, stderr_path)


async def run_json(ns: str, argv: list[str], work_dir: Path, timeout: float) -> object:
    """Run ``argv`` in ``ns`` to completion; return the JSON of the last stdout line (raise on failure)."""
    proc = await spawn(ns, argv, work_dir, label="run", stdin=False)
    try:
        assert proc.proc.stdout is not None
        async with asyncio.timeout(timeout):
            out = await proc.proc.stdout.read()
            code = await proc.proc.wait()
    except TimeoutError:
        message = f"{argv} in {ns}: still running after {timeout} s; stderr:\n{proc.stderr_text()}"
        raise TimeoutError(message) from None
    finally:
        await proc.kill()
    lines = out.decode().strip().splitlines()
    if code != 0 or not lines:
        raise RuntimeError(f"{argv} in {ns} exited {code}; stdout: {out!r}; stderr:\n{proc.stderr_text()}")
    return json.loads(lines[-1])
