"""JSON objects in and out of frozen dataclasses, every field checked against its type hint. Sans-IO.

The one converter behind every typed message on the wire: signalling (`rendezvous.wire.signalling`) and
the peer session's control messages (`app.session.control`). `from_json` returns the dataclass or raises
`FieldError` (with the path of the bad field), never anything else; each protocol turns that into its own
error. Field types may be ``str``, ``int``, ``bool``, ``float``, a ``Literal`` of strings, ``X | None``,
``tuple[X, ...]``, ``dict[str, Any]`` (kept as it is) and nested dataclasses of those. Unknown fields are
ignored, so that a newer peer may add optional ones; fields with a default may be missing.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class FieldError(ValueError):
    """A JSON value that does not fit its field's type hint; the message names the field."""


def to_json(value: Any, *, omit_none: bool = False) -> Any:
    """A dataclass (or tuple of them, or plain value) as JSON values; ``omit_none`` leaves out None fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {
            name: to_json(item, omit_none=omit_none)
            for name, item in fields
            if not (omit_none and item is None)
        }
    if isinstance(value, tuple | list):
        return [to_json(item, omit_none=omit_none) for item in value]
    return value


def from_json(cls: type[Any], body: Mapping[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a JSON object; `FieldError` if any field is missing or of a wrong type."""
    hints = type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in body:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FieldError(f"{where}: missing field {f.name!r}")
            continue
        values[f.name] = _convert(hints[f.name], body[f.name], f"{where}.{f.name}")
    return cls(**values)


def type_hints(cls: type[Any]) -> dict[str, Any]:
    """``cls``'s resolved type hints (cached; calling it at import shows a schema mistake early)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def short(value: Any) -> str:
    """A peer's value, cut short for an error message."""
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError, RecursionError):
        return type(value).__name__


_HINTS: dict[type[Any], dict[str, Any]] = {}
_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false"}


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _convert(option, value, where)
            except FieldError:
                continue
        raise FieldError(f"{where}: unexpected value {short(value)}")
    if origin is Literal:
        if isinstance(value, str) and value in get_args(hint):
            return value
        raise FieldError(f"{where}: must be one of {', '.join(map(str, get_args(hint)))}")
    if origin is tuple:
        if not isinstance(value, list):
            raise FieldError(f"{where}: must be a list")
        item = get_args(hint)[0]
        return tuple(_convert(item, entry, f"{where}[{i}]") for i, entry in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(f"{where}: must be a JSON object")
        return value
    if hint is type(None):
        if value is None:
            return None
        raise FieldError(f"{where}: must be null")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise FieldError(f"{where}: must be a JSON object")
        return from_json(hint, value, where)
    if hint is float:
        if type(value) in (int, float):
            return float(value)
        raise FieldError(f"{where}: must be a number")
    if hint in (str, int, bool):
        # JSON true is a Python int: compare exact types, so that ``"index": true`` is refused.
        if type(value) is hint:
            return value
        raise FieldError(f"{where}: must be {_JSON_NAMES[hint]}")
    raise TypeError(f"schema bug: no converter for {hint!r} at {where}")  # our mistake, not the peer's
