"""Raw hugepage pool guardian (csrc/poolguard.h): each returns ``-errno`` on failure."""
from __future__ import annotations

from typing import Callable

from . import ffi, lib

arm: Callable[[int, bytes, int], int] = lib.pm_guard_arm
disarm: Callable[[int], int] = lib.pm_guard_disarm


def start() -> tuple[int, int]:
    """Fork the guardian: (its pid, the pipe's write end), or (-errno, -1)."""
    wfd = ffi.new("int *", -1)
    pid: int = lib.pm_guard_start(wfd)
    return pid, int(wfd[0])
