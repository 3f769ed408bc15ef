"""Every kind of bad input gets a clear error reply or a closed connection, and nobody else notices."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.account.identity import DeviceIdentity
from app.signalling import events as ev
from rendezvous.server import RendezvousServer
from rendezvous.wire.signalling import MAX_MESSAGE_BYTES
from tests.helpers.server import MakeClient, RawClient, next_matching, server_config


@pytest.mark.parametrize(
    ("frame", "code", "re"),
    [
        ("{not json", "bad_message", None),
        ("[1, 2, 3]", "bad_message", None),
        ('"just a string"', "bad_message", None),
        ('{"v": 1, "type": "fly_to_the_moon", "id": 3}', "bad_message", 3),
        ('{"v": 2, "type": "list_contacts", "id": 4}', "unsupported_version", 4),
        ('{"type": "list_contacts", "id": 4}', "unsupported_version", 4),
        ('{"v": 1, "type": "register", "id": 5, "username": "alice"}', "bad_message", 5),
        ('{"v": 1, "type": "register", "id": 6, "username": 42, "password": "x"}', "bad_message", 6),
        ('{"v": 1, "type": "register", "id": true, "username": "a", "password": "b"}', "bad_message", None),
        ('{"v": 1, "type": "set_status", "id": 8, "status": "invisible"}', "bad_message", 8),
        ('{"v": 1, "type": "list_contacts", "id": 9}', "not_signed_in", 9),
        ('{"v": 1, "type": "send_signal", "id": 10, "to": "bob", "payload": {}}', "not_signed_in", 10),
        ("\ud800" * 3, "bad_message", None),
        ("[" * 20_000 + "]" * 20_000, "bad_message", None),  # deeper than the JSON parser goes
    ],
)
async def test_malformed_messages_get_an_error_reply(raw: RawClient, frame: str, code: str, re: Any) -> None:
    await raw.ws.send(frame.encode("utf-8", "surrogatepass") if "\ud800" in frame else frame)
    reply = await raw.recv_json()
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["re"] == re
    assert reply["message"]
    # The connection still works afterwards.
    assert (await raw.request("list_contacts"))["code"] == "not_signed_in"


async def test_sign_in_with_bad_device_fields(raw: RawClient) -> None:
    key = DeviceIdentity.generate().public_key_b64
    for fields in (
        {"device_id": "has spaces", "identity_key": key},
        {"device_id": "ok", "identity_key": "not base64!"},
        {"device_id": "ok", "identity_key": "AAAA"},  # base64, but not 32 bytes
    ):
        reply = await raw.request("sign_in", username="alice", password="whatever you like", **fields)
        assert (reply["type"], reply["code"]) == ("error", "invalid_argument")
    reply = await raw.request("sign_in", username="alice", device_id="ok", identity_key=key)
    assert (reply["type"], reply["code"]) == ("error", "bad_message")  # neither password nor token


async def test_oversized_frame_closes_the_connection(server: RendezvousServer) -> None:
    async with connect(server.url, max_size=None) as ws:
        await ws.send(json.dumps({"v": 1, "type": "register", "id": 1, "pad": "x" * (MAX_MESSAGE_BYTES * 2)}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009  # message too big


async def test_binary_garbage_gets_an_error(raw: RawClient) -> None:
    await raw.ws.send(bytes(range(256)))
    reply = await raw.recv_json()
    assert (reply["type"], reply["code"]) == ("error", "bad_message")


async def test_flooding_is_rate_limited_then_closed(tmp_path: Path) -> None:
    config = server_config(tmp_path, messages_per_second=5, message_burst=5, rate_violations_before_close=10)
    async with await RendezvousServer.start(config) as server, connect(server.url) as ws:
        for i in range(40):
            await ws.send(json.dumps({"v": 1, "type": "list_contacts", "id": i}))
        codes: list[str] = []

        async def read_until_closed() -> None:
            while True:
                codes.append(json.loads(await ws.recv())["code"])

        with pytest.raises(ConnectionClosed) as closed:
            await read_until_closed()
        assert codes[:5] == ["not_signed_in"] * 5
        assert "rate_limited" in codes
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


async def test_connection_that_never_signs_in_is_closed(tmp_path: Path) -> None:
    config = server_config(tmp_path, sign_in_deadline=0.3)
    async with await RendezvousServer.start(config) as server, connect(server.url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4003


async def test_silent_peer_is_dropped_by_ping_timeout(tmp_path: Path) -> None:
    config = server_config(tmp_path, ping_interval=0.2, ping_timeout=0.3)
    # A client that stops answering pings (its reading is paused) is disconnected by the server.
    async with await RendezvousServer.start(config) as server, connect(server.url, ping_interval=None) as ws:
        ws.transport.pause_reading()
        await asyncio.sleep(1.5)
        ws.transport.resume_reading()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_abuse_does_not_disturb_other_users(server: RendezvousServer, make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    await alice.add_contact("bob")
    await bob.accept_contact("alice")
    await next_matching(alice, lambda e: isinstance(e, ev.ContactChanged) and e.contact.relation == "mutual")

    async def abuse(frame: str | bytes) -> None:
        async with connect(server.url, max_size=None) as ws:
            try:
                for _ in range(20):
                    await ws.send(frame)
                    await ws.recv()  # an error reply, or the close for the oversized frame
            except ConnectionClosed:
                pass

    frames: list[str | bytes] = ["{", "[]", b"\xff\xfe", '{"v":1,"type":"sign_in","id":1}', "x" * 200_000]
    await asyncio.gather(*(abuse(f) for f in frames))
    await alice.send_signal("bob", {"still": "here"})
    got = await next_matching(bob, lambda e: isinstance(e, ev.SignalReceived))
    assert got.payload == {"still": "here"}
