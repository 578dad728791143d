"""Reading /proc files as bytes, with errno mapped to physmem's errors in one place."""
from __future__ import annotations

import os

from ..errors import InvalidArgument, translate_os_errors

__all__ = ["pid_path", "read_bytes", "kb_value", "u64"]

_HEX = frozenset(b"0123456789abcdefABCDEF")


def pid_path(proc_root: str, pid: int | None, name: str) -> str:
    """``<proc_root>/<pid or self>/<name>``; rejects pids that are not positive integers."""
    if pid is None:
        return f"{proc_root}/self/{name}"
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidArgument(f"pid must be a positive integer, not {pid!r}")
    return f"{proc_root}/{pid}/{name}"


def read_bytes(path: str, pid: int | None = None) -> bytes:
    """The whole file at ``path``; ``pid`` lets a vanished /proc/<pid> become ProcessGone."""
    with translate_os_errors(f"cannot read {os.path.basename(path)}", path=path, pid=pid):
        # Unbuffered: /proc files report size 0, so a buffered reader only adds a copy.
        with open(path, "rb", buffering=0) as f:
            return f.readall()


def kb_value(value: bytes) -> int:
    """``b"123 kB"`` -> bytes; a bare number is returned unscaled (counts such as HugePages_*)."""
    parts = value.split()
    if len(parts) == 2 and parts[1] == b"kB":
        return int(parts[0]) * 1024
    if len(parts) == 1:
        return int(parts[0])
    raise ValueError(value)


def u64(text: bytes, base: int = 10) -> int:
    """A number as the kernel prints an unsigned 64-bit value (``%lu``, ``%lx``): digits only,
    no sign, underscore or space, and below 2**64; ValueError otherwise, which the parsers
    turn into ParseError (``int()`` would take ``-5``, ``1_0`` and thousands of digits)."""
    if base == 16:
        ok = 0 < len(text) <= 16 and all(c in _HEX for c in text)
    else:
        ok = 0 < len(text) <= 20 and text.isdigit()
    value = int(text, base) if ok else -1
    if not 0 <= value < 1 << 64:
        raise ValueError(f"not an unsigned 64-bit number: {text[:40]!r}")
    return value
