"""The one reader (and writer) of files under /sys (and of cgroup files, which the kernel
mounts beside it): bytes in, values out.

sysfs files that a kernel feature did not create are normal, so "missing" is ``None`` here
(:func:`read` is the strict form); anything else (permission, I/O) becomes the physmem error
for its errno, made by :mod:`physmem.errors` with the path. /proc has its own reader,
:mod:`physmem.proc._read`; no other module opens, lists or writes a kernel file
(``tests/test_structure.py`` checks that).
"""
from __future__ import annotations

import os
from typing import Callable, Iterator, TypeVar

from ._readcore import exists, is_dir, read_optional, stat
from ._readcore import read_bytes as read
from .errors import ParseError, error_from_errno, translate_os_errors

__all__ = ["read", "read_optional", "read_int", "parse_int", "read_parsed", "note_skipped",
           "listdir", "walk_dirs", "is_dir", "exists", "stat", "write"]

T = TypeVar("T")


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


def walk_dirs(path: str) -> Iterator[str]:
    """Every directory under ``path`` (itself first), top down; unreadable ones are passed
    over (a cgroup tree, whose directories come and go)."""
    for dirpath, _dirs, _files in os.walk(path):
        yield dirpath


def write(path: str, value: int | str, what: str) -> None:
    """Write ``value`` to a sysfs file in one ``write(2)``; ``what`` names the action."""
    with translate_os_errors(what, path=path):
        with open(path, "w") as f:
            f.write(str(value))
