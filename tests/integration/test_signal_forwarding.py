"""Forwarding opaque signalling payloads between mutual contacts, and its refusals."""

from __future__ import annotations

import pytest

from app.signalling import events as ev
from app.signalling.client import ServerError, SignallingClient
from tests.helpers.server import MakeClient, next_matching, no_event_within


async def befriend(a: SignallingClient, b: SignallingClient) -> None:
    await a.add_contact(b.username)
    await b.accept_contact(a.username)
    await next_matching(a, lambda e: isinstance(e, ev.ContactChanged) and e.contact.relation == "mutual")


async def test_signal_reaches_every_device_of_the_contact(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob_laptop = await make_client("bob")
    bob_phone = await make_client("bob", new_account=False)
    await befriend(alice, bob_laptop)

    payload = {"kind": "call_offer", "candidates": [{"ip": "203.0.113.5", "port": 40000}], "n": 1.5}
    await alice.send_signal("bob", payload)
    for device in (bob_laptop, bob_phone):
        got = await next_matching(device, lambda e: isinstance(e, ev.SignalReceived))
        assert (got.sender, got.sender_device, got.payload) == ("alice", alice.device_id, payload)


async def test_signal_to_one_device(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob_laptop = await make_client("bob")
    bob_phone = await make_client("bob", new_account=False)
    await befriend(alice, bob_laptop)
    await alice.send_signal("bob", {"to": "phone"}, device_id=bob_phone.device_id)
    got = await next_matching(bob_phone, lambda e: isinstance(e, ev.SignalReceived))
    assert got.payload == {"to": "phone"}
    await no_event_within(bob_laptop, lambda e: isinstance(e, ev.SignalReceived), 0.3)
    with pytest.raises(ServerError) as gone:
        await alice.send_signal("bob", {}, device_id="no-such-device")
    assert gone.value.code == "offline"


async def test_signal_refusals(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    eve = await make_client("eve")
    await befriend(alice, bob)

    with pytest.raises(ServerError) as stranger:
        await eve.send_signal("alice", {"spam": True})
    assert stranger.value.code == "not_contact"
    await no_event_within(alice, lambda e: isinstance(e, ev.SignalReceived), 0.3)

    # A pending request is not enough either.
    await eve.add_contact("alice")
    with pytest.raises(ServerError) as pending:
        await eve.send_signal("alice", {"spam": True})
    assert pending.value.code == "not_contact"

    await bob.close()
    with pytest.raises(ServerError) as offline:
        await alice.send_signal("bob", {"hello": 1})
    assert offline.value.code == "offline"
    assert "bob is offline" in str(offline.value)
