"""Interop: coturn's TURN client through our relay; ``get_ice_servers`` credentials accepted by a real coturn
sharing the secret (``--use-auth-secret``) and by our relay."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from app.account.identity import DeviceIdentity
from app.signalling.client import ClientOptions, Credentials, SignallingClient
from rendezvous.config import TurnConfig
from rendezvous.server import RendezvousServer
from rendezvous.turn_relay import TurnRelay
from rendezvous.wire import signalling as sig
from rendezvous.wire.stun import Address, StunMethod, XorRelayedAddress
from rendezvous.wire.turn import RestCredentials
from tests.helpers.coturn import TURNSERVER, free_udp_port, run_coturn
from tests.helpers.server import PASSWORD, RawClient, fast_backoff, register, server_config
from tests.helpers.turn import REALM, SECRET, UDP, TurnClientState, error_code, request
from tests.helpers.udp import open_udp_peer

UCLIENT = shutil.which("turnutils_uclient")
PEER = shutil.which("turnutils_peer")
TIMEOUT = shutil.which("timeout")


@pytest.mark.slow  # turnutils_uclient waits about 3 s of its own around the transfer
@pytest.mark.skipif(
    UCLIENT is None or PEER is None or TIMEOUT is None, reason="coturn's turnutils (Debian: coturn) missing"
)
async def test_turnutils_uclient_relays_through_our_server_without_loss(relay: TurnRelay) -> None:
    assert UCLIENT is not None
    assert PEER is not None
    assert TIMEOUT is not None
    peer_port = free_udp_port()
    # turnutils_peer echoes every datagram back to its sender (here: our relay socket).
    peer = await asyncio.create_subprocess_exec(
        TIMEOUT, "15", PEER, "-L", "127.0.0.1", "-p", str(peer_port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.2)
        # -W: TURN REST secret (it mints "<expiry>:alice" and the HMAC password itself); -s: Send/Data
        # indications (its channel numbers are drawn from RFC 5766's 0x4000-0x7FFF, and RFC 8656 §12 refuses
        # 0x5000 and up); -c: no RTCP allocation (it would ask for EVEN-PORT with a reservation).
        client = await asyncio.create_subprocess_exec(
            TIMEOUT, "10", UCLIENT, "-s", "-c", "-n", "10", "-l", "200", "-z", "1",
            "-e", "127.0.0.1", "-r", str(peer_port), "-W", SECRET, "-u", "alice",
            "-p", str(relay.address[1]), "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await client.communicate()
    finally:
        if peer.returncode is None:
            peer.terminate()
        await peer.wait()
    text = output.decode(errors="replace")
    lost = re.search(r"Total lost packets (\d+)", text)
    totals = re.search(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)  # the summary
    assert lost, f"unexpected turnutils_uclient output:\n{text[-3000:]}"
    assert totals, f"unexpected turnutils_uclient output:\n{text[-3000:]}"
    assert int(lost.group(1)) == 0, text[-3000:]
    assert (int(totals.group(1)), int(totals.group(2))) == (10, 10), text[-3000:]
    assert "error" not in text.lower(), text[-3000:]


# --- get_ice_servers ------------------------------------------------------------------------------------


async def signed_in_client(server: RendezvousServer, username: str) -> SignallingClient:
    await register(server.url, username)
    client = SignallingClient(
        server.url,
        Credentials(username, password=PASSWORD),
        DeviceIdentity.generate(),
        backoff=fast_backoff(),
        options=ClientOptions(request_timeout=5.0),
    )
    await client.start()
    return client


def turn_address(url: str) -> Address:
    """(host, port) of a ``turn:host:port?transport=udp`` URL (RFC 7065)."""
    parts = urlsplit(url.replace("turn:", "turn://", 1))
    assert parts.hostname is not None
    assert parts.port is not None
    return (parts.hostname, parts.port)


async def allocate_with(credentials: RestCredentials, address: Address) -> int | None:
    """A hand-built Allocate exchange with the codec: the error code, or None on success."""
    client = await open_udp_peer()
    try:
        state = TurnClientState(credentials)
        answer = await request(client, state, address, StunMethod.ALLOCATE, UDP)
        if error_code(answer) is None:
            assert answer.find(XorRelayedAddress) is not None
        return error_code(answer)
    finally:
        client.close()


def credentials_of(entry: sig.IceServer) -> RestCredentials:
    assert entry.username is not None
    assert entry.credential is not None
    assert entry.expires is not None
    return RestCredentials(entry.username, entry.credential, entry.expires)


@pytest.mark.skipif(TURNSERVER is None, reason="coturn's turnserver (Debian: coturn) is not installed")
async def test_ice_server_credentials_work_with_coturn_and_with_our_relay(tmp_path: Path) -> None:
    secret = "shared between punchline and coturn"
    async with run_coturn(tmp_path, secret=secret) as coturn:
        coturn_port = coturn.address[1]
        config = server_config(tmp_path / "server")
        turn = TurnConfig(
            secret=secret,
            realm=REALM,
            min_port=40000,
            max_port=48999,
            external_servers=(f"turn:127.0.0.1:{coturn_port}?transport=udp",),
        )
        async with await RendezvousServer.start(replace(config, turn=turn)) as server:
            client = await signed_in_client(server, "alice")
            try:
                servers = await client.get_ice_servers()
            finally:
                await client.close()
            ours, external = servers
            assert ours.urls == (
                f"stun:127.0.0.1:{server.stun_port}",
                f"turn:127.0.0.1:{server.stun_port}?transport=udp",
                f"turn:127.0.0.1:{server.stun_port}?transport=tcp",
            )
            assert external.urls == turn.external_servers
            assert ours.username is not None
            assert ours.username.endswith(":alice")
            assert ours.expires is not None
            assert 3500 < ours.expires - time.time() <= 3600
            creds = credentials_of(external)
            assert await allocate_with(creds, turn_address(external.urls[0])) is None  # coturn accepts them
            assert await allocate_with(credentials_of(ours), turn_address(ours.urls[1])) is None  # and we do
            forged = RestCredentials(creds.username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", creds.expires)
            assert await allocate_with(forged, turn_address(external.urls[0])) == 401


async def test_ice_servers_use_the_public_host_and_need_a_sign_in(tmp_path: Path) -> None:
    config = server_config(tmp_path / "server")
    config = replace(
        config, turn=replace(config.turn, public_host="turn.example.org", min_port=40000, max_port=48999)
    )
    async with await RendezvousServer.start(config) as server:
        client = await signed_in_client(server, "bob")
        try:
            (entry,) = await client.get_ice_servers()
        finally:
            await client.close()
        assert entry.urls == (
            f"stun:turn.example.org:{server.stun_port}",
            f"turn:turn.example.org:{server.stun_port}?transport=udp",
            f"turn:turn.example.org:{server.stun_port}?transport=tcp",
        )
        async with connect(server.url) as ws:
            reply = await RawClient(ws).request("get_ice_servers")
        assert reply["type"] == "error"
        assert reply["code"] == sig.ErrorCode.NOT_SIGNED_IN


async def test_without_turn_only_stun_is_offered(tmp_path: Path) -> None:
    config = server_config(tmp_path / "server")
    config = replace(config, turn=replace(config.turn, enabled=False))
    async with await RendezvousServer.start(config) as server:
        client = await signed_in_client(server, "carol")
        try:
            servers = await client.get_ice_servers()
        finally:
            await client.close()
        assert servers == (sig.IceServer((f"stun:127.0.0.1:{server.stun_port}",)),)
