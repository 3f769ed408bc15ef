"""The contact lifecycle and presence between real clients and a real server."""

from __future__ import annotations

from typing import Any

import pytest

from app.signalling import events as ev
from app.signalling.client import ServerError
from tests.helpers.server import MakeClient, next_matching, no_event_within


def contact_event(name: str, relation: str) -> Any:
    return lambda e: (
        isinstance(e, ev.ContactChanged)
        and (e.contact.username, e.contact.relation)
        == (
            name,
            relation,
        )
    )


def presence_event(name: str, status: str) -> Any:
    return lambda e: isinstance(e, ev.PresenceChanged) and (e.username, e.status) == (name, status)


async def test_whole_contact_lifecycle_between_three_users(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    carol = await make_client("carol")

    # alice asks bob; bob sees the request, alice sees it pending.
    await alice.add_contact("bob")
    await next_matching(bob, contact_event("alice", "incoming"))
    await next_matching(alice, contact_event("bob", "outgoing"))

    # bob accepts: both become mutual and see each other online, with the device's identity key.
    await bob.accept_contact("alice")
    changed = await next_matching(alice, contact_event("bob", "mutual"))
    assert changed.contact.status == "online"
    assert [d.identity_key for d in changed.contact.devices] == [bob._identity.public_key_b64]
    await next_matching(bob, contact_event("alice", "mutual"))

    # carol asks alice; alice declines, and the request disappears on both sides.
    await carol.add_contact("alice")
    await next_matching(carol, contact_event("alice", "outgoing"))
    await next_matching(alice, contact_event("carol", "incoming"))
    await alice.decline_contact("carol")
    await next_matching(alice, contact_event("carol", "none"))
    await next_matching(carol, contact_event("alice", "none"))
    assert await carol.list_contacts() == ()

    # carol asks bob and bob accepts; bob now has two contacts, who are not each other's.
    await carol.add_contact("bob")
    await next_matching(bob, contact_event("carol", "incoming"))
    await bob.accept_contact("carol")
    await next_matching(carol, contact_event("bob", "mutual"))
    assert {c.username: c.relation for c in await bob.list_contacts()} == {
        "alice": "mutual",
        "carol": "mutual",
    }

    # alice removes bob: both sides see it.
    await alice.remove_contact("bob")
    await next_matching(bob, contact_event("alice", "none"))
    assert {c.username for c in await alice.list_contacts()} == set()

    # bob blocks carol: carol sees only a removal; carol cannot ask again visibly.
    await bob.block_contact("carol")
    await next_matching(bob, contact_event("carol", "blocked"))
    await next_matching(carol, contact_event("bob", "none"))
    assert {c.username: c.relation for c in await bob.list_contacts()} == {"carol": "blocked"}
    await carol.add_contact("bob")  # accepted silently, never shown to bob
    await no_event_within(bob, lambda e: isinstance(e, ev.ContactChanged), 0.3)
    await bob.unblock_contact("carol")
    assert {c.username for c in await bob.list_contacts()} == set()


async def test_asking_back_accepts(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    await alice.add_contact("bob")
    await next_matching(bob, contact_event("alice", "incoming"))
    await bob.add_contact("alice")
    await next_matching(alice, contact_event("bob", "mutual"))


async def test_contact_request_refusals(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    with pytest.raises(ServerError) as nobody:
        await alice.add_contact("nobody")
    assert nobody.value.code == "no_such_user"
    with pytest.raises(ServerError) as me:
        await alice.add_contact("alice")
    assert me.value.code == "invalid_argument"
    with pytest.raises(ServerError) as no_request:
        await alice.accept_contact("bob")
    assert no_request.value.code == "no_request"
    await alice.add_contact("bob")
    await bob.accept_contact("alice")
    with pytest.raises(ServerError) as already:
        await alice.add_contact("bob")
    assert already.value.code == "already_contacts"
    await alice.block_contact("bob")
    with pytest.raises(ServerError) as blocked:
        await alice.add_contact("bob")
    assert blocked.value.code == "blocked"


async def test_request_to_offline_user_waits_until_they_sign_in(make_client: MakeClient) -> None:
    bob = await make_client("bob")
    await bob.close()
    alice = await make_client("alice")
    await alice.add_contact("bob")
    bob_again = await make_client("bob", new_account=False)
    assert {c.username: c.relation for c in bob_again.contacts.values()} == {"alice": "incoming"}
    await bob_again.accept_contact("alice")
    await next_matching(alice, contact_event("bob", "mutual"))


async def test_presence_reaches_contacts_and_never_non_contacts(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob = await make_client("bob")
    eve = await make_client("eve")  # knows both names, is nobody's contact
    await alice.add_contact("bob")
    await bob.accept_contact("alice")
    await next_matching(alice, contact_event("bob", "mutual"))

    await bob.set_status("away")
    await next_matching(alice, presence_event("bob", "away"))
    await bob.set_status("online")
    await next_matching(alice, presence_event("bob", "online"))
    await bob.close()
    await next_matching(alice, presence_event("bob", "offline"))

    # A request is not a contact: eve's pending request gets her no presence either.
    await eve.add_contact("alice")
    await alice.set_status("away")
    await no_event_within(eve, lambda e: isinstance(e, ev.PresenceChanged), 0.5)
    assert all(c.status == "offline" for c in await eve.list_contacts())


async def test_presence_counts_devices(make_client: MakeClient) -> None:
    alice = await make_client("alice")
    bob_laptop = await make_client("bob")
    await alice.add_contact("bob")
    await bob_laptop.accept_contact("alice")
    await next_matching(alice, contact_event("bob", "mutual"))

    bob_phone = await make_client("bob", new_account=False)
    second = await next_matching(alice, lambda e: isinstance(e, ev.PresenceChanged) and len(e.devices) == 2)
    assert second.status == "online"
    await bob_laptop.set_status("away")  # one device still online: bob stays online, no status change
    await bob_phone.set_status("away")
    await next_matching(alice, presence_event("bob", "away"))
    await bob_phone.close()
    one = await next_matching(alice, lambda e: isinstance(e, ev.PresenceChanged) and len(e.devices) == 1)
    assert one.status == "away"
