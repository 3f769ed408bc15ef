"""What a ``punchline-cli`` command is: a name, a line of help, its own options, and what it runs.

Each command lives in its own module (``cmd_*.py``, as magic-wormhole's ``cli/cmd_send.py``), adds its own
arguments, and uses only the core's public API; ``app.cli.main`` collects them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cli.output import Output

Run = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, None]]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command with no options of its own."""


@dataclass(frozen=True)
class Command:
    """One subcommand."""

    name: str
    help: str
    run: Run
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments


def add_name(parser: argparse.ArgumentParser) -> None:
    """The contact a command is about."""
    parser.add_argument("name", metavar="NAME")


def user_path(text: str) -> Path:
    """A path argument, with ``~`` expanded."""
    return Path(text).expanduser()
