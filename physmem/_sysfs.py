"""Small, tolerant readers for single-value /sys and /proc files (bytes in, values out).

sysfs files that a kernel feature did not create are normal, so "missing" is ``None`` here;
anything else (permission, I/O) becomes the physmem error for its errno.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

from .errors import ParseError, error_from_errno

__all__ = ["read_optional", "read_int", "parse_int", "read_parsed", "note_skipped", "listdir"]

T = TypeVar("T")


def read_optional(path: str) -> bytes | None:
    """The file's bytes without trailing NULs/newline, or ``None`` if it does not exist."""
    try:
        with open(path, "rb", buffering=0) as f:
            data = f.readall()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise error_from_errno(exc.errno or 0, f"cannot read {os.path.basename(path)}",
                               path=path) from exc
    # Captured trees (hwloc's test data) pad some files with NULs; the kernel never does.
    return data.rstrip(b"\x00\n")


def parse_int(data: bytes, path: str | None = None) -> int:
    """The text of an integer file: decimal, or ``0x`` hex as PCI ids are."""
    text = data.strip()
    try:
        return int(text, 16) if text[:2] in (b"0x", b"0X") else int(text)
    except ValueError:
        raise ParseError("not an integer", path=path, line=data) from None


def read_int(path: str) -> int | None:
    """An integer file (decimal, or ``0x`` hex as PCI ids are), or ``None`` if absent."""
    data = read_optional(path)
    return None if data is None else parse_int(data, path)


def read_parsed(path: str, parse: Callable[[bytes, str], T],
                skipped: list[str] | None = None) -> T | None:
    """``parse(data, path)`` of the file, ``None`` if it is missing.

    With a ``skipped`` list, a file whose text ``parse`` refuses (a kernel quirk, a damaged
    capture) also reads as ``None`` and the reason is appended to ``skipped``: one odd file
    then costs its one field, not the whole reading. Without it, the ParseError propagates.
    """
    data = read_optional(path)
    if data is None:
        return None
    try:
        return parse(data, path)
    except ParseError as exc:
        note_skipped(skipped, path, exc)
        return None


def note_skipped(skipped: list[str] | None, what: str, exc: ParseError) -> None:
    """Record in ``skipped`` that ``what`` was ignored because of ``exc``; re-raise without a list."""
    if skipped is None:
        raise exc
    skipped.append(f"{what}: ignored, {exc.args[0].split(': ', 1)[-1]}")


def listdir(path: str) -> list[str]:
    """Directory entries, or ``[]`` if the directory does not exist."""
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise error_from_errno(exc.errno or 0, "cannot list directory", path=path) from exc
