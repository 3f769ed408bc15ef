"""The session's small parts alone: control framing, the identity proof, pinned keys, safety numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.account.identity import DeviceIdentity
from app.session.auth import AuthFailed, auth_message, verify_auth
from app.session.control import MAX_MESSAGE_BYTES, ControlProtocolError, MessageDecoder, encode_message
from app.session.credentials import certificate_identity_key, tls_credentials
from app.session.trust import KeyChanged, TrustStore, safety_number


def test_messages_survive_any_split() -> None:
    messages: list[dict[str, Any]] = [{"type": "offer", "files": ["a/ü.txt"] * 3}, {"type": "cancel"}]
    wire = b"".join(encode_message(m) for m in messages)
    for cut in range(len(wire) + 1):
        decoder = MessageDecoder()
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == messages


@given(st.binary(max_size=200))
def test_random_bytes_give_messages_or_a_protocol_error(data: bytes) -> None:
    try:
        messages = MessageDecoder().feed(data)
    except ControlProtocolError:
        return
    assert all(isinstance(m, dict) and isinstance(m["type"], str) for m in messages)


@pytest.mark.parametrize(
    "body", [b"[1,2]", b'{"no":"type"}', b"\xff\xfe", b"not json", json.dumps({"type": 3}).encode()]
)
def test_what_is_not_a_message_is_refused(body: bytes) -> None:
    with pytest.raises(ControlProtocolError):
        MessageDecoder().feed(len(body).to_bytes(4, "big") + body)


def test_an_oversized_length_is_refused_before_buffering() -> None:
    with pytest.raises(ControlProtocolError, match="too large"):
        MessageDecoder().feed((MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))


def test_the_certificate_carries_the_identity_key() -> None:
    identity = DeviceIdentity.generate()
    certificate, _ = tls_credentials(identity)
    assert certificate_identity_key(certificate) == identity.public_key_bytes
    again, _ = tls_credentials(identity)
    assert bytes(again.public_bytes()) != bytes(certificate.public_bytes())  # fresh per session


def test_a_proof_verifies_for_its_session_only() -> None:
    client = DeviceIdentity.generate()
    server = DeviceIdentity.generate()
    this_session = bytes(tls_credentials(server)[0].public_bytes())
    other_session = bytes(tls_credentials(server)[0].public_bytes())
    proof = auth_message(client, this_session)
    assert verify_auth(proof, this_session) == client.public_key_bytes
    with pytest.raises(AuthFailed):
        verify_auth(proof, other_session)  # replayed into another session
    with pytest.raises(AuthFailed):
        verify_auth({**proof, "key": DeviceIdentity.generate().public_key_b64}, this_session)
    with pytest.raises(AuthFailed):
        verify_auth({**proof, "signature": "!!"}, this_session)
    with pytest.raises(AuthFailed):
        verify_auth({"type": "hello"}, this_session)


def test_keys_are_pinned_on_first_contact_and_changes_wait_for_the_user(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    ours, first, second = (DeviceIdentity.generate().public_key_bytes for _ in range(3))
    assert store.check("bob", first, ours) == "first-contact"
    assert store.check("bob", first, ours) == "pinned"
    with pytest.raises(KeyChanged) as raised:
        store.check("bob", second, ours)
    assert raised.value.safety_number == safety_number(second, ours)
    assert "compare the safety number" in str(raised.value).lower()
    with pytest.raises(KeyChanged):
        TrustStore(tmp_path).check("bob", second, ours)  # still refused after a restart
    assert TrustStore(tmp_path).accept_pending("bob") == second
    assert store.check("bob", second, ours) == "pinned"
    with pytest.raises(KeyChanged):
        store.check("bob", first, ours)
    assert (tmp_path / "known_keys.json").stat().st_mode & 0o777 == 0o600
    store.forget("bob")
    assert store.check("bob", first, ours) == "first-contact"


def test_a_damaged_store_never_means_trust_everyone(tmp_path: Path) -> None:
    (tmp_path / "known_keys.json").write_text("{not json")
    with pytest.raises(OSError, match="Cannot read the pinned keys"):
        TrustStore(tmp_path).check("bob", b"k" * 32, b"o" * 32)


def test_safety_numbers_match_on_both_sides_and_differ_per_pair() -> None:
    a, b, c = (DeviceIdentity.generate().public_key_bytes for _ in range(3))
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    assert number != safety_number(a, c)
    groups = number.split(" ")
    assert len(groups) == 4
    assert all(len(g) == 5 and g.isdigit() for g in groups)
