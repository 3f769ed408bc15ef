r"""File names from a peer are untrusted: turn them into safe relative paths inside the download folder.

An offer names each file by a relative path with ``/`` between folders (the sender's own separator never
travels). The receiver must never write outside the folder it chose, never create a device, and never
produce a name the local file system refuses or shows misleadingly. What cannot be made safe is refused
with `UnsafeName` (that file is declined, the others go on); what can is sanitised, component by component.

Refused:

* empty names, absolute paths (``/etc/x``, ``\\server\share``, ``C:\x``, ``C:x``);
* a ``..`` component, which would climb out of the folder;
* a NUL character (C APIs would cut the name short there);
* more than `MAX_DEPTH` folders or `MAX_PATH_BYTES` in all (a peer cannot exhaust file system limits).

Sanitised:

* ``.`` and empty components (``a//b``) are dropped;
* ``\``, ``:``, ``<>"|?*`` and control characters become ``_`` (a backslash separates folders on Windows,
  ``:`` names an NTFS stream, the rest are invalid there);
* bidirectional overrides (U+202A-E, U+2066-9) and zero-width characters become ``_``:
  "invoice\u202Efdp.exe" would otherwise show as "invoiceexe.pdf";
* trailing dots and spaces are removed (Windows drops them, so two names would collide);
* CON, PRN, AUX, NUL, COM1-9 and LPT1-9, with any extension, get a ``_`` prefix (Windows opens the device);
* a component over `MAX_NAME_BYTES` of UTF-8 is shortened, keeping its extension;
* everything is put in Unicode NFC form, so a name looks and compares the same on every system.

`unique_path` then picks a name that does not exist yet ("report (2).pdf"): nothing is ever overwritten.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath

#: Longest file or folder name, in UTF-8 bytes (ext4, APFS and NTFS all allow 255).
MAX_NAME_BYTES = 255
#: Most folders above a file in one offer.
MAX_DEPTH = 32
#: Longest relative path, in UTF-8 bytes.
MAX_PATH_BYTES = 4096

_REPLACED = re.compile(r'[\\:<>"|?*\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]')
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.IGNORECASE)
_DRIVE = re.compile(r"[A-Za-z]:")


class UnsafeName(ValueError):
    """A name from a peer that cannot be made safe; ``reason`` says why in plain words."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"unsafe file name {name!r}: {reason}")
        self.name = name
        self.reason = reason


def safe_relative_path(name: str) -> PurePosixPath:
    """The relative path to write ``name`` (from a peer's offer) at, below the download folder.

    Raises `UnsafeName` when the name is refused (see the module table); never returns an absolute path,
    a path with ``..``, or an empty one.
    """
    if not name:
        raise UnsafeName(name, "the name is empty")
    if "\x00" in name:
        raise UnsafeName(name, "the name contains a NUL character")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafeName(name, "only relative paths are accepted")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafeName(name, f"the path is longer than {MAX_PATH_BYTES} bytes")
    parts = [p for p in unicodedata.normalize("NFC", name).split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeName(name, "the path climbs out of the folder ('..')")
    if len(parts) > MAX_DEPTH + 1:
        raise UnsafeName(name, f"the path is more than {MAX_DEPTH} folders deep")
    cleaned = [_safe_component(p) for p in parts]
    if not cleaned:
        raise UnsafeName(name, "the name has no file name in it")
    return PurePosixPath(*cleaned)


def _safe_component(part: str) -> str:
    text = _REPLACED.sub("_", part)
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be file names
    text = text.rstrip(". ")
    if not text or text == "..":  # "..." or " . " shrank to nothing (or to "..", when "_" replaced "..:")
        text = "_"
    if _RESERVED.fullmatch(text):
        text = "_" + text
    return _truncate(text)


def _truncate(text: str) -> str:
    """``text`` cut to `MAX_NAME_BYTES` of UTF-8 on a character boundary, keeping a short extension."""
    if len(text.encode("utf-8")) <= MAX_NAME_BYTES:
        return text
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension.encode("utf-8")) > 16:
        return _cut(text, MAX_NAME_BYTES)
    suffix = f".{extension}"
    return _cut(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8"))) + suffix


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` of UTF-8."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def unique_path(folder: Path, relative: PurePosixPath) -> Path:
    """``folder / relative``, or "name (2).ext", "name (3).ext"... if that exists: never an existing file.

    Only the last component is renamed; folders in ``relative`` are shared by the files of one offer.
    """
    target = folder.joinpath(*relative.parts)
    if not target.exists() and not target.is_symlink():
        return target
    stem, suffix = target.stem, target.suffix
    for n in range(2, 10_000):
        tail = f" ({n}){suffix}"
        candidate = target.with_name(_cut(stem, MAX_NAME_BYTES - len(tail.encode("utf-8"))) + tail)
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise FileExistsError(f"no free name for {target} after 10,000 tries")
