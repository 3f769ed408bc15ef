"""TURN over TCP (RFC 8656 §3.1) against our relay on 127.0.0.1: a TCP client, a UDP peer, real sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from rendezvous.config import TurnQuotas
from rendezvous.turn_relay import TurnRelay, start_turn_relay
from rendezvous.wire.stun import (
    Address,
    Attribute,
    ChannelNumber,
    Data,
    MessageIntegrity,
    StunClass,
    StunMessage,
    StunMethod,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    decode,
)
from rendezvous.wire.turn import ChannelData, StreamFramer, decode_channel_data, stream_frame
from tests.helpers.poll import until
from tests.helpers.turn import SECRET, UDP, TurnClientState, allocate, error_code, turn_config
from tests.helpers.udp import open_udp_peer


class TcpClient:
    """A TURN client's TCP connection: frames out padded, frames in cut by `StreamFramer`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.frames: list[bytes] = []

    @property
    def address(self) -> Address:
        name = self.writer.get_extra_info("sockname")
        return (str(name[0]), int(name[1]))

    def send(self, message: bytes) -> None:
        self.writer.write(stream_frame(message))

    async def next(self, timeout: float = 2.0) -> bytes:
        """The next frame; EOFError when the relay closed the connection."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the relay closed the connection")
                self.frames += self.framer.feed(data)
        return self.frames.pop(0)

    async def request(self, state: TurnClientState, method: int, *attrs: Attribute) -> StunMessage:
        """One request with the 401/438 dance."""
        for _ in range(2):
            self.send(state.build(method, *attrs))
            answer = state.learn(await self.next())
            if error_code(answer) not in (401, 438) or answer.find(MessageIntegrity) is not None:
                return answer
        return answer

    async def allocate(self, state: TurnClientState) -> Address:
        answer = await self.request(state, StunMethod.ALLOCATE, UDP)
        assert error_code(answer) is None, answer
        assert answer.find(XorMappedAddress) == XorMappedAddress(self.address)
        relayed = answer.find(XorRelayedAddress)
        assert relayed is not None
        return relayed.address

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def tcp_client(relay: TurnRelay, local_port: int = 0) -> AsyncIterator[TcpClient]:
    reader, writer = await asyncio.open_connection(*relay.address, local_addr=("127.0.0.1", local_port))
    client = TcpClient(reader, writer)
    try:
        yield client
    finally:
        client.close()


async def test_data_both_ways_over_tcp_while_the_peer_talks_udp(relay: TurnRelay) -> None:
    peer = await open_udp_peer()
    try:
        async with tcp_client(relay) as client:
            state = TurnClientState.for_user("alice", time.time())
            relayed = await client.allocate(state)
            # Send/Data indications first: they install nothing, so ask for a permission by ChannelBind.
            bound = await client.request(
                state, StunMethod.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(peer.address)
            )
            assert error_code(bound) is None, bound
            for size in (1, 2, 3, 4, 1200):  # every padding length on the stream
                client.send(ChannelData(0x4001, bytes([size % 256]) * size).encode())
                data, source = await peer.next()
                assert (data, source) == (bytes([size % 256]) * size, relayed)
                peer.send(b"back" * size, relayed)
                frame = await client.next()
                assert len(frame) % 4 == 0
                assert decode_channel_data(frame) == ChannelData(0x4001, b"back" * size)
            client.send(
                state.build(
                    StunMethod.SEND,
                    XorPeerAddress(peer.address),
                    Data(b"indication"),
                    klass=StunClass.INDICATION,
                )
            )
            assert (await peer.next())[0] == b"indication"
    finally:
        peer.close()


async def test_closing_the_connection_ends_its_allocation(relay: TurnRelay) -> None:
    async with tcp_client(relay) as client:
        await client.allocate(TurnClientState.for_user("alice", time.time()))
        assert relay.machine.allocation_count == 1
    await until(lambda: relay.machine.allocation_count == 0 and relay.tcp_clients == 0, 2)


async def test_a_udp_and_a_tcp_client_on_the_same_ip_and_port_are_two_clients(relay: TurnRelay) -> None:
    """The transport is part of the 5-tuple (RFC 8656 §2): a port-preserving NAT can produce this."""
    udp = await open_udp_peer()
    try:
        async with tcp_client(relay, local_port=udp.address[1]) as tcp:
            assert tcp.address == udp.address
            over_udp = await allocate(udp, TurnClientState.for_user("alice", time.time()), relay.address)
            over_tcp = await tcp.allocate(TurnClientState.for_user("bob", time.time()))
            assert over_udp != over_tcp
            assert relay.machine.allocation_count == 2
        await until(lambda: relay.machine.allocation_count == 1, 2)
    finally:
        udp.close()


async def test_garbage_on_the_stream_closes_that_connection_only(relay: TurnRelay) -> None:
    async with tcp_client(relay) as good, tcp_client(relay) as bad:
        await good.allocate(TurnClientState.for_user("alice", time.time()))
        bad.writer.write(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
        )  # a TLS ClientHello on the plain port
        with pytest.raises((EOFError, ConnectionError)):
            await bad.next()
        refresh = await good.request(TurnClientState.for_user("alice", time.time()), StunMethod.REFRESH)
        assert error_code(refresh) in (None, 401, 438, 441)  # still answered: the relay kept serving
        assert relay.machine.allocation_count == 1


async def test_a_stun_binding_over_tcp_reports_the_tcp_source(relay: TurnRelay) -> None:
    async with tcp_client(relay) as client:
        client.send(StunMessage(StunMethod.BINDING, StunClass.REQUEST).encode(fingerprint=True))
        answer = decode(await client.next())
        assert answer.find(XorMappedAddress) == XorMappedAddress(client.address)


@pytest.fixture
async def small_relay() -> AsyncIterator[TurnRelay]:
    """A relay that closes idle TCP connections after 0.3 s and holds one allocation at most."""
    config = turn_config(
        min_port=40000, max_port=48999, tcp_idle_timeout=0.3, quotas=TurnQuotas(max_allocations=1)
    )
    server = await start_turn_relay(config, host="127.0.0.1", port=0, secret=SECRET)
    yield server
    server.close()
    await asyncio.sleep(0)


async def test_idle_connections_are_closed_and_connections_are_capped(small_relay: TurnRelay) -> None:
    async with tcp_client(small_relay) as holder:
        await holder.allocate(TurnClientState.for_user("alice", time.time()))
        # The cap (max_allocations connections) is reached: the next connection is closed at once.
        async with tcp_client(small_relay) as refused:
            with pytest.raises((EOFError, ConnectionError)):
                await refused.next()
        await asyncio.sleep(0.5)  # past the idle timeout: a connection with an allocation stays
        assert small_relay.tcp_clients == 1
        assert small_relay.machine.allocation_count == 1
    await until(lambda: small_relay.tcp_clients == 0, 2)
    async with tcp_client(small_relay) as idle:
        with pytest.raises((EOFError, ConnectionError)):
            await idle.next(timeout=2.0)  # nothing allocated within 0.3 s: closed


async def test_tcp_can_be_turned_off() -> None:
    config = turn_config(min_port=40000, max_port=48999, tcp=False)
    server = await start_turn_relay(config, host="127.0.0.1", port=0, secret=SECRET)
    try:
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(server.address)
    finally:
        server.close()
