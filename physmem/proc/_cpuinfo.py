"""/proc/cpuinfo, as far as physmem needs it: the first CPU's fields and its feature flags.

The one parser of the file: the huge page size table (hugepages/sizes.py) reads the MMU and
extension fields of other architectures through it."""
from __future__ import annotations

import os

from ._read import read_bytes

__all__ = ["cpu_flags", "parse_cpu_flags", "parse_cpuinfo"]


def parse_cpuinfo(data: bytes | str) -> dict[str, str]:
    """``name: value`` fields, the first of each name kept (the first CPU's: x86 and arm64
    repeat them per CPU, all alike; s390 prints ``features`` once, before the CPUs)."""
    text = os.fsdecode(data) if isinstance(data, bytes) else data
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields.setdefault(name.strip(), value.strip())
    return fields


def parse_cpu_flags(data: bytes | str) -> frozenset[str]:
    """The ``flags`` of the first CPU; empty where the architecture names them otherwise
    (arm64 ``Features``)."""
    return frozenset(parse_cpuinfo(data).get("flags", "").split())


def cpu_flags(proc_root: str = "/proc") -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (``la57``, ``pdpe1gb``...)."""
    return parse_cpu_flags(read_bytes(f"{proc_root}/cpuinfo"))
