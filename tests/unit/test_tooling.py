"""The project's own guard rails: the Qt fence check and the log formatter that refuses secrets."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from rendezvous import log as server_log
from tests.check_boundaries import qt_imports


def test_qt_fence_finds_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "leak.py"
    source.write_text(
        "import os\nimport PySide6.QtCore\nfrom PySide6 import QtWidgets\nfrom shiboken6 import isValid\n"
        "from .PySide6 import nothing\n"
    )
    assert qt_imports(source) == [(2, "PySide6.QtCore"), (3, "PySide6"), (4, "shiboken6")]


def test_log_lines_are_json_and_refuse_secret_fields() -> None:
    stream = io.StringIO()
    server_log.configure(logging.INFO, stream)
    logger = logging.getLogger("punchline.test")
    server_log.log_event(logger, "signed_in", user="alice", remote="127.0.0.1")
    line = json.loads(stream.getvalue())
    assert (line["event"], line["user"], line["level"]) == ("signed_in", "alice", "info")
    for field in ("password", "new_password", "token", "secret_key"):
        fields: dict[str, Any] = {field: "x"}
        with pytest.raises(ValueError, match="secret"):
            server_log.log_event(logger, "oops", **fields)
