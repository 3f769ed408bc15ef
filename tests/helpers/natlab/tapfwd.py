"""A userspace link between two namespaces with one-way delay and jitter (this kernel has no netem).

Run as ``python -m tests.helpers.natlab.tapfwd NS_A DEV_A NS_B DEV_B --delay-ms D --jitter-ms J``: it
creates a TAP device ``DEV_A`` in namespace ``NS_A`` and ``DEV_B`` in ``NS_B``, prints ``ready`` and then
copies every Ethernet frame from one to the other after holding it for D ± J ms (uniform), in both
directions. The lab configures addresses on the devices after ``ready``. The TAP devices are not
persistent, so they vanish with this process, and the process dies with its parent (PR_SET_PDEATHSIG), so
a crashed test leaves neither behind.

Jitter never reorders: a frame is not released before the one read ahead of it in the same direction
(like a real queue; netem would reorder). Writes to a device that is down (`Lab.link_down`) fail with
EIO and the frame is dropped, as on a cut cable.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time
from collections import deque

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(namespace: str) -> None:
    """Move this (single-threaded) process into network namespace ``namespace`` (an `ip netns` name)."""
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {namespace}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _open_tap(name: str) -> int:
    """Create TAP device ``name`` in the current network namespace; return its non-blocking fd."""
    # The device is created in the namespace of the process at open() time, so setns comes first.
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    return fd


class _Direction:
    """Frames read from ``src`` waiting for their release time before being written to ``dst``."""

    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self.dst = dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.last_due = 0.0


def forward(a: int, b: int, delay: float, jitter: float, rng: random.Random) -> None:
    """Copy frames a→b and b→a, each held for ``delay`` ± ``jitter`` seconds, until killed."""
    directions = {a: _Direction(a, b), b: _Direction(b, a)}
    while True:
        now = time.monotonic()
        timeout: float | None = None
        for d in directions.values():
            while d.queue and d.queue[0][0] <= now:
                _, frame = d.queue.popleft()
                try:
                    os.write(d.dst, frame)
                except OSError as exc:
                    # EIO: the device is down (link_down); EAGAIN: its queue is full. Either way: lost.
                    if exc.errno not in (errno.EIO, errno.EAGAIN, errno.EINVAL):
                        raise
            if d.queue:
                wait = d.queue[0][0] - now
                timeout = wait if timeout is None else min(timeout, wait)
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            d = directions[fd]
            for _ in range(64):  # drain a burst, but let the other direction have a turn
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EIO:  # our own device went down: nothing to read
                        break
                    raise
                due = now + delay + (rng.uniform(-jitter, jitter) if jitter else 0.0)
                due = max(due, d.last_due)
                d.last_due = due
                d.queue.append((due, frame))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build both TAP devices, say ``ready``, forward until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ns_a")
    parser.add_argument("dev_a")
    parser.add_argument("ns_b")
    parser.add_argument("dev_b")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(1)
    _setns(args.ns_a)
    fd_a = _open_tap(args.dev_a)
    _setns(args.ns_b)
    fd_b = _open_tap(args.dev_b)
    print("ready", flush=True)
    forward(fd_a, fd_b, args.delay_ms / 1000, args.jitter_ms / 1000, random.Random(args.seed))


if __name__ == "__main__":
    main()
