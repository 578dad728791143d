"""Raw io_uring availability probe (csrc/uringprobe.h)."""
from __future__ import annotations

from . import lib


def io_uring_probe() -> int:
    """0 if this process may set up an io_uring, else ``-errno``."""
    ret: int = lib.pm_io_uring_probe()
    return ret
