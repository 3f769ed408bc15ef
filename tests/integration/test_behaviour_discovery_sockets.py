"""RFC 5780 behaviour discovery over real sockets: the server on 127.0.0.1 with 127.0.0.2 as its second
address answers from the socket each request asks for, and coturn's ``turnutils_natdiscovery`` classifies
against it. The answers themselves, sans-IO: tests/unit/test_behaviour_discovery.py."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

from rendezvous.config import ServerConfig
from rendezvous.server import RendezvousServer
from rendezvous.wire.stun import ChangeRequest, OtherAddress, ResponseOrigin, decode
from tests.helpers.stun import binding_request


@pytest.fixture
async def discovery_server() -> AsyncIterator[RendezvousServer]:
    config = ServerConfig(host="127.0.0.1", port=0, stun_port=0, stun_alt_port=0, stun_alt_ip="127.0.0.2")
    async with await RendezvousServer.start(config) as server:
        yield server


async def test_answers_leave_from_the_socket_the_request_asked_for(
    discovery_server: RendezvousServer,
) -> None:
    discovery = discovery_server.discovery
    assert discovery is not None
    sockets = discovery.sockets
    assert sockets.ips == ("127.0.0.1", "127.0.0.2")
    stun = ("127.0.0.1", discovery_server.stun_port or 0)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        for change, origin in [
            (ChangeRequest(False, False), sockets.address((0, 0))),
            (ChangeRequest(False, True), sockets.address((0, 1))),
            (ChangeRequest(True, False), sockets.address((1, 0))),
            (ChangeRequest(True, True), sockets.address((1, 1))),
        ]:
            client.sendto(
                binding_request(change, fingerprint=True), stun
            )  # through the TURN relay's socket: Binding goes to discovery
            async with asyncio.timeout(2):
                data, sender = await loop.sock_recvfrom(client, 2048)
            assert sender == origin
            assert decode(data).find(ResponseOrigin) == ResponseOrigin(origin)
        # The alternate sockets answer too, and name the one across as OTHER-ADDRESS.
        client.sendto(binding_request(fingerprint=True), sockets.address((1, 1)))
        async with asyncio.timeout(2):
            data, sender = await loop.sock_recvfrom(client, 2048)
        assert sender == sockets.address((1, 1))
        assert decode(data).find(OtherAddress) == OtherAddress(sockets.address((0, 0)))


NATDISCOVERY = shutil.which("turnutils_natdiscovery")


@pytest.mark.skipif(NATDISCOVERY is None, reason="coturn's turnutils_natdiscovery is not installed")
async def test_coturns_natdiscovery_classifies_against_our_server(discovery_server: RendezvousServer) -> None:
    """On loopback there is no NAT: coturn's client must find endpoint-independent mapping and filtering."""
    assert NATDISCOVERY is not None
    tool = await asyncio.create_subprocess_exec(
        "timeout",
        "20",
        NATDISCOVERY,
        "-m",
        "-f",
        "-p",
        str(discovery_server.stun_port),
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await tool.communicate())[0].decode(errors="replace")
    assert "RFC 5780 response" in output, output
    assert "NAT with Endpoint Independent Mapping!" in output, output
    assert "NAT with Endpoint Independent Filtering!" in output, output
