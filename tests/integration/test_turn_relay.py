"""The TURN relay over real UDP on 127.0.0.1: client socket ↔ our relay ↔ peer socket."""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rendezvous.config import TurnQuotas
from rendezvous.server import RendezvousServer
from rendezvous.turn_relay import TurnRelay, start_turn_relay
from rendezvous.wire.stun import (
    ChannelNumber,
    Data,
    Lifetime,
    StunClass,
    StunMessage,
    StunMethod,
    XorMappedAddress,
    XorPeerAddress,
    decode,
)
from rendezvous.wire.turn import ChannelData, decode_channel_data
from tests.helpers.server import server_config
from tests.helpers.turn import SECRET, TurnClientState, allocate, error_code, request, turn_config
from tests.helpers.udp import open_udp_peer


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_data_both_ways_through_send_data_indications_and_channels(relay: TurnRelay) -> None:
    client, peer = await open_udp_peer(), await open_udp_peer()
    try:
        state = TurnClientState.for_user("alice", time.time())
        relayed = await allocate(client, state, relay.address)
        assert relayed[0] == "127.0.0.1"
        assert 40000 <= relayed[1] <= 48999
        assert not port_is_free(relayed[1])
        assert (
            error_code(
                await request(
                    client, state, relay.address, StunMethod.CREATE_PERMISSION, XorPeerAddress(peer.address)
                )
            )
            is None
        )

        send = StunMessage(
            StunMethod.SEND,
            StunClass.INDICATION,
            attributes=(XorPeerAddress(peer.address), Data(b"hello peer")),
        )
        client.send(send.encode(), relay.address)
        assert await peer.next() == (b"hello peer", relayed)

        peer.send(b"hello client", relayed)
        data, source = await client.next()
        assert source == relay.address
        indication = decode(data)
        assert indication.method == StunMethod.DATA
        assert indication.find(Data) == Data(b"hello client")
        assert indication.find(XorPeerAddress) == XorPeerAddress(peer.address)

        bind = await request(
            client,
            state,
            relay.address,
            StunMethod.CHANNEL_BIND,
            ChannelNumber(0x4000),
            XorPeerAddress(peer.address),
        )
        assert error_code(bind) is None
        for i in range(20):
            client.send(ChannelData(0x4000, b"c%d" % i).encode(), relay.address)
        assert [(await peer.next())[0] for _ in range(20)] == [b"c%d" % i for i in range(20)]
        peer.send(b"over the channel", relayed)
        data, _ = await client.next()
        assert decode_channel_data(data) == ChannelData(0x4000, b"over the channel")

        other = await open_udp_peer()
        try:  # permissions are per IP (RFC 8656 §9): another port of 127.0.0.1 gets in, as a Data indication
            other.send(b"same ip", relayed)
            data, _ = await client.next()
            assert decode(data).find(XorPeerAddress) == XorPeerAddress(other.address)
        finally:
            other.close()

        deleted = await request(client, state, relay.address, StunMethod.REFRESH, Lifetime(0))
        assert error_code(deleted) is None
        await asyncio.sleep(0)
        assert relay.machine.allocation_count == 0
        assert port_is_free(relayed[1])
    finally:
        client.close()
        peer.close()


async def test_two_clients_relay_to_each_other_through_the_same_server(relay: TurnRelay) -> None:
    """Both ends behind symmetric NATs use our relay: relay port to relay port, on one server."""
    a, b = await open_udp_peer(), await open_udp_peer()
    try:
        sa, sb = TurnClientState.for_user("alice", time.time()), TurnClientState.for_user("bob", time.time())
        ra, rb = await allocate(a, sa, relay.address), await allocate(b, sb, relay.address)
        await request(
            a, sa, relay.address, StunMethod.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(rb)
        )
        await request(
            b, sb, relay.address, StunMethod.CHANNEL_BIND, ChannelNumber(0x4002), XorPeerAddress(ra)
        )
        a.send(ChannelData(0x4001, b"from a").encode(), relay.address)
        data, _ = await b.next()
        assert decode_channel_data(data) == ChannelData(0x4002, b"from a")
        b.send(ChannelData(0x4002, b"from b").encode(), relay.address)
        data, _ = await a.next()
        assert decode_channel_data(data) == ChannelData(0x4001, b"from b")
    finally:
        a.close()
        b.close()


async def test_allocation_expires_on_the_timer() -> None:
    config = turn_config(
        min_port=40000, max_port=48999, quotas=TurnQuotas(default_lifetime=1, max_lifetime=1)
    )
    relay = await start_turn_relay(config, host="127.0.0.1", port=0, secret=SECRET)
    client = await open_udp_peer()
    try:
        relayed = await allocate(client, TurnClientState.for_user("alice", time.time()), relay.address)
        assert relay.machine.allocation_count == 1
        await asyncio.sleep(1.3)
        assert relay.machine.allocation_count == 0
        assert port_is_free(relayed[1])
    finally:
        client.close()
        relay.close()


async def test_rendezvous_server_runs_turn_on_the_stun_port_and_keeps_its_secret(tmp_path: Path) -> None:
    config = server_config(tmp_path / "server")
    config = replace(config, turn=replace(config.turn, min_port=40000, max_port=48999))
    async with await RendezvousServer.start(config) as server:
        assert server.turn is not None
        assert server.stun is None
        port = server.stun_port
        assert port is not None
        client = await open_udp_peer()
        try:
            client.send(StunMessage(StunMethod.BINDING, StunClass.REQUEST).encode(), ("127.0.0.1", port))
            data, _ = await client.next()
            assert decode(data).find(XorMappedAddress) == XorMappedAddress(client.address)
        finally:
            client.close()
    secret_file = tmp_path / "server" / "turn_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    async with await RendezvousServer.start(config):
        assert secret_file.read_text().strip() == secret  # a restart keeps issued credentials valid


async def test_no_turn_runs_the_plain_stun_server(tmp_path: Path) -> None:
    config = server_config(tmp_path / "server")
    config = replace(config, turn=replace(config.turn, enabled=False))
    async with await RendezvousServer.start(config) as server:
        assert server.turn is None
        assert server.stun is not None
    assert not (tmp_path / "server" / "turn_secret").exists()


def test_command_line_turn_options() -> None:
    from rendezvous.__main__ import parse_args

    args = parse_args(
        [
            "--relay-ports",
            "40000-40010",
            "--turn-server",
            "turn:coturn.example:3478",
            "--relay-ip",
            "10.0.0.2",
        ]
    )
    assert args.relay_ports == (40000, 40010)
    assert args.turn_server == ["turn:coturn.example:3478"]
    assert (args.relay_ip, args.no_turn) == ("10.0.0.2", False)
    assert parse_args(["--no-turn"]).no_turn
    for bad in (["--relay-ports", "5-4"], ["--relay-ports", "abc"], ["--turn-server", "http://x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
