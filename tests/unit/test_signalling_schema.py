"""The signalling schema: every message round-trips, and the decoders raise nothing but MessageError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rendezvous.wire import signalling as sig

DEVICE = sig.Device("abc123", "A" * 43 + "=")
EXAMPLES: list[Any] = [
    sig.Register(id=1, username="alice", password="pw"),
    sig.SignIn(id=2, username="alice", device_id="d", identity_key="k", password="pw"),
    sig.SignIn(id=3, username="alice", device_id="d", identity_key="k", token="t", status="away"),
    sig.SignOut(id=4),
    sig.ChangePassword(id=5, old_password="a", new_password="b"),
    sig.SetStatus(id=6, status="away"),
    sig.ListContacts(id=7),
    sig.ContactRequest(id=8, username="bob"),
    sig.ContactAccept(id=9, username="bob"),
    sig.ContactDecline(id=10, username="bob"),
    sig.ContactRemove(id=11, username="bob"),
    sig.ContactBlock(id=12, username="bob"),
    sig.ContactUnblock(id=13, username="bob"),
    sig.SendSignal(id=14, to="bob", payload={"a": [1, 2, {"b": None}]}),
    sig.SendSignal(id=15, to="bob", payload={}, device_id="phone"),
    sig.GetIceServers(id=16),
]
SERVER_EXAMPLES: list[Any] = [
    sig.Ok(re=1),
    sig.Error(re=None, code="bad_message", message="nope"),
    sig.Welcome(
        re=2,
        username="alice",
        device_id="d",
        token="t",
        contacts=(sig.Contact("bob", "mutual", "online", (DEVICE,)), sig.Contact("eve", "incoming")),
        stun_port=3478,
        server_version="x",
    ),
    sig.ContactList(re=3, contacts=()),
    sig.IceServers(
        re=4,
        servers=(
            sig.IceServer(
                ("stun:example.org:3478", "turn:example.org:3478?transport=udp"),
                "1800000000:alice",
                "c2VjcmV0",
                1800000000,
            ),
            sig.IceServer(("stun:[2001:db8::1]:3478",)),
        ),
    ),
    sig.ContactUpdate(contact=sig.Contact("bob", "none")),
    sig.Presence(username="bob", status="away", devices=(DEVICE,)),
    sig.Signal(sender="bob", sender_device="d", payload={"x": 1}),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.TYPE)
def test_client_messages_round_trip(message: Any) -> None:
    text = sig.encode(message)
    assert json.loads(text)["v"] == sig.PROTOCOL_VERSION
    assert sig.decode_client_message(text) == message


@pytest.mark.parametrize("message", SERVER_EXAMPLES, ids=lambda m: m.TYPE)
def test_server_messages_round_trip(message: Any) -> None:
    assert sig.decode_server_message(sig.encode(message)) == message


def test_each_side_refuses_the_other_sides_messages() -> None:
    with pytest.raises(sig.MessageError):
        sig.decode_client_message(sig.encode(sig.Ok(re=1)))
    with pytest.raises(sig.MessageError):
        sig.decode_server_message(sig.encode(sig.ListContacts(id=1)))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    text = '{"v": 1, "type": "list_contacts", "id": 1, "added_in_v1_1": true}'
    assert sig.decode_client_message(text) == sig.ListContacts(id=1)


def test_secrets_stay_out_of_reprs() -> None:
    shown = repr(
        sig.SignIn(id=1, username="a", device_id="d", identity_key="k", password="hunter22", token="tk")
    )
    assert "hunter22" not in shown
    assert "tk" not in shown.replace("identity_key", "")
    assert "hunter22" not in repr(sig.IceServer(("turn:h:1",), "1:a", "hunter22", 1))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "v",
        "type",
        "id",
        "re",
        "username",
        "password",
        "token",
        "device_id",
        "identity_key",
        "status",
        "to",
        "payload",
        "contacts",
        "contact",
        "devices",
        "code",
        "message",
        "sender",
        "sender_device",
        "servers",
        "urls",
        "credential",
        "expires",
    ]
)
type_names = st.sampled_from(sorted(sig.CLIENT_TYPES) + sorted(sig.SERVER_TYPES) + ["nope", ""])


@st.composite
def message_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that look like messages: a plausible type and version, random fields of random types."""
    body: dict[str, Any] = draw(st.dictionaries(field_names, json_values, max_size=8))
    if draw(st.booleans()):
        body["v"] = 1
    if draw(st.booleans()):
        body["type"] = draw(type_names)
    return body


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(message_like(), json_values))
def test_decoders_raise_only_message_error_on_random_json(body: Any) -> None:
    text = json.dumps(body)
    for decode in (sig.decode_client_message, sig.decode_server_message):
        error = _error_of(decode, text)
        if error is not None:
            assert error.detail
            assert error.code in set(sig.ErrorCode)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_decoders_raise_only_message_error_on_random_bytes(data: bytes | str) -> None:
    for decode in (sig.decode_client_message, sig.decode_server_message):
        _error_of(decode, data)
    sig.request_id_of(data)  # never raises


def _error_of(decode: Any, data: str | bytes) -> sig.MessageError | None:
    """The MessageError ``decode`` raised, or None; any other exception propagates and fails the test."""
    try:
        decode(data)
    except sig.MessageError as exc:
        return exc
    return None
