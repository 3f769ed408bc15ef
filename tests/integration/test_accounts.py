"""Accounts over the real protocol: register, sign in, tokens, sign out, change password, throttling."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.account.identity import DeviceIdentity
from app.signalling import events as ev
from app.signalling.client import Credentials, SignallingClient, SignInError
from rendezvous.server import RendezvousServer
from tests.helpers.server import PASSWORD, MakeClient, RawClient, next_matching, register, server_config


def device_fields(identity: DeviceIdentity) -> dict[str, str]:
    return {"device_id": identity.device_id, "identity_key": identity.public_key_b64}


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("al", PASSWORD, "invalid_username"),
        ("9lives", PASSWORD, "invalid_username"),
        ("alice smith", PASSWORD, "invalid_username"),
        ("a" * 33, PASSWORD, "invalid_username"),
        ("alice", "short", "weak_password"),
        ("alice", "aaaaaaaaaaaa", "weak_password"),
        ("alice", "1234567890", "weak_password"),
        ("alice", "alice-rocks-1999", "weak_password"),
        ("alice", "x" * 300, "weak_password"),
    ],
)
async def test_register_refuses_bad_names_and_weak_passwords(
    raw: RawClient, username: str, password: str, code: str
) -> None:
    reply = await raw.request("register", username=username, password=password)
    assert reply["type"] == "error"
    assert reply["re"] == 7
    assert reply["code"] == code
    assert reply["message"]  # a sentence for people


async def test_username_taken_is_case_insensitive(server: RendezvousServer, raw: RawClient) -> None:
    await register(server.url, "alice")
    reply = await raw.request("register", username="Alice", password=PASSWORD)
    assert (reply["type"], reply["code"]) == ("error", "username_taken")


async def test_wrong_password_and_unknown_user_get_the_same_clear_answer(
    server: RendezvousServer, raw: RawClient
) -> None:
    await register(server.url, "alice")
    identity = DeviceIdentity.generate()
    wrong = await raw.request(
        "sign_in", username="alice", password="wrong password!", **device_fields(identity)
    )
    unknown = await raw.request("sign_in", username="nobody", password=PASSWORD, **device_fields(identity))
    for reply in (wrong, unknown):
        assert (reply["type"], reply["code"]) == ("error", "auth_failed")
        assert reply["message"] == "Wrong username or password."


async def test_token_signs_in_again_without_the_password(server: RendezvousServer) -> None:
    await register(server.url, "alice")
    identity = DeviceIdentity.generate()
    first = SignallingClient(server.url, Credentials("alice", password=PASSWORD), identity)
    await first.start()
    token = first.token
    assert token
    await first.close()

    again = SignallingClient(server.url, Credentials("alice", token=token), identity)
    await again.start()
    assert again.token == token
    await again.close()

    # The token is bound to its device: another device cannot use it.
    thief = SignallingClient(server.url, Credentials("alice", token=token), DeviceIdentity.generate())
    with pytest.raises(SignInError) as refused:
        await thief.start()
    assert refused.value.code == "auth_failed"


async def test_sign_out_revokes_the_token(server: RendezvousServer) -> None:
    await register(server.url, "alice")
    identity = DeviceIdentity.generate()
    client = SignallingClient(server.url, Credentials("alice", password=PASSWORD), identity)
    await client.start()
    token = client.token
    await client.sign_out()
    again = SignallingClient(server.url, Credentials("alice", token=token), identity)
    with pytest.raises(SignInError, match="expired or was signed out"):
        await again.start()


async def test_change_password_signs_out_other_devices(
    make_client: MakeClient, server: RendezvousServer
) -> None:
    laptop = await make_client("alice")
    phone = await make_client("alice", new_account=False)
    old_phone_token = phone.token
    await laptop.change_password(PASSWORD, "a brand new passphrase")
    ended = await next_matching(phone, lambda e: isinstance(e, ev.SessionEnded))
    assert "password was changed" in ended.reason

    # The old password and the phone's token are dead; the laptop's session and the new password work.
    with pytest.raises(SignInError):
        await SignallingClient(
            server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate()
        ).start()
    with pytest.raises(SignInError):
        await SignallingClient(
            server.url, Credentials("alice", token=old_phone_token), phone._identity
        ).start()
    fresh = SignallingClient(
        server.url, Credentials("alice", password="a brand new passphrase"), DeviceIdentity.generate()
    )
    await fresh.start()
    await fresh.close()
    assert laptop.connected


async def test_change_password_needs_the_current_one(make_client: MakeClient) -> None:
    from app.signalling.client import ServerError

    alice = await make_client("alice")
    with pytest.raises(ServerError) as wrong:
        await alice.change_password("not my password", "a brand new passphrase")
    assert wrong.value.code == "auth_failed"
    with pytest.raises(ServerError) as weak:
        await alice.change_password(PASSWORD, "weak")
    assert weak.value.code == "weak_password"


async def test_repeated_failures_are_throttled(tmp_path: Path) -> None:
    config = server_config(tmp_path, failures_before_throttle=3, max_lockout_seconds=60)
    async with await RendezvousServer.start(config) as server:
        await register(server.url, "alice")
        identity = DeviceIdentity.generate()
        codes = []
        for _ in range(5):
            client = SignallingClient(server.url, Credentials("alice", password="wrong password!"), identity)
            with pytest.raises(SignInError) as refused:
                await client.start()
            codes.append(refused.value.code)
        assert codes[:3] == ["auth_failed"] * 3
        assert codes[-1] == "throttled"
        # Even the right password waits out the lock-out, and the message says how long.
        client = SignallingClient(server.url, Credentials("alice", password=PASSWORD), identity)
        with pytest.raises(SignInError, match=r"Try again in \d+ seconds"):
            await client.start()


async def test_a_device_that_signs_in_twice_replaces_its_old_connection(make_client: MakeClient) -> None:
    identity = DeviceIdentity.generate()
    first = await make_client("alice", identity=identity)
    second = await make_client("alice", new_account=False, identity=identity)
    ended = await next_matching(first, lambda e: isinstance(e, ev.SessionEnded))
    assert "signed in again" in ended.reason
    assert second.connected


async def test_too_many_devices_is_refused(tmp_path: Path) -> None:
    async with await RendezvousServer.start(server_config(tmp_path, max_devices_per_user=2)) as server:
        await register(server.url, "alice")
        clients = []
        for _ in range(2):
            client = SignallingClient(
                server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate()
            )
            await client.start()
            clients.append(client)
        third = SignallingClient(
            server.url, Credentials("alice", password=PASSWORD), DeviceIdentity.generate()
        )
        with pytest.raises(SignInError) as refused:
            await third.start()
        assert refused.value.code == "busy"
        for client in clients:
            await client.close()
