"""/proc/iomem: the physical address map (RAM, reserved ranges, device windows)."""
from __future__ import annotations

import os
from typing import NamedTuple

from .._records import hex_fields
from ..errors import ParseError
from ._read import read_bytes, u64

__all__ = ["IomemRange", "iomem", "parse_iomem"]


@hex_fields("start", "end")
class IomemRange(NamedTuple):
    """One resource: ``[start, end)`` in bytes, its name and nesting depth (0: top level).

    Readers without CAP_SYS_ADMIN see every address as 0 (so ``end`` is 1)."""

    start: int
    end: int
    name: str
    depth: int


def parse_iomem(data: bytes, path: str = "/proc/iomem") -> list[IomemRange]:
    """Every line of iomem in file order; children follow their parent, indented two
    spaces per level."""
    out = []
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        body = line.lstrip(b" ")
        span, sep, name = body.partition(b" : ")
        lo, dash, hi = span.partition(b"-")
        try:
            if not sep or not dash:
                raise ValueError(line)
            start, end = u64(lo, 16), u64(hi, 16) + 1
            if end <= start:   # the kernel prints first-last, last included
                raise ValueError(line)
        except ValueError:
            raise ParseError("not a 'start-end : name' line", path=path, lineno=lineno,
                             line=line) from None
        out.append(IomemRange(start, end, os.fsdecode(name.rstrip()),
                              (len(line) - len(body)) // 2))
    return out


def iomem(proc_root: str = "/proc") -> list[IomemRange]:
    """The physical address map of /proc/iomem (addresses need CAP_SYS_ADMIN)."""
    path = f"{proc_root}/iomem"
    return parse_iomem(read_bytes(path, what="cannot read iomem"), path)
