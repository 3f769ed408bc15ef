"""What one machine does with what arrives: authentication, answers, peer-reflexive learning, nominations,
and garbage (hypothesis: nothing raises, unauthenticated input gets no reply)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.nat.candidates import Candidate
from app.nat.hole_punch import NOMINATION_ATTRIBUTE, HolePunch, Outgoing
from app.nat.path_events import PathChanged, PathSelected
from rendezvous.wire.stun import (
    Attribute,
    ErrorCode,
    IceControlled,
    IceControlling,
    Priority,
    RawAttribute,
    StunClass,
    StunMessage,
    StunMethod,
    UseCandidate,
    Username,
    XorMappedAddress,
    decode,
    is_stun,
    short_term_key,
    verify_integrity,
)

ME = ("198.51.100.1", 40000)
PEER_1 = ("203.0.113.10", 5000)
PEER_2 = ("203.0.113.11", 5000)
STRANGER = ("192.0.2.99", 1234)
MY_PASSWORD = "bob-password-0123456789"
PEER_PASSWORD = "alice-password-0123456789"

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def machine(*, controlling: bool = False, tie_breaker: int = 7) -> HolePunch:
    """Bob: host candidate, credentials of Alice, two public candidates of hers."""
    punch = HolePunch(
        controlling=controlling,
        local_ufrag="bob",
        local_password=MY_PASSWORD,
        tie_breaker=tie_breaker,
        now=0.0,
    )
    punch.add_local_candidate(Candidate.create("host", ME))
    punch.set_remote_parameters("alice", PEER_PASSWORD)
    punch.add_remote_candidates([Candidate.create("host", PEER_1), Candidate.create("host", PEER_2)])
    return punch


def check(
    *,
    username: str = "bob:alice",
    password: str = MY_PASSWORD,
    controlling: bool = True,
    tie_breaker: int = 3,
    nomination: int | None = None,
    priority: int = 1853824767,
) -> bytes:
    """A check as Alice would send it to Bob."""
    role: Attribute = IceControlling(tie_breaker) if controlling else IceControlled(tie_breaker)
    attributes: list[Attribute] = [Username(username), Priority(priority), role]
    if nomination is not None:
        attributes += [UseCandidate(), RawAttribute(NOMINATION_ATTRIBUTE, nomination.to_bytes(4, "big"))]
    message = StunMessage(StunMethod.BINDING, StunClass.REQUEST, attributes=tuple(attributes))
    return message.encode(integrity_key=short_term_key(password), fingerprint=True)


def responses(out: list[Outgoing]) -> list[tuple[StunMessage, Outgoing]]:
    """The STUN responses among what the machine sends."""
    found = []
    for item in out:
        message = decode(item.data)
        if message.message_class in (StunClass.SUCCESS, StunClass.ERROR):
            found.append((message, item))
    return found


def answer_checks(punch: HolePunch, out: list[Outgoing], now: float, only: tuple[object, ...] = ()) -> None:
    """Alice answers Bob's checks (to ``only`` those addresses if given), signed with her password."""
    for item in out:
        message = decode(item.data)
        if message.message_class != StunClass.REQUEST or (only and item.to not in only):
            continue
        reply = message.success_response(XorMappedAddress(ME))
        data = reply.encode(integrity_key=short_term_key(PEER_PASSWORD), fingerprint=True)
        punch.receive_datagram(data, item.via, item.to, now)


def test_valid_check_is_answered_with_the_source_address() -> None:
    punch = machine()
    assert punch.receive_datagram(check(), "direct", PEER_1, 0.0)
    (message, out), *_ = responses(punch.datagrams_to_send(0.0))
    assert message.message_class == StunClass.SUCCESS
    assert out.to == PEER_1
    assert out.via == "direct"
    mapped = message.find(XorMappedAddress)
    assert mapped is not None
    assert mapped.address == PEER_1
    assert verify_integrity(out.data, short_term_key(MY_PASSWORD))  # signed with our password


def test_check_from_unknown_address_teaches_a_peer_reflexive_candidate_and_triggers_a_check() -> None:
    punch = machine()
    punch.receive_datagram(check(priority=12345), "direct", STRANGER, 0.0)
    learned = [c for c in punch.remote_candidates if c.kind == "prflx"]
    assert [(c.address, c.priority) for c in learned] == [(STRANGER, 12345)]
    sent = punch.datagrams_to_send(0.0)
    requests = [o for o in sent if decode(o.data).message_class == StunClass.REQUEST]
    assert [o.to for o in requests] == [STRANGER]  # RFC 8445 §7.3.1.4: the triggered check goes first


def test_wrong_password_unknown_user_or_no_integrity_get_no_reply() -> None:
    plain = StunMessage(StunMethod.BINDING, StunClass.REQUEST, attributes=(Username("bob:alice"),))
    for data in (
        check(password="wrong"),
        check(username="carol:alice"),
        check(username="bob:mallory"),
        check(username="bob"),
        plain.encode(fingerprint=True),
    ):
        punch = machine()
        assert punch.receive_datagram(data, "direct", STRANGER, 0.0)
        assert not responses(punch.datagrams_to_send(0.0))
        assert all(c.kind != "prflx" for c in punch.remote_candidates)


def test_responses_need_our_transaction_the_right_source_and_the_peer_signature() -> None:
    punch = machine()
    sent = punch.datagrams_to_send(0.0)
    request = decode(sent[0].data)
    reply = request.success_response(XorMappedAddress(ME))
    # Wrong key, then wrong source, then a stranger's transaction: all ignored.
    punch.receive_datagram(reply.encode(integrity_key=b"nope", fingerprint=True), "direct", sent[0].to, 0.01)
    good = reply.encode(integrity_key=short_term_key(PEER_PASSWORD), fingerprint=True)
    punch.receive_datagram(good, "direct", STRANGER, 0.01)
    punch.receive_datagram(good, "relay", sent[0].to, 0.01)
    assert all(state.value != "succeeded" for state in punch.pair_states().values())
    punch.receive_datagram(good, "direct", sent[0].to, 0.01)
    assert punch.pair_states()[("direct", sent[0].to)].value == "succeeded"


def test_controlled_side_follows_the_latest_nomination() -> None:
    punch = machine()
    now = 0.0
    for _ in range(5):  # both pairs checked and answered
        answer_checks(punch, punch.datagrams_to_send(now), now)
        now += 0.05
    punch.receive_datagram(check(nomination=2), "direct", PEER_2, now)
    punch.receive_datagram(check(nomination=1), "direct", PEER_1, now)  # a late retransmission of an old one
    selected = punch.selected_path
    assert selected is not None
    assert selected.remote_address == PEER_2
    punch.receive_datagram(check(nomination=3), "direct", PEER_1, now)
    selected = punch.selected_path
    assert selected is not None
    assert selected.remote_address == PEER_1
    events = [punch.next_event() for _ in range(3)]
    assert isinstance(events[0], PathSelected)
    assert isinstance(events[1], PathChanged)
    assert events[1].reason == "the peer switched to this path"
    assert events[2] is None


def test_role_conflict_answers_487_when_our_tie_breaker_wins() -> None:
    punch = machine(controlling=True, tie_breaker=100)
    punch.receive_datagram(check(controlling=True, tie_breaker=5), "direct", PEER_1, 0.0)
    (message, _), *_ = responses(punch.datagrams_to_send(0.0))
    error = message.find(ErrorCode)
    assert error is not None
    assert error.code == 487
    assert punch.controlling
    # Theirs wins: we switch to controlled and answer.
    punch.receive_datagram(check(controlling=True, tie_breaker=500), "direct", PEER_1, 0.0)
    (message, _), *_ = responses(punch.datagrams_to_send(0.0))
    assert message.message_class == StunClass.SUCCESS
    assert not punch.controlling


def test_487_answer_to_our_check_switches_role_and_checks_again() -> None:
    punch = machine(controlling=True)
    sent = punch.datagrams_to_send(0.0)
    request = decode(sent[0].data)
    error = request.error_response(487, "Role Conflict")
    punch.receive_datagram(
        error.encode(integrity_key=short_term_key(PEER_PASSWORD), fingerprint=True),
        "direct",
        sent[0].to,
        0.01,
    )
    assert not punch.controlling
    again = punch.datagrams_to_send(0.05)
    assert [o.to for o in again] == [sent[0].to]
    assert decode(again[0].data).find(IceControlled) is not None


def test_closed_machine_is_silent() -> None:
    punch = machine()
    punch.close()
    assert punch.receive_datagram(check(), "direct", PEER_1, 0.0)
    assert punch.datagrams_to_send(0.0) == []
    assert punch.get_timer() is None
    assert not punch.receive_datagram(b"application data", "direct", PEER_1, 0.0)


@FAST
@given(data=st.binary(max_size=120), via=st.sampled_from(["direct", "relay"]))
def test_random_bytes_raise_nothing_and_get_no_reply(data: bytes, via: str) -> None:
    punch = machine()
    punch.datagrams_to_send(0.0)
    assert punch.receive_datagram(data, via, STRANGER, 0.01) == is_stun(data)  # type: ignore[arg-type]
    assert not responses(punch.datagrams_to_send(0.01))


def mutate(data: bytes, position: int, value: int, cut: int) -> bytes:
    """Set one byte and maybe truncate or extend."""
    buf = bytearray(data)
    buf[position % len(buf)] = value
    if cut > 0:
        return bytes(buf[:-cut])
    return bytes(buf) + bytes(-cut)


@FAST
@given(
    position=st.integers(0, 200),
    value=st.integers(0, 255),
    cut=st.integers(-8, 8),
    nomination=st.none() | st.integers(0, 5),
)
def test_mutated_checks_raise_nothing_and_only_authentic_ones_are_answered(
    position: int, value: int, cut: int, nomination: int | None
) -> None:
    punch = machine()
    punch.datagrams_to_send(0.0)
    data = mutate(check(nomination=nomination), position, value, cut)
    punch.receive_datagram(data, "direct", PEER_1, 0.01)
    punch.handle_timer(0.02)
    if responses(punch.datagrams_to_send(0.02)):
        assert verify_integrity(data, short_term_key(MY_PASSWORD))


@FAST
@given(
    position=st.integers(0, 200),
    value=st.integers(0, 255),
    cut=st.integers(-8, 8),
)
def test_mutated_responses_raise_nothing(position: int, value: int, cut: int) -> None:
    punch = machine()
    sent = punch.datagrams_to_send(0.0)
    request = decode(sent[0].data)
    reply = request.success_response(XorMappedAddress(ME))
    data = mutate(
        reply.encode(integrity_key=short_term_key(PEER_PASSWORD), fingerprint=True), position, value, cut
    )
    punch.receive_datagram(data, "direct", sent[0].to, 0.01)
    punch.handle_timer(0.5)
    punch.datagrams_to_send(0.5)
