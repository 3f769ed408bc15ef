"""Interop: third-party STUN clients against our server, and our client against coturn's server."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aioice import stun as aioice_stun

from app.stun_client import StunClientError, discover_public_address
from rendezvous.stun_server import StunServer, start_stun_server
from tests.test_stun_server import open_udp_peer

TURNSERVER = shutil.which("turnserver")
STUNCLIENT = shutil.which("turnutils_stunclient")
TIMEOUT = shutil.which("timeout")


@pytest.fixture
async def stun_server() -> AsyncIterator[StunServer]:
    """Our STUN server on an ephemeral port of 127.0.0.1."""
    server = await start_stun_server("127.0.0.1", 0)
    yield server
    server.close()


class AioiceStunClient(asyncio.DatagramProtocol):
    """aioice's STUN transactions on a UDP socket: aioice builds, retransmits and parses; we carry bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, aioice_stun.Transaction] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = aioice_stun.parse_message(data)  # raises ValueError on a bad FINGERPRINT
        transaction = self.transactions.get(message.transaction_id)
        if transaction is not None:
            transaction.response_received(message, (addr[0], addr[1]))

    def send_stun(self, message: aioice_stun.Message, addr: tuple[str, int]) -> None:
        """aioice's TransactionSender interface."""
        assert self.transport is not None
        self.transport.sendto(bytes(message), addr)

    async def binding(self, server: tuple[str, int]) -> aioice_stun.Message:
        """Run one Binding transaction with aioice's retransmission logic; return the response."""
        request = aioice_stun.Message(
            message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST
        )
        transaction = aioice_stun.Transaction(request, server, self)
        self.transactions[request.transaction_id] = transaction
        response, _ = await transaction.run()
        return response


async def test_aioice_gets_its_mapped_address_from_our_server(stun_server: StunServer) -> None:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(AioiceStunClient, local_addr=("127.0.0.1", 0))
    try:
        async with asyncio.timeout(5):
            response = await client.binding(stun_server.address)
        local = transport.get_extra_info("sockname")
        assert response.message_class == aioice_stun.Class.RESPONSE
        assert response.attributes["XOR-MAPPED-ADDRESS"] == (local[0], local[1])
        assert "FINGERPRINT" in response.attributes  # parsed and verified by aioice
        assert "SOFTWARE" not in response.attributes
    finally:
        transport.close()


async def test_aioice_indication_and_other_methods_get_no_answer(stun_server: StunServer) -> None:
    """aioice-built messages our server must not answer: a Binding indication and an Allocate request."""
    peer = await open_udp_peer()
    try:
        for method, message_class in [
            (aioice_stun.Method.BINDING, aioice_stun.Class.INDICATION),
            (aioice_stun.Method.ALLOCATE, aioice_stun.Class.REQUEST),
        ]:
            message = aioice_stun.Message(message_method=method, message_class=message_class)
            message.add_fingerprint()
            peer.send(bytes(message), stun_server.address)
        control = aioice_stun.Message(
            message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST
        )
        peer.send(bytes(control), stun_server.address)
        reply, _ = await peer.next()
        assert aioice_stun.parse_message(reply).transaction_id == control.transaction_id
        assert (stun_server.answered, stun_server.dropped) == (1, 2)
    finally:
        peer.close()


@pytest.mark.skipif(
    STUNCLIENT is None or TIMEOUT is None,
    reason="coturn's turnutils_stunclient (Debian: coturn) is not installed",
)
async def test_coturn_stunclient_against_our_server(stun_server: StunServer) -> None:
    assert STUNCLIENT is not None
    assert TIMEOUT is not None
    # It blocks forever without an answer (NOTES.md), so it runs under `timeout`; its exit code is unreliable.
    process = await asyncio.create_subprocess_exec(
        TIMEOUT,
        "5",
        STUNCLIENT,
        "-p",
        str(stun_server.address[1]),
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    match = re.search(r"UDP reflexive addr: ([0-9.]+):(\d+)", text)
    assert match, f"no reflexive address in turnutils_stunclient's output:\n{text}"
    assert match.group(1) == "127.0.0.1"
    assert 0 < int(match.group(2)) < 65536  # the tool's own ephemeral port
    assert stun_server.answered >= 1


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A real coturn ``turnserver`` in STUN-only mode on 127.0.0.1, killed after the test."""
    if TURNSERVER is None:
        pytest.skip("coturn's turnserver (Debian: coturn) is not installed")
    port = free_udp_port()
    log_file = tmp_path / "turnserver.log"
    process = await asyncio.create_subprocess_exec(
        TURNSERVER,
        "-n",  # no config file (/etc/turnserver.conf)
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--stun-only",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        str(port),
        "--relay-ip",
        "127.0.0.1",
        "--min-port",
        "49152",
        "--max-port",
        "65535",
        "--pidfile",
        str(tmp_path / "turnserver.pid"),
        "--db",
        str(tmp_path / "turndb"),
        "--log-file",
        str(log_file),
        "--simple-log",
        "--no-stdout-log",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            if process.returncode is not None:
                pytest.fail(f"turnserver exited with {process.returncode}: {_tail(log_file)}")
            try:
                await discover_public_address(("127.0.0.1", port), timeout=0.2)
                break
            except StunClientError:
                if loop.time() > deadline:
                    pytest.fail(f"turnserver did not answer on port {port} within 10 s: {_tail(log_file)}")
        yield ("127.0.0.1", port)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


async def test_our_client_against_coturn(coturn: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()
    found = await discover_public_address(coturn, local_addr=local, timeout=3.0)
    assert found.public == local
    assert found.local == local
    assert found.server == coturn
