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

from app.nat.stun_client import discover_public_address
from rendezvous.stun_server import StunServer, start_stun_server
from tests.helpers.coturn import run_coturn
from tests.helpers.udp import open_udp_peer

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


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A real coturn ``turnserver`` in STUN-only mode on 127.0.0.1, killed after the test."""
    async with run_coturn(tmp_path, stun_only=True) as server:
        yield server.address


async def test_our_client_against_coturn(coturn: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()
    found = await discover_public_address(coturn, local_addr=local, timeout=3.0)
    assert found.public == local
    assert found.local == local
    assert found.server == coturn
