"""Untrusted file names from a peer's offer: each rule of app/transfer/names.py, and random names."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.transfer.names import (
    MAX_DEPTH,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    UnsafeName,
    safe_relative_path,
    unique_path,
)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "relative"),
        ("\\\\server\\share\\x", "relative"),
        ("\\Windows\\system32", "relative"),
        ("C:\\Windows\\x.dll", "relative"),
        ("c:x.txt", "relative"),
        ("../.bashrc", "climbs out"),
        ("photos/../../.ssh/authorized_keys", "climbs out"),
        ("a/b/..", "climbs out"),
        ("report.pdf\x00.exe", "NUL"),
        ("/".join(["d"] * (MAX_DEPTH + 1)) + "/f", "deep"),
        ("x" * (MAX_PATH_BYTES + 1), "longer"),
        ("./", "no file name"),
    ],
)
def test_refused_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(UnsafeName, match=reason) as caught:
        safe_relative_path(name)
    assert caught.value.name == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("holiday/beach.jpg", "holiday/beach.jpg"),
        ("./a//b/./c.txt", "a/b/c.txt"),
        ("..\\..\\evil.bat", ".._.._evil.bat"),  # a backslash is not a separator on the wire
        ("notes:secret.txt", "notes_secret.txt"),  # an NTFS alternate data stream
        ('what<is>"this"|?*.txt', "what_is__this____.txt"),
        ("bell\x07\nname.txt", "bell__name.txt"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),  # shows as "invoiceexe.pdf" otherwise
        ("zero\u200bwidth.txt", "zero_width.txt"),
        ("trailing. . .", "trailing"),
        ("folder./file ", "folder/file"),
        ("...", "_"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Aux.tar.gz", "_Aux.tar.gz"),
        ("LPT1", "_LPT1"),
        ("dir/COM9.log", "dir/_COM9.log"),
        ("CONFIG.SYS", "CONFIG.SYS"),  # only the device names themselves
        ("Cafe\u0301.txt", "Caf\u00e9.txt"),  # NFC
    ],
)
def test_sanitised_names(name: str, expected: str) -> None:
    assert safe_relative_path(name) == PurePosixPath(expected)


def test_long_names_are_shortened_in_utf8_keeping_the_extension() -> None:
    long = "é" * 200 + ".tar"  # 400 bytes of UTF-8 in the stem
    safe = safe_relative_path("dir/" + long)
    assert safe.parent == PurePosixPath("dir")
    assert len(safe.name.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe.name.endswith(".tar")
    assert safe.name.startswith("é" * 100)  # cut on a character boundary
    no_extension = safe_relative_path("x" * 300)
    assert len(no_extension.name) == MAX_NAME_BYTES


@given(st.text(max_size=300))
def test_any_name_is_refused_or_stays_inside_the_folder(name: str) -> None:
    try:
        safe = safe_relative_path(name)
    except UnsafeName:
        return
    assert not safe.is_absolute()
    assert safe.parts
    for part in safe.parts:
        assert part not in ("", ".", "..")
        assert "/" not in part
        assert "\\" not in part
        assert "\x00" not in part
        assert len(part.encode("utf-8")) <= MAX_NAME_BYTES
        assert not part.endswith((".", " "))


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    relative = safe_relative_path("album/song.mp3")
    first = unique_path(tmp_path, relative)
    assert first == tmp_path / "album" / "song.mp3"
    first.parent.mkdir()
    first.write_bytes(b"mine")
    second = unique_path(tmp_path, relative)
    assert second == tmp_path / "album" / "song (2).mp3"
    second.write_bytes(b"theirs")
    assert unique_path(tmp_path, relative).name == "song (3).mp3"
    (tmp_path / "album" / "link.mp3").symlink_to(tmp_path / "nowhere")  # a dangling link is taken too
    assert unique_path(tmp_path, safe_relative_path("album/link.mp3")).name == "link (2).mp3"
    assert first.read_bytes() == b"mine"


def test_a_renamed_long_name_still_fits(tmp_path: Path) -> None:
    relative = safe_relative_path("y" * 251 + ".txt")
    (tmp_path / relative).write_bytes(b"")
    renamed = unique_path(tmp_path, relative)
    assert renamed.name.endswith(" (2).txt")
    assert len(renamed.name.encode("utf-8")) <= MAX_NAME_BYTES
    renamed.write_bytes(b"")  # the file system accepts it
