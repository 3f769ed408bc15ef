"""The default alternate STUN port taken by another program (a coturn on 3479): the server starts without
behaviour discovery and says so; an alternate port the operator chose and cannot have stops the start."""

from __future__ import annotations

import socket

import pytest

from rendezvous.config import ServerConfig
from rendezvous.server import RendezvousServer, StartupError


async def test_a_taken_default_alternate_port_only_turns_discovery_off() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        config = ServerConfig(
            host="127.0.0.1", port=0, stun_port=0, stun_alt_port=taken, stun_alt_port_is_default=True
        )
        async with await RendezvousServer.start(config) as server:
            assert server.discovery is None
            assert server.stun_port is not None
        chosen = ServerConfig(host="127.0.0.1", port=0, stun_port=0, stun_alt_port=taken)
        with pytest.raises(StartupError, match="alternate STUN port"):
            await RendezvousServer.start(chosen)
