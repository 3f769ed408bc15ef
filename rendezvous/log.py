"""Structured logging for the server: one JSON object per line, one line per event.

Call sites pass an event name and plain fields; secrets never go in (there is no field for a password or a
token, and `log_event` refuses field names that look like one, so a slip fails loudly in tests).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRET_WORDS = ("password", "token", "secret")


class JsonLineFormatter(logging.Formatter):
    """Formats a record as {"ts", "level", "logger", "event", ...fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields (no secrets: names containing password/token/secret raise)."""
    for name in fields:
        if any(word in name for word in _SECRET_WORDS):
            raise ValueError(f"refusing to log a secret-looking field {name!r}")
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Send the ``punchline`` loggers to ``stream`` (stderr by default) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("punchline")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def monotonic() -> float:
    """The clock the server's sans-IO parts are fed with (one place, so tests know what to fake)."""
    return time.monotonic()
