"""Small, tolerant readers for single-value /sys and /proc files (bytes in, values out).

sysfs files that a kernel feature did not create are normal, so "missing" is ``None`` here;
anything else (permission, I/O) becomes the physmem error for its errno.
"""
from __future__ import annotations

import os

from .errors import ParseError, error_from_errno

__all__ = ["read_optional", "read_int", "listdir"]


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


def read_int(path: str) -> int | None:
    """An integer file (decimal, or ``0x`` hex as PCI ids are), or ``None`` if absent."""
    data = read_optional(path)
    if data is None:
        return None
    text = data.strip()
    try:
        return int(text, 16) if text[:2] in (b"0x", b"0X") else int(text)
    except ValueError:
        raise ParseError("not an integer", path=path, line=data) from None


def listdir(path: str) -> list[str]:
    """Directory entries, or ``[]`` if the directory does not exist."""
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise error_from_errno(exc.errno or 0, "cannot list directory", path=path) from exc
