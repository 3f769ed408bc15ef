"""The transfer's control messages alone: the wire format (unchanged), the checks, and random input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import FinalError
from app.session.control import ControlMessage, ControlProtocolError, MessageSet
from app.transfer import messages as m
from app.transfer.protocol import TransferProtocolError

T = "ab" * 16
DIGEST = "0" * 64


def test_the_wire_format_is_the_json_the_protocol_table_describes() -> None:
    offer = m.Offer(T, (m.OfferedFile(0, "photos/a.jpg", 3), m.OfferedFile(1, "b.txt", 0)), 3)
    assert m.encode(offer) == {
        "type": "offer",
        "transfer": T,
        "files": [{"index": 0, "path": "photos/a.jpg", "size": 3}, {"index": 1, "path": "b.txt", "size": 0}],
        "total": 3,
    }
    accept = m.Accept(T, (m.ResumePoint(0, 10, DIGEST),), (m.SkippedFile(2, "unsafe name"),), (1,))
    assert m.encode(accept) == {
        "type": "accept",
        "transfer": T,
        "files": [{"index": 0, "offset": 10, "prefix": DIGEST}],
        "skipped": [{"index": 2, "reason": "unsafe name"}],
        "done": [1],
    }
    # Optional fields are left out, as the receiver always wrote them.
    ok = m.FileResult(T, 0, ok=True, sha256=DIGEST)
    assert m.encode(ok) == {"type": "file-result", "transfer": T, "index": 0, "ok": True, "sha256": DIGEST}
    failed = m.FileResult(T, 1, ok=False, reason="damaged")
    assert m.encode(failed) == {
        "type": "file-result",
        "transfer": T,
        "index": 1,
        "ok": False,
        "reason": "damaged",
    }
    for message in (offer, accept, ok, failed, m.Decline(T, "no"), m.FileFailed(T, 0, "gone"), m.Cancel(T)):
        assert m.decode(json.loads(json.dumps(m.encode(message)))) == message


def test_what_older_senders_leave_out_gets_its_default() -> None:
    # An offer without "total" (the tests' hand-made offers), an accept without "skipped"/"done", reasons
    # missing or empty.
    offer = m.decode({"type": "offer", "transfer": T, "files": [{"index": 0, "path": "x", "size": 1}]})
    assert isinstance(offer, m.Offer)
    assert offer.total is None
    assert m.decode({"type": "accept", "transfer": T, "files": []}) == m.Accept(T, ())
    assert m.decode({"type": "decline", "transfer": T, "reason": ""}) == m.Decline(T, "declined")
    assert m.decode({"type": "cancel", "transfer": T}) == m.Cancel(T, "cancelled")
    assert m.decode({"type": "file-result", "transfer": T, "index": 0, "ok": False}) == m.FileResult(
        T, 0, ok=False, reason="failed"
    )
    long = m.decode({"type": "cancel", "transfer": T, "reason": "x" * 10_000})
    assert isinstance(long, m.Cancel)
    assert len(long.reason) == m.MAX_REASON


@pytest.mark.parametrize(
    "message",
    [
        {"type": "offer", "transfer": "not-hex"},
        {"type": "offer", "transfer": T, "files": []},
        {"type": "offer", "transfer": T, "files": [{"index": 0, "path": "x", "size": -1}]},
        {"type": "offer", "transfer": T, "files": [{"index": 0, "path": 7, "size": 1}]},
        {"type": "offer", "transfer": T, "files": [{"index": 0, "path": "x", "size": 1}] * 2},
        {"type": "offer", "transfer": T, "files": [{"index": True, "path": "x", "size": 1}]},
        {"type": "offer", "transfer": T, "files": [{"index": 0, "path": "x", "size": 1 << 50}]},
        {"type": "accept", "transfer": T, "files": [{"index": 0, "offset": 5, "prefix": "zz"}]},
        {"type": "accept", "transfer": T, "files": [{"index": 0, "offset": -1, "prefix": DIGEST}]},
        {"type": "accept", "transfer": T, "files": [], "done": [-3]},
        {"type": "file-result", "transfer": T, "index": 0},
        {"type": "file-failed", "transfer": T, "index": m.MAX_FILES},
        {"type": "cancel", "transfer": T.upper()},
        {"type": "call-invite", "call": "1234"},
        {"type": 5},
        {},
    ],
    ids=[
        "bad-id",
        "no-files",
        "negative-size",
        "name-not-text",
        "repeated-index",
        "bool-index",
        "huge-size",
        "bad-prefix",
        "negative-offset",
        "bad-done",
        "result-without-ok",
        "index-too-big",
        "upper-case-id",
        "another-layer",
        "type-not-text",
        "empty",
    ],
)
def test_a_bad_message_is_a_transfer_protocol_error(message: dict[str, Any]) -> None:
    with pytest.raises(TransferProtocolError):
        m.decode(message)


def test_the_protocol_error_is_a_final_error() -> None:
    assert issubclass(TransferProtocolError, FinalError)
    assert issubclass(ControlProtocolError, FinalError)


# --- random input ------------------------------------------------------------------------------------------

_FIELDS = ["transfer", "files", "total", "index", "path", "size", "offset", "prefix", "skipped", "done"]
_FIELDS += ["reason", "ok", "sha256", "type"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
# Values near the valid ones, so that random messages get past the type checks and into the value checks.
_plausible = st.sampled_from([T, DIGEST, "", "a.txt", "../x", 0, 1, 2, -1, 1 << 45, True, False, None])
_entry = st.dictionaries(st.sampled_from(_FIELDS), _plausible | _json, max_size=4)
_value = _plausible | _json | st.lists(_entry, max_size=3) | st.lists(_plausible, max_size=3)
_kinds = st.sampled_from(sorted(m.TRANSFER_MESSAGES.types)) | st.text(max_size=8)
_anything = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    _kinds,
    st.dictionaries(st.sampled_from(_FIELDS), _value, max_size=6),
)
_small = st.integers(-1, 4)
_reason = st.text(max_size=4) | st.none()
_well_formed = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("offer"), "transfer": st.just(T), "total": st.integers(0, 9) | st.none()},
        optional={
            "files": st.lists(
                st.fixed_dictionaries(
                    {
                        "index": _small,
                        "path": st.sampled_from(["a", "../b", "c/d", "", "NUL"]),
                        "size": _small,
                    }
                ),
                max_size=4,
            )
        },
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("accept"),
            "transfer": st.just(T),
            "files": st.lists(
                st.fixed_dictionaries(
                    {
                        "index": _small,
                        "offset": _small,
                        "prefix": st.sampled_from([DIGEST, "x", DIGEST.upper()]),
                    }
                ),
                max_size=3,
            ),
        },
        optional={
            "skipped": st.lists(st.fixed_dictionaries({"index": _small, "reason": st.text(max_size=4)})),
            "done": st.lists(_small, max_size=3),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("file-result"), "transfer": st.just(T), "index": _small, "ok": st.booleans()},
        optional={"reason": _reason, "sha256": st.just(DIGEST) | st.none()},
    ),
    st.fixed_dictionaries(
        {"type": st.just("file-failed"), "transfer": st.just(T), "index": _small},
        optional={"reason": _reason},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["decline", "cancel"]), "transfer": st.just(T)}, optional={"reason": _reason}
    ),
)


@st.composite
def _nearly_well_formed(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed message, sometimes with one field replaced by any JSON value."""
    message: dict[str, Any] = draw(_well_formed)
    if draw(st.booleans()):
        message[draw(st.sampled_from(_FIELDS))] = draw(_value)
    return message


json_ish_messages = _anything | _nearly_well_formed()


@settings(max_examples=500)
@given(json_ish_messages)
def test_decode_returns_a_message_or_raises_the_protocol_error(message: dict[str, Any]) -> None:
    try:
        decoded = m.decode(message)
    except TransferProtocolError:
        return
    assert isinstance(decoded, m.Offer | m.Accept | m.Decline | m.FileResult | m.FileFailed | m.Cancel)
    assert m.decode(json.loads(json.dumps(m.encode(decoded)))) == decoded  # what we decode, we can send


# --- the generic part: any layer's messages --------------------------------------------------------------


class Oops(Exception):
    """A layer's own protocol error."""


@dataclass(frozen=True)
class Point:
    x: int
    label: str | None = None


@dataclass(frozen=True)
class Ping(ControlMessage):
    TYPE: ClassVar[str] = "demo-ping"
    mood: Literal["calm", "busy"]
    points: tuple[Point, ...] = ()
    loud: bool = False
    level: float = 0.5


DEMO: MessageSet[Ping] = MessageSet([Ping], Oops)


def test_a_message_set_decodes_checks_and_encodes_any_layers_messages() -> None:
    assert DEMO.types == frozenset({"demo-ping"})
    body = {"type": "demo-ping", "mood": "calm", "points": [{"x": 1}, {"x": 2, "label": "b"}], "level": 1}
    ping = DEMO.decode({**body, "from-the-future": 1})  # unknown fields are ignored
    assert ping == Ping("calm", (Point(1), Point(2, "b")), False, 1.0)
    assert DEMO.encode(ping) == {
        "type": "demo-ping",
        "mood": "calm",
        "points": [{"x": 1}, {"x": 2, "label": "b"}],
        "loud": False,
        "level": 1.0,
    }
    for bad in (
        {"type": "demo-ping", "mood": "angry"},
        {"type": "demo-ping"},
        {"type": "demo-ping", "mood": "calm", "points": [{"x": "1"}]},
        {"type": "demo-ping", "mood": "calm", "loud": 1},
        {"type": "demo-pong", "mood": "calm"},
    ):
        with pytest.raises(Oops):
            DEMO.decode(bad)


def test_a_message_set_refuses_two_messages_of_one_type() -> None:
    @dataclass(frozen=True)
    class Twin(ControlMessage):
        TYPE: ClassVar[str] = "demo-ping"

    with pytest.raises(ValueError, match="two messages"):
        MessageSet([Ping, Twin])
