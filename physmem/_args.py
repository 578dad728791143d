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
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, TypeVar

from .errors import InvalidArgument

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "U64_MAX", "I64_MAX", "U32_MAX", "I32_MAX", "PID_MAX",
    "is_int", "as_int", "as_nonneg", "as_positive", "as_pid", "as_timeout", "as_interval",
    "as_power_of_two", "as_multiple", "as_flags", "as_choice", "as_enum",
    "as_uint64_array", "as_int_array", "check_below", "as_iterable", "as_buffer", "as_text",
    "as_bool", "as_callable", "flag_text",
]

E = TypeVar("E", bound=enum.Enum)

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


def is_int(value: Any) -> bool:
    """Whether ``value`` is what :func:`as_int` accepts (an int or numpy integer, not a
    bool): for arguments that take an address *or* something else, to pick the branch."""
    np = _numpy()
    ints = (int,) if np is None else (int, np.integer)
    return isinstance(value, ints) and not _is_bool(value)


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
    """An alignment or boundary in bytes: a power of two that fits 64 bits."""
    v = as_int(value, name, hi=1 << 63)
    if v <= 0 or v & (v - 1):
        raise InvalidArgument(f"{name}={v} must be a power of two number of bytes (64, 4096, "
                              "65536, 1 << 32, ...)")
    return v


def as_multiple(value: Any, name: str, of: int, *, lo: int = 0, hi: int = U64_MAX,
                what: str = "the page size") -> int:
    """An int in ``[lo, hi]`` that is a whole number of ``of`` (``what`` names ``of``)."""
    v = as_int(value, name, lo=lo, hi=hi)
    if v % of:
        down, up = v - v % of, v - v % of + of
        fix = (f"round it to {down:#x} or {up:#x}" if down >= max(lo, 1)
               else f"round it up to {up:#x}")
        raise InvalidArgument(f"{name}={v:#x} is not a multiple of {what} {of:#x}; {fix}")
    return v


def as_flags(value: Any, name: str, known: int, *, hi: int = U64_MAX) -> int:
    """A flag word: an int in ``[0, hi]`` with no bit outside ``known``."""
    v = as_int(value, name, lo=0, hi=hi)
    if v & ~known:
        raise InvalidArgument(f"{name}={v:#x} has unknown bits {v & ~known:#x}")
    return v


def as_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """One of a few fixed words (``method='auto'``): the word itself."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(f"{name} must be {_either(list(map(repr, choices)))}, "
                              f"not {value!r:.60}")
    return value


def as_enum(value: Any, kind: type[E], name: str) -> E:
    """A member of the int enum ``kind``, given as the member or its value (an int: ``True``
    or ``1.0`` are not ``1``)."""
    if isinstance(value, kind):
        return value
    v = as_int(value, name)
    try:
        return kind(v)
    except ValueError:
        members = _either([f"{int(m.value)} ({m.name})" for m in kind])
        raise InvalidArgument(f"{name}={v} is no {kind.__name__}: it must be "
                              f"{members}") from None


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def as_uint64_array(values: object, name: str, limit: int | None) -> np.ndarray:
    """Ints (a scalar, nested sequences or an array) as a C-contiguous uint64 array of the
    same shape, each below ``limit`` (``None``: any 64-bit value).

    Floats, negatives and values >= ``limit`` raise :class:`InvalidArgument` naming ``name``
    and the value.
    """
    import numpy as np  # noqa: F811 (the CLI's start-up does not pay for numpy)

    try:
        arr = np.asarray(values)
        if arr.dtype.kind == "f" and not isinstance(values, np.ndarray):
            # numpy turns a list mixing ints below 2**63 and above into float64, losing
            # bits: read such a list int by int instead (a real float in it still fails).
            arr = np.asarray(values, dtype=object)
    except ValueError:   # numpy's words for a ragged nesting, [[1, 2], [3]]
        raise InvalidArgument(f"{name} values must have one shape (nested lists of equal "
                              f"length), got {values!r:.60}") from None
    if arr.dtype == object:   # Python ints beyond int64, or anything else: one by one
        top = U64_MAX if limit is None else limit - 1
        arr = np.array([as_int(v, f"{name} entry", lo=0, hi=top) for v in arr.ravel()],
                       dtype=np.uint64).reshape(arr.shape)
    if arr.size == 0:
        return np.empty(arr.shape, dtype=np.uint64)
    if arr.dtype.kind not in "iu":
        raise InvalidArgument(f"{name} values must be integers, got {arr.dtype} ({values!r:.60})")
    if arr.dtype.kind == "i" and int(arr.min()) < 0:
        raise InvalidArgument(f"{name} {int(arr.min())} is negative")
    arr = np.ascontiguousarray(arr, dtype=np.uint64)
    if limit is not None:
        check_below(int(arr.max()), name, limit)
    return arr


def check_below(top: int, name: str, limit: int) -> None:
    """``top`` (the largest of ``name``'s values) must be below ``limit``."""
    if top >= limit:
        raise InvalidArgument(f"{name} {top:#x} is out of range (must be below {limit:#x})")


def as_int_array(values: object, name: str, what: str = "an integer array") -> np.ndarray:
    """Values of an integer dtype, signed or not, as a flat array (no copy of an array):
    for bit words, where a float would be truncated into other bits."""
    import numpy as np  # noqa: F811

    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is None or arr.dtype.kind not in "iu":
        got = type(values).__name__ if arr is None else str(arr.dtype)
        raise InvalidArgument(f"{name} must be {what}, got {got} {values!r:.60}")
    flat: np.ndarray = arr.reshape(-1)
    return flat


def as_iterable(value: Any, name: str, what: str) -> Iterable[Any]:
    """A collection to go through (not consumed here): anything iterable but text, which
    iterates too (``"12"`` as the characters ``1`` and ``2``, ``b"1"`` as the int 49)."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        raise InvalidArgument(f"{name} must be {what}, got {type(value).__name__} "
                              f"{value!r:.60}")
    iterable: Iterable[Any] = value
    return iterable


def as_buffer(value: Any, name: str) -> memoryview:
    """A contiguous bytes-like object (bytes, bytearray, mmap, numpy array...), viewed."""
    try:
        view = memoryview(value)
    except TypeError:
        view = None
    if view is None or not view.c_contiguous:
        what = "not contiguous" if view is not None else type(value).__name__
        raise InvalidArgument(f"{name} must be a contiguous bytes-like object (bytes, "
                              f"bytearray, numpy array...), got {what} {value!r:.60}")
    return view


def as_text(value: Any, name: str, *, max_bytes: int | None = None,
            empty: bool = False) -> str:
    """A name: a str without NUL (C cuts it there), not empty unless ``empty``, at most
    ``max_bytes`` bytes in UTF-8."""
    ok = isinstance(value, str) and "\0" not in value and (empty or value != "")
    if ok and max_bytes is not None:
        ok = len(value.encode("utf-8", "surrogateescape")) <= max_bytes
    if not ok:
        limit = "" if max_bytes is None else f" of at most {max_bytes} bytes"
        kind = "" if empty else "non-empty "
        raise InvalidArgument(f"{name} must be a {kind}str{limit} with no NUL, got "
                              f"{type(value).__name__} {value!r:.60}")
    text: str = value
    return text


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
