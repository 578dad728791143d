"""The one argument checker of physmem's public boundary.

Every public entry point that takes a count, size, address, PFN, pid, node, flag word or
timeout converts it here, once, before anything reaches numpy or cffi. The rules are the
same everywhere: Python ints and numpy integers are accepted; bool, float (even ``3.0``),
str and everything else are :class:`~physmem.errors.InvalidArgument`; so is a value that does
not fit the C type it will be passed as. The message names the argument, the value and the
range allowed, so a caller never sees a raw ``OverflowError`` or ``TypeError`` from cffi.
"""
from __future__ import annotations

import enum
import math
import operator
import sys
from typing import Any, Callable

from .errors import InvalidArgument

__all__ = [
    "U64_MAX", "I64_MAX", "U32_MAX", "I32_MAX", "PID_MAX",
    "as_int", "as_nonneg", "as_positive", "as_pid", "as_timeout", "as_interval",
    "as_power_of_two", "as_flags",
    "as_bool", "as_callable", "flag_text",
]

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1   # off_t, loff_t, ssize_t
U32_MAX = (1 << 32) - 1
I32_MAX = (1 << 31) - 1   # int, pid_t
# PID_MAX_LIMIT on 64-bit kernels: no pid can be larger (include/linux/threads.h).
PID_MAX = 1 << 22


def _numpy() -> Any:
    """numpy if something already imported it, else None: no value can then be a numpy
    scalar, and the CLI's start-up does not pay ~100 ms to check for one."""
    return sys.modules.get("numpy")


def _is_bool(value: Any) -> bool:
    np = _numpy()
    return isinstance(value, bool) or (np is not None and isinstance(value, np.bool_))


def as_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an exact int in ``[lo, hi]`` (either bound optional)."""
    if _is_bool(value):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidArgument(
            f"{name} must be an integer, got {type(value).__name__} {value!r:.60}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidArgument(f"{name}={v} is out of range: it must be {_range(lo, hi)}")
    return v


def as_nonneg(value: Any, name: str, *, hi: int = U64_MAX) -> int:
    """A count, offset, PFN or address: an int in ``[0, hi]``."""
    return as_int(value, name, lo=0, hi=hi)


def as_positive(value: Any, name: str, *, hi: int = U64_MAX) -> int:
    """A size or count that must be at least 1."""
    return as_int(value, name, lo=1, hi=hi)


def as_pid(value: Any, name: str = "pid", *, allow_zero: bool = False) -> int:
    """A process id: ``1..PID_MAX`` (``0`` too where the syscall reads it as "this process")."""
    return as_int(value, name, lo=0 if allow_zero else 1, hi=PID_MAX)


def as_timeout(value: Any, name: str = "timeout") -> float | None:
    """Seconds to wait: ``None`` (forever) or a finite number >= 0 that fits poll()'s int ms."""
    if value is None:
        return None
    np = _numpy()
    numbers = (int, float) if np is None else (int, float, np.integer, np.floating)
    if _is_bool(value) or not isinstance(value, numbers):
        raise InvalidArgument(f"{name} must be a number of seconds or None, got {value!r:.60}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or v * 1000 > I32_MAX:
        raise InvalidArgument(
            f"{name}={value!r} is out of range: it must be between 0 and {I32_MAX // 1000} "
            "seconds, or None to wait forever")
    return v


def as_interval(value: Any, name: str = "interval") -> float:
    """A period in seconds: a finite number more than 0 (as :func:`as_timeout`, without None)."""
    v = as_timeout(value, name)
    if not v:
        raise InvalidArgument(f"{name}={value!r} must be more than 0 seconds")
    return v


def as_power_of_two(value: Any, name: str) -> int:
    """An alignment or boundary in bytes: a power of two."""
    v = as_int(value, name)
    if v <= 0 or v & (v - 1):
        raise InvalidArgument(f"{name}={v} must be a power of two number of bytes (64, 4096, "
                              "65536, 1 << 32, ...)")
    return v


def as_flags(value: Any, name: str, known: int, *, hi: int = U64_MAX) -> int:
    """A flag word: an int in ``[0, hi]`` with no bit outside ``known``."""
    v = as_int(value, name, lo=0, hi=hi)
    if v & ~known:
        raise InvalidArgument(f"{name}={v:#x} has unknown bits {v & ~known:#x}")
    return v


def _range(lo: int | None, hi: int | None) -> str:
    def show(n: int) -> str:
        return f"{n:#x}" if abs(n) >= 1 << 32 else str(n)

    if lo is not None and hi is not None:
        return f"between {show(lo)} and {show(hi)}"
    if lo is not None:
        return f"at least {show(lo)}"
    assert hi is not None
    return f"at most {show(hi)}"


def as_bool(value: Any, name: str) -> bool:
    """A yes/no switch: ``True``/``False`` (or a numpy bool) only.

    Truthiness is not enough: ``shared='0'`` or ``on_fault=1j`` would silently switch a flag
    on that the caller probably meant off.
    """
    if _is_bool(value):
        return bool(value)
    raise InvalidArgument(
        f"{name} must be True or False, got {type(value).__name__} {value!r:.60}")


def as_callable(value: Any, name: str) -> Callable[..., Any]:
    """A handler or progress callback: anything callable."""
    if not callable(value):
        raise InvalidArgument(
            f"{name} must be callable, got {type(value).__name__} {value!r:.60}")
    function: Callable[..., Any] = value
    return function


def flag_text(value: enum.IntFlag) -> str:
    """A flag word as its member names, ``WRITE|SHRINK``; the zero member's name (``NONE``)
    or ``0`` when no bit is set; bits no member names are appended in hex.

    Python 3.11's ``format()`` of an IntFlag gives the bare number, so every message that
    prints flags goes through here instead.
    """
    members = type(value).__members__
    bits = int(value)
    names: list[str] = []
    for name, member in members.items():
        v = int(member)
        if v and v & (v - 1) == 0 and bits & v:
            names.append(name)
            bits &= ~v
    if bits:
        names.append(f"{bits:#x}")
    if names:
        return "|".join(names)
    return next((name for name, m in members.items() if int(m) == 0), "0")
