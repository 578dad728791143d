"""The kernel's CPU/node list ("0-3,8,10-11") and mask ("0000ffff,00000000") formats."""
from __future__ import annotations

from typing import Iterable

from ..errors import ParseError

__all__ = ["parse_cpulist", "parse_cpumask", "format_cpulist"]


def parse_cpulist(data: bytes | str, path: str | None = None) -> frozenset[int]:
    """``b"0-3,8"`` -> ``frozenset({0, 1, 2, 3, 8})``; empty input is the empty set.

    Accepts the ``a-b:stride/group`` form the kernel takes on its command line (isolcpus).
    """
    if isinstance(data, str):
        data = data.encode()
    # Captured sysfs trees sometimes carry trailing NULs; the kernel never does.
    text = data.strip(b"\x00 \t\r\n")
    out: set[int] = set()
    if not text:
        return frozenset()
    for part in text.split(b","):
        part = part.strip()
        if not part:
            continue
        try:
            rng, _, group = part.partition(b":")
            lo_s, dash, hi_s = rng.partition(b"-")
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
            if hi < lo or lo < 0:
                raise ValueError(part)
            if group:
                used_s, _, size_s = group.partition(b"/")
                used, size = int(used_s), int(size_s)
                if used <= 0 or size <= 0:
                    raise ValueError(part)
                out.update(c for c in range(lo, hi + 1) if (c - lo) % size < used)
            else:
                out.update(range(lo, hi + 1))
        except ValueError:
            raise ParseError("not a CPU list", path=path, line=data) from None
    return frozenset(out)


def parse_cpumask(data: bytes | str, path: str | None = None) -> frozenset[int]:
    """``b"0000,000000ff,ffffffff"`` (comma-separated 32-bit hex words, most significant first)."""
    if isinstance(data, str):
        data = data.encode()
    text = data.strip(b"\x00 \t\r\n").replace(b",", b"")
    if not text:
        return frozenset()
    try:
        value = int(text, 16)
    except ValueError:
        raise ParseError("not a CPU mask", path=path, line=data) from None
    out = []
    bit = 0
    while value:
        if value & 1:
            out.append(bit)
        value >>= 1
        bit += 1
    return frozenset(out)


def format_cpulist(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 3, 8}`` -> ``"0-3,8"`` (the kernel's own spelling)."""
    items = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)
