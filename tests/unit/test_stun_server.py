"""The STUN server's responder and our client's Binding transaction, sans-IO (fake clock, in-memory link).

The same over real UDP sockets: tests/integration/test_stun_server_udp.py."""

from __future__ import annotations

from typing import Any

import pytest

from app.nat.stun_client import (
    BindingConfig,
    BindingFailed,
    BindingSucceeded,
    BindingTransaction,
)
from rendezvous.stun_server import MAX_AMPLIFICATION, answer
from rendezvous.wire.stun import (
    Address,
    ErrorCode,
    MappedAddress,
    RawAttribute,
    Software,
    StunClass,
    StunMessage,
    StunMethod,
    UnknownAttributes,
    XorMappedAddress,
    decode,
)
from tests.helpers.stun import DROPPED, TID, binding_request

CLIENT: Address = ("198.51.100.7", 40000)
SERVER: Address = ("203.0.113.1", 3478)


# --- the responder, sans-IO ----------------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize(
    "source", [CLIENT, ("2001:db8::5", 1), ("::ffff:192.0.2.3", 65535)], ids=["ipv4", "ipv6", "v4-mapped"]
)
def test_binding_request_gets_the_source_address(source: Address, fingerprint: bool) -> None:
    reply = answer(binding_request(fingerprint=fingerprint), source)
    assert reply is not None
    message = decode(reply)  # decode checks the FINGERPRINT the server adds
    assert message.transaction_id == TID
    assert (message.method, message.message_class) == (StunMethod.BINDING, StunClass.SUCCESS)
    expected = ("192.0.2.3", 65535) if source[0].startswith("::ffff:") else source
    assert message.attributes == (XorMappedAddress(expected),)  # and no SOFTWARE
    assert int.from_bytes(reply[-8:-4], "big") == 0x80280004  # FINGERPRINT last


def test_unknown_comprehension_required_attributes_get_420() -> None:
    """RFC 8489 §6.3.1.1, e.g. RFC 5780's CHANGE-REQUEST (0x0003) sent to a server without it."""
    request = binding_request(
        RawAttribute(0x0003, bytes(4)), RawAttribute(0xC000, b"optional"), RawAttribute(0x0003, bytes(4))
    )
    reply = answer(request, CLIENT)
    assert reply is not None
    message = decode(reply)
    assert message.message_class == StunClass.ERROR
    assert message.transaction_id == TID
    assert message.find(ErrorCode) == ErrorCode(420, "Unknown")
    assert message.find(UnknownAttributes) == UnknownAttributes((0x0003,))


def test_comprehension_optional_unknown_attributes_are_ignored() -> None:
    reply = answer(binding_request(RawAttribute(0x8030, b"x"), Software("someone")), CLIENT)
    assert reply is not None
    assert decode(reply).find(XorMappedAddress) == XorMappedAddress(CLIENT)


@pytest.mark.parametrize("data", DROPPED.values(), ids=DROPPED.keys())
def test_everything_but_a_binding_request_is_dropped(data: bytes) -> None:
    assert answer(data, CLIENT) is None


def test_a_source_that_is_not_an_ip_endpoint_is_dropped() -> None:
    assert answer(binding_request(), ("not-an-ip", 1)) is None
    assert answer(binding_request(), ("127.0.0.1", 70000)) is None


AMPLIFICATION_CASES = {
    "bare-request-ipv4": (binding_request(), ("192.0.2.1", 1)),
    "bare-request-ipv6": (binding_request(), ("2001:db8::1", 1)),
    "one-unknown-empty": (binding_request(RawAttribute(0x0003, b"")), ("2001:db8::1", 1)),
    "two-unknown-empty": (binding_request(RawAttribute(0x0003, b""), RawAttribute(0x0004, b"")), CLIENT),
    "many-unknown-empty": (binding_request(*(RawAttribute(t, b"") for t in range(0x7F00, 0x7F80))), CLIENT),
    "repeated-unknown": (binding_request(*(RawAttribute(0x0003, b"") for _ in range(50))), CLIENT),
}


@pytest.mark.parametrize("case", AMPLIFICATION_CASES.values(), ids=AMPLIFICATION_CASES.keys())
def test_no_answer_is_more_than_32_bytes_larger_than_its_request(case: tuple[bytes, Address]) -> None:
    request, source = case
    reply = answer(request, source)
    assert reply is not None
    assert len(reply) <= len(request) + MAX_AMPLIFICATION == len(request) + 32


# --- the client transaction, sans-IO with a fake clock ----------------------------------------------


def run_over_link(
    transaction: BindingTransaction, lose: int, start: float = 0.0, step: float = 0.01
) -> float:
    """Drive ``transaction`` against `answer` over an in-memory link that loses the first ``lose`` requests.

    Time advances only when nothing is due; answers take ``step`` seconds. Returns the final time.
    """
    now = start
    lost = 0
    while True:
        for data, addr in transaction.datagrams_to_send(now):
            assert addr == SERVER
            if lost < lose:
                lost += 1
                continue
            reply = answer(data, CLIENT)
            assert reply is not None
            transaction.receive_datagram(reply, SERVER, now + step)
        timer = transaction.get_timer()
        if timer is None:
            assert transaction.done
            return now
        assert timer >= now
        now = timer
        transaction.handle_timer(now)


def test_first_two_requests_lost_then_answered() -> None:
    sent_at: list[float] = []
    transaction = BindingTransaction(SERVER, 100.0, transaction_id=TID)
    assert transaction.get_timer() == 100.0  # the first request is due at once
    for now in (100.0, 100.2, 100.5, 101.0, 101.5):
        transaction.handle_timer(now)
        if transaction.datagrams_to_send(now):
            sent_at.append(now)
    assert sent_at == [100.0, 100.5, 101.5]  # RTO 0.5 s, then 1 s (RFC 8489 §6.2.1)
    assert transaction.next_event() is None
    reply = answer(binding_request(tid=TID), CLIENT)
    assert reply is not None
    transaction.receive_datagram(reply, SERVER, 101.52)
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert (event.mapped, event.server) == (CLIENT, SERVER)
    assert event.rtt == pytest.approx(0.02)  # from the last transmission
    assert transaction.done
    assert transaction.get_timer() is None
    assert transaction.next_event() is None
    assert transaction.datagrams_to_send(200.0) == []


def test_lossy_link_end_to_end_with_fake_clock() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    end = run_over_link(transaction, lose=2)
    assert transaction.requests_sent == 3
    assert end == pytest.approx(1.5)
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert event.mapped == CLIENT


def test_gives_up_after_rc_requests_and_rm_times_rto() -> None:
    """RFC 8489 §6.2.1's example: requests at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; failure at 39.5 s."""
    transaction = BindingTransaction(SERVER, 0.0)
    sent_at: list[float] = []
    now = 0.0
    while not transaction.done:
        transaction.handle_timer(now)
        sent_at.extend(now for _ in transaction.datagrams_to_send(now))
        timer = transaction.get_timer()
        if timer is None:
            break
        now = timer
    assert sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert now == 39.5 == BindingConfig().total_time
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert event.timed_out
    assert event.error_code is None
    assert event.reason == "no answer to 7 requests in 39.5 s"


def test_config_shortens_the_schedule() -> None:
    config = BindingConfig(initial_rto=0.01, max_requests=3, final_wait_factor=2)
    assert config.total_time == pytest.approx(0.05)
    transaction = BindingTransaction(SERVER, 0.0, config=config)
    assert run_over_link(transaction, lose=99) == pytest.approx(0.05)
    assert transaction.requests_sent == 3
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert event.timed_out
    with pytest.raises(ValueError):  # noqa: PT011
        BindingConfig(max_requests=0)


def test_ignores_what_is_not_its_response() -> None:
    transaction = BindingTransaction(SERVER, 0.0, transaction_id=TID)
    [(request, _)] = transaction.datagrams_to_send(0.0)
    good = answer(request, CLIENT)
    assert good is not None
    other_tid = answer(binding_request(tid=bytes(12)), CLIENT)
    assert other_tid is not None
    ignored = [
        (good, ("203.0.113.2", 3478)),  # right answer, wrong host
        (good, (SERVER[0], 3479)),  # wrong port
        (other_tid, SERVER),  # another transaction
        (request, SERVER),  # our own request reflected back
        (b"\x00\x01garbage", SERVER),
        (good[:-1], SERVER),  # truncated
        (StunMessage(StunMethod.ALLOCATE, StunClass.SUCCESS, TID).encode(), SERVER),
        (StunMessage(StunMethod.BINDING, StunClass.INDICATION, TID).encode(), SERVER),
    ]
    for data, addr in ignored:
        transaction.receive_datagram(data, addr, 0.1)
        assert transaction.next_event() is None
        assert not transaction.done
    transaction.receive_datagram(good, (SERVER[0], SERVER[1], 0, 0), 0.1)  # IPv6-style 4-tuples are fine
    assert isinstance(transaction.next_event(), BindingSucceeded)


def responses(transaction: BindingTransaction, message_class: StunClass, *attributes: Any) -> bytes:
    """A response to ``transaction`` with the given class and attributes."""
    return StunMessage(StunMethod.BINDING, message_class, transaction.transaction_id, attributes).encode()


def test_error_response_becomes_a_failure_with_code_and_reason() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.datagrams_to_send(0.0)
    transaction.receive_datagram(
        responses(transaction, StunClass.ERROR, ErrorCode(420, "Unknown"), UnknownAttributes((3,))),
        SERVER,
        0.1,
    )
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert (event.error_code, event.timed_out) == (420, False)
    assert event.reason == "the STUN server answered 420 Unknown"


@pytest.mark.parametrize(
    ("message_class", "attributes", "reason"),
    [
        (StunClass.ERROR, (), "an error without a code"),
        (StunClass.SUCCESS, (), "no mapped address"),
        (
            StunClass.SUCCESS,
            (XorMappedAddress(CLIENT), RawAttribute(0x0003, b"")),
            "unknown attributes 0x0003",
        ),
    ],
)
def test_malformed_answers_fail_the_transaction(
    message_class: StunClass, attributes: tuple[Any, ...], reason: str
) -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.receive_datagram(responses(transaction, message_class, *attributes), SERVER, 0.1)
    event = transaction.next_event()
    assert isinstance(event, BindingFailed)
    assert reason in event.reason
    assert event.error_code is None


def test_mapped_address_from_an_old_server_is_accepted() -> None:
    transaction = BindingTransaction(SERVER, 0.0)
    transaction.receive_datagram(
        responses(transaction, StunClass.SUCCESS, MappedAddress(CLIENT)), SERVER, 0.1
    )
    event = transaction.next_event()
    assert isinstance(event, BindingSucceeded)
    assert event.mapped == CLIENT


def test_the_transaction_needs_a_numeric_server_address() -> None:
    with pytest.raises(ValueError, match="resolve names first"):
        BindingTransaction(("stun.example.org", 3478), 0.0)
    assert BindingTransaction(("::ffff:203.0.113.1", 3478), 0.0).server == SERVER
