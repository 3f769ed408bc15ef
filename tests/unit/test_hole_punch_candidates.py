"""Candidates (RFC 8445 §5.1): priorities, the signalling format, and strict parsing of what a peer sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.nat.candidates import (
    Candidate,
    CandidateError,
    candidate_priority,
    is_private_address,
    pair_priority,
    parse_candidates,
    parse_nat_mapping,
)
from app.nat.hole_punch import HolePunch, HolePunchConfig


def good(**overrides: Any) -> dict[str, Any]:
    """A valid candidate object, with some fields replaced."""
    data: dict[str, Any] = {
        "kind": "srflx",
        "ip": "198.51.100.7",
        "port": 40000,
        "priority": 1694498815,
        "foundation": "abc123",
    }
    data.update(overrides)
    return data


def test_priorities_follow_the_rfc_formula() -> None:
    # RFC 8445 §5.1.2.1 with local preference 65535 and component 1.
    assert candidate_priority("host") == (126 << 24) + (65535 << 8) + 255 == 2130706431
    assert candidate_priority("prflx") == (110 << 24) + (65535 << 8) + 255
    assert candidate_priority("srflx") == 1694498815
    assert candidate_priority("relay") == 16777215
    assert candidate_priority("host", local_preference=0) == (126 << 24) + 255
    with pytest.raises(ValueError, match="out of range"):
        candidate_priority("host", local_preference=70000)


def test_pair_priority_follows_the_rfc_formula() -> None:
    # RFC 8445 §6.1.2.3: 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0).
    assert pair_priority(10, 20) == (10 << 32) + 40
    assert pair_priority(20, 10) == (10 << 32) + 40 + 1


def test_create_round_trips_through_json() -> None:
    for kind in ("host", "srflx", "relay"):
        candidate = Candidate.create(kind, ("203.0.113.5", 3478))
        wire = json.loads(json.dumps(candidate.to_dict()))
        assert Candidate.from_dict(wire) == candidate
    assert Candidate.create("relay", ("203.0.113.5", 1)).base == "relay"
    assert Candidate.create("srflx", ("203.0.113.5", 1)).base == "direct"
    # One kind from one IP shares a foundation (RFC 8445 §5.1.1.3); another kind does not.
    a, b = Candidate.create("host", ("10.0.0.1", 1)), Candidate.create("host", ("10.0.0.1", 2))
    assert a.foundation == b.foundation != Candidate.create("srflx", ("10.0.0.1", 1)).foundation


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"kind": "prflx"}, "kind"),
        ({"kind": "bogus"}, "kind"),
        ({"ip": "example.com"}, "not an IP"),
        ({"ip": 3}, "not a string"),
        ({"ip": "0.0.0.0"}, "unicast"),
        ({"ip": "224.0.0.1"}, "unicast"),
        ({"ip": "255.255.255.255"}, "unicast"),
        ({"ip": "127.0.0.1"}, "loopback"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"port": True}, "port"),
        ({"port": "80"}, "port"),
        ({"priority": 0}, "priority"),
        ({"priority": 2**31}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"foundation": ""}, "foundation"),
        ({"foundation": "x" * 33}, "foundation"),
        ({"foundation": "no spaces"}, "foundation"),
    ],
)
def test_from_dict_refuses_bad_fields(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(CandidateError, match=complaint):
        Candidate.from_dict(good(**overrides))


def test_from_dict_normalises_and_tolerates_unknown_keys() -> None:
    candidate = Candidate.from_dict(good(ip="::ffff:198.51.100.7", extra="future field"))
    assert candidate.address == ("198.51.100.7", 40000)
    assert Candidate.from_dict(good(ip="127.0.0.1"), allow_loopback=True).address[0] == "127.0.0.1"


def test_parse_candidates_drops_bad_entries_with_reasons() -> None:
    items = [good(), good(port=0), "junk", good(), good(ip="2001:db8::1", kind="host")]
    candidates, dropped = parse_candidates(items)
    assert [c.address for c in candidates] == [("198.51.100.7", 40000), ("2001:db8::1", 40000)]
    assert len(dropped) == 3
    assert dropped[0].startswith("candidate 1: port")
    assert "duplicate" in dropped[2]
    assert parse_candidates({"not": "a list"}) == ([], ["candidates are not a JSON list"])
    many = [good(port=p) for p in range(1, 41)]
    candidates, dropped = parse_candidates(many)
    assert len(candidates) == 32
    assert len(dropped) == 8


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=10,
)
candidate_like = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["host", "srflx", "relay", "prflx", "x"]) | json_values,
        "ip": st.sampled_from(["1.2.3.4", "::1", "fe80::1%eth0", "999.1.1.1", ""]) | json_values,
        "port": st.integers(-5, 70000) | json_values,
        "priority": st.integers(-5, 2**32) | json_values,
        "foundation": st.text(max_size=40) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, candidate_like))
def test_from_dict_raises_only_candidate_error(value: object) -> None:
    try:
        candidate = Candidate.from_dict(value)
    except CandidateError:
        return
    assert Candidate.from_dict(candidate.to_dict()) == candidate


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(json_values, candidate_like), max_size=40))
def test_parse_candidates_never_raises(items: list[object]) -> None:
    candidates, dropped = parse_candidates(items)
    assert len(candidates) + len(dropped) == len(items)


def test_private_addresses() -> None:
    for ip in (
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.1.1",
        "fe80::1",
        "fd00::1",
    ):
        assert is_private_address(ip), ip
    for ip in ("8.8.8.8", "172.32.0.1", "100.64.0.1", "2001:db8::1", "not an ip", "::ffff:8.8.8.8"):
        assert not is_private_address(ip), ip
    assert is_private_address("::ffff:192.168.1.1")


def test_nat_mapping_declarations() -> None:
    assert parse_nat_mapping("address-dependent") == "address-dependent"
    assert parse_nat_mapping("symmetric-ish") == "unknown"
    assert parse_nat_mapping(None) == "unknown"


def test_machine_refuses_what_it_must_not_signal() -> None:
    punch = HolePunch(
        controlling=True,
        local_ufrag="me",
        local_password="pw",
        tie_breaker=1,
        now=0.0,
        config=HolePunchConfig(force_relay=True),
    )
    assert not punch.add_local_candidate(Candidate.create("host", ("192.168.1.2", 1000)))
    assert not punch.add_local_candidate(Candidate.create("srflx", ("198.51.100.2", 1000)))
    assert not punch.add_local_candidate(Candidate.create("prflx", ("198.51.100.2", 1001)))
    relay = Candidate.create("relay", ("198.51.100.9", 50000))
    assert punch.add_local_candidate(relay)
    assert not punch.add_local_candidate(relay)  # duplicate
    assert punch.local_candidates == (relay,)


def test_misuse_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="ufrag"):
        HolePunch(controlling=True, local_ufrag="a:b", local_password="pw", tie_breaker=1, now=0)
    with pytest.raises(ValueError, match="tie-breaker"):
        HolePunch(controlling=True, local_ufrag="a", local_password="pw", tie_breaker=-1, now=0)
    with pytest.raises(ValueError, match="invalid"):
        HolePunchConfig(check_pacing=0)
    punch = HolePunch(controlling=True, local_ufrag="a", local_password="pw", tie_breaker=1, now=0)
    with pytest.raises(ValueError, match="base"):
        punch.receive_datagram(b"x", "sideways", ("1.2.3.4", 5), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ufrag"):
        punch.set_remote_parameters("", "pw")
