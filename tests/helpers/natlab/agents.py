"""Small network programs the lab runs inside its hosts:
``python -m tests.helpers.natlab.agents NAME 'JSON-ARGS'``.

Each prints JSON lines on stdout. Servers print ``{"ready": ...}`` once listening and run until killed;
one-shot agents print one result line and exit. Run them with `Lab.agent` / `Lab.spawn_agent`.

UDP echo protocol (``udp_echo``): every datagram is sent back unchanged, except ``b"count?"``, answered
with the JSON count of datagrams received so far (``{"count": N}``, itself not counted), and
``b"later:<seconds>:<payload>"``, echoed after that many seconds (to outlive a NAT mapping).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

Args = dict[str, Any]


def emit(value: object) -> None:
    """Print one JSON line."""
    print(json.dumps(value), flush=True)


# --- servers --------------------------------------------------------------------------------------------


async def stun_server(args: Args) -> None:
    """Our STUN binding server on ``host`` at every port of ``ports``."""
    from rendezvous.stun_server import start_stun_server

    servers = [await start_stun_server(args["host"], port) for port in args["ports"]]
    emit({"ready": [list(s.address) for s in servers]})
    await asyncio.Event().wait()


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if data == b"count?":
            self.transport.sendto(json.dumps({"count": self.count}).encode(), addr)
            return
        self.count += 1
        if data.startswith(b"later:"):
            _, seconds, _ = data.split(b":", 2)
            transport = self.transport
            asyncio.get_running_loop().call_later(float(seconds), transport.sendto, data, addr)
            return
        self.transport.sendto(data, addr)


async def udp_echo(args: Args) -> None:
    """A UDP echo server on ``host``:``port`` (see the module docstring)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(args["host"], args["port"]))
    emit({"ready": list(transport.get_extra_info("sockname"))})
    await asyncio.Event().wait()


async def tcp_echo(args: Args) -> None:
    """A TCP echo server on ``host``:``port``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, args["host"], args["port"])
    emit({"ready": list(server.sockets[0].getsockname())})
    await asyncio.Event().wait()


# --- one-shot clients -----------------------------------------------------------------------------------


async def stun_discover(args: Args) -> None:
    """Ask each of ``servers`` from ``local_port`` (``wait`` s at most each): our public addresses."""
    from app.nat.stun_client import BindingConfig, StunClientError, discover_public_address

    config = BindingConfig(initial_rto=0.1, max_requests=4, final_wait_factor=4)
    results: list[object] = []
    for host, port in args["servers"]:
        try:
            found = await discover_public_address(
                (host, port),
                local_addr=("0.0.0.0", args.get("local_port", 0)),
                timeout=args.get("wait", 2),
                config=config,
            )
        except StunClientError as exc:
            results.append({"error": str(exc)})
        else:
            results.append({"public": list(found.public), "local": list(found.local), "rtt": found.rtt})
    emit(results)


def _udp_socket(local_port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", local_port))
    return sock


async def udp_probe(args: Args) -> None:
    """Send ``count`` datagrams to a `udp_echo` at ``target`` every ``interval`` s; report echoes and RTTs.

    Also asks the echo server how many it received (one-way loss), unless ``ask_count`` is false.
    """
    loop = asyncio.get_running_loop()
    target = (args["target"][0], args["target"][1])
    count, interval = args.get("count", 10), args.get("interval", 0.01)
    sock = _udp_socket(args.get("local_port", 0))
    sock.setblocking(False)
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    server_count: int | None = None

    async def receive() -> None:
        nonlocal server_count
        while True:
            data = await loop.sock_recv(sock, 65536)
            now = time.monotonic()
            if data.startswith(b"{"):
                server_count = json.loads(data)["count"]
            elif data.startswith(b"seq:"):
                seq = int(data[4:].split(b":")[0])
                rtts.setdefault(seq, now - sent_at[seq])

    receiver = asyncio.create_task(receive())
    for seq in range(count):
        sent_at[seq] = time.monotonic()
        await loop.sock_sendto(sock, f"seq:{seq}:".encode() + b"x" * args.get("size", 32), target)
        await asyncio.sleep(interval)
    await asyncio.sleep(args.get("linger", 0.3))  # late echoes
    if args.get("ask_count", True):
        for _ in range(20):  # the question itself can be lost on a lossy link
            await loop.sock_sendto(sock, b"count?", target)
            await asyncio.sleep(0.05)
            if server_count is not None:
                break
    receiver.cancel()
    sock.close()
    ordered = sorted(rtts.values())
    emit(
        {
            "sent": count,
            "echoed": len(rtts),
            "server_count": server_count,
            "rtt_ms": [round(r * 1000, 3) for r in ordered],
            "median_ms": round(ordered[len(ordered) // 2] * 1000, 3) if ordered else None,
        }
    )


async def tcp_connect(args: Args) -> None:
    """Open TCP to ``target``, send a line, read it back: ``{"ok": true}`` or the error."""
    try:
        async with asyncio.timeout(args.get("timeout", 2)):
            reader, writer = await asyncio.open_connection(args["target"][0], args["target"][1])
            writer.write(b"hello\n")
            echoed = await reader.readline()
            writer.close()
    except (OSError, TimeoutError) as exc:
        emit({"ok": False, "error": repr(exc)})
        return
    emit({"ok": echoed == b"hello\n"})


async def punch(args: Args) -> None:
    """Plain UDP hole punching from ``local_port``: learn our public address, swap, send, see what arrives.

    Prints ``{"public": [ip, port]}`` (from the STUN server ``stun``), reads the peer's ``[ip, port]`` as a
    JSON line on stdin, then sends ``b"punch"`` to it every 20 ms for ``duration`` s, answering each punch
    with ``b"ack"``. Prints ``{"received": bool, "acked": bool, "from": ...}``; with ``pings`` > 0 and a
    working path it first measures that many round trips (``rtt_ms``), the other side answering them.
    """
    from app.nat.stun_client import BindingSucceeded, BindingTransaction

    loop = asyncio.get_running_loop()
    sock = _udp_socket(args["local_port"])
    sock.setblocking(False)
    # One Binding transaction on the punching socket itself: its mapping is the one the peer must hit.
    transaction = BindingTransaction((args["stun"][0], args["stun"][1]), loop.time())
    async with asyncio.timeout(3):
        while not transaction.done:
            for data, addr in transaction.datagrams_to_send(loop.time()):
                await loop.sock_sendto(sock, data, addr)
            try:
                async with asyncio.timeout(0.1):
                    data, addr = await loop.sock_recvfrom(sock, 2048)
                transaction.receive_datagram(data, addr, loop.time())
            except TimeoutError:
                transaction.handle_timer(loop.time())
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded), event
    emit({"public": list(event.mapped)})
    line = await loop.run_in_executor(None, sys.stdin.readline)
    peer = tuple(json.loads(line))
    received = acked = False
    source: list[Any] | None = None
    rtts: list[float] = []
    pings_left = args.get("pings", 0)
    ping_sent = 0.0
    # Round trips need time after the punch: under a loaded test run the peer's process may start late.
    deadline = loop.time() + args.get("duration", 3.0 if pings_left else 1.5)
    next_send = 0.0
    while loop.time() < deadline:
        now = loop.time()
        if now >= next_send:
            if not acked:
                await loop.sock_sendto(sock, b"punch", peer)
            elif pings_left and (not ping_sent or now - ping_sent > 0.25):  # a ping or pong may be lost
                ping_sent = now
                await loop.sock_sendto(sock, b"ping", peer)
            next_send = now + 0.02
        try:
            async with asyncio.timeout(0.005):
                data, addr = await loop.sock_recvfrom(sock, 2048)
        except TimeoutError:
            continue
        if data == b"punch":
            received, source = True, list(addr)
            await loop.sock_sendto(sock, b"ack", addr)
        elif data == b"ack":
            acked = True
        elif data == b"ping":
            await loop.sock_sendto(sock, b"pong", addr)
        elif data == b"pong" and ping_sent:
            rtts.append(round((loop.time() - ping_sent) * 1000, 3))
            ping_sent = 0.0
            pings_left -= 1
            next_send = 0.0
        if acked and received and not pings_left:
            # Done, but keep answering the peer (its punches, acks, pings) until it has been quiet a while.
            deadline = min(loop.time() + args.get("duration", 1.5), loop.time() + 0.3)
    sock.close()
    emit({"received": received, "acked": acked, "from": source, "rtt_ms": rtts})


AGENTS: dict[str, Callable[[Args], Coroutine[Any, Any, None]]] = {
    "stun_server": stun_server,
    "udp_echo": udp_echo,
    "tcp_echo": tcp_echo,
    "stun_discover": stun_discover,
    "udp_probe": udp_probe,
    "tcp_connect": tcp_connect,
    "punch": punch,
}


def main() -> None:
    """``python -m tests.helpers.natlab.agents NAME 'JSON'``."""
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    asyncio.run(AGENTS[name](json.loads(raw)))


if __name__ == "__main__":
    main()
