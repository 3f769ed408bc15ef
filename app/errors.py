"""One root for the errors Punchline reports to people, split by what the caller should do next.

Every error a user can meet derives from `PunchlineError`, and its ``str()`` is a sentence for people. Below
the root there are two kinds, and callers choose by class whether to try again (h11's local/remote split,
magic-wormhole's one ``WormholeError`` parent):

* `TryAgainLater` — the contact or the server cannot be reached *now*: offline, unreachable, no path,
  the session or the path was lost. A send waits and retries (`app.backoff.RetryPolicy`).
* `FinalError` — an answer that trying again will not change: refused, declined, cancelled, bad input,
  a changed identity key.

Our own misuse of an API (a bug) is not a `PunchlineError`: it stays an ordinary exception
(``RuntimeError``, ``AssertionError``) and is never retried or shown as a sentence.
"""

from __future__ import annotations


class PunchlineError(Exception):
    """The root of the errors people see; the message says what happened."""


class TryAgainLater(PunchlineError):
    """Temporary: the contact, the server or the path is not there now; the same action may work later."""


class FinalError(PunchlineError):
    """Definite: refused, declined, cancelled or bad input; repeating the action gives the same answer."""
