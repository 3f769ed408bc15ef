"""What every ``punchline-cli`` command prints and how it fails: lines for people or JSON, and exit codes.

Exit status: 0 done, 1 refused (by the server, the contact, or their app), 2 bad usage or a local problem,
3 could not reach the server or the contact (try again later).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from app.errors import FinalError, PunchlineError
from app.nat.connect import NoPath
from app.session.peer_session import SessionLost, SessionRefused
from app.signalling.client import ServerError
from app.transfer.endpoint import TransferRefused

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class CliError(Exception):
    """A failure to report as one line and an exit status."""

    def __init__(self, message: str, status: int, code: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def cli_error(exc: PunchlineError) -> CliError:
    """The line and exit status for one of our errors, by its class (`app.errors`)."""
    if isinstance(exc, NoPath):
        return CliError(str(exc), EXIT_REFUSED, "no_path")
    if isinstance(exc, SessionRefused):
        return CliError(str(exc), EXIT_REFUSED, "key_changed")
    if isinstance(exc, TransferRefused):
        return CliError(str(exc), EXIT_REFUSED, "declined")
    if isinstance(exc, ServerError):
        status = EXIT_REFUSED if isinstance(exc, FinalError) else EXIT_UNREACHABLE
        return CliError(str(exc), status, exc.code)
    if isinstance(exc, SessionLost):
        return CliError(str(exc), EXIT_UNREACHABLE, "session_lost")
    if isinstance(exc, FinalError):
        return CliError(str(exc), EXIT_REFUSED, "refused")
    return CliError(str(exc), EXIT_UNREACHABLE, "unreachable")


class Output:
    """Prints results as sentences for people or, with ``--json``, as one JSON object per line."""

    def __init__(self, as_json: bool, stream: TextIO = sys.stdout) -> None:
        self.as_json = as_json
        self._stream = stream

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """One result line."""
        if self.as_json:
            print(json.dumps({"event": event, **fields}, default=str), file=self._stream, flush=True)
        else:
            print(text, file=self._stream, flush=True)

    def note(self, text: str) -> None:
        """A remark for people only (stderr; nothing with ``--json``)."""
        if not self.as_json:
            print(text, file=sys.stderr, flush=True)
