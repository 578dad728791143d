"""/proc/vmstat: the kernel's memory event and state counters."""
from __future__ import annotations

from ..errors import ParseError
from ._read import read_bytes

__all__ = ["vmstat", "parse_vmstat"]


def parse_vmstat(data: bytes, path: str = "/proc/vmstat") -> dict[str, int]:
    out: dict[str, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            out[parts[0].decode("ascii")] = int(parts[1])
        except (ValueError, UnicodeDecodeError):
            raise ParseError("expected 'name value'", path=path, lineno=lineno,
                             line=line) from None
    return out


def vmstat(proc_root: str = "/proc") -> dict[str, int]:
    """``{"nr_free_pages": 123, "pgfault": ..., ...}``: counts of pages or events."""
    path = f"{proc_root}/vmstat"
    return parse_vmstat(read_bytes(path), path)
