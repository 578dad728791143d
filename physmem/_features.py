"""Kernel feature detection: the running kernel's version, and the FeatureUnavailable error
that names what is missing and the Linux version that added it."""
from __future__ import annotations

import errno as _errno
import functools
import os
import re

from .errors import FeatureUnavailable

__all__ = ["kernel_version", "kernel_at_least", "unavailable"]


@functools.lru_cache(maxsize=None)
def kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel, from uname."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _parse(since: str) -> tuple[int, ...]:
    return tuple(int(x) for x in since.split("."))[:2]


def kernel_at_least(since: str) -> bool:
    """True if the running kernel is at least Linux ``since`` (e.g. ``"6.8"``)."""
    return kernel_version() >= _parse(since)


def unavailable(what: str, since: str, *, err: int = _errno.ENOSYS,
                hint: str | None = None) -> FeatureUnavailable:
    """The error for ``what`` (a syscall, ioctl or flag) missing from the running kernel."""
    text = (f"{what} is not available on the running kernel ({os.uname().release}); "
            f"it was added in Linux {since}")
    if hint:
        text += f"; {hint}"
    return FeatureUnavailable(text, errno=err)
