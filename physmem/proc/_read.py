"""Reading /proc files as bytes, with errno mapped to physmem's errors in one place."""
from __future__ import annotations

import os

from ..errors import InvalidArgument, translate_os_errors

__all__ = ["pid_path", "read_bytes", "kb_value"]


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
