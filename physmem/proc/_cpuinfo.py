"""/proc/cpuinfo, as far as physmem needs it: the CPU feature flags."""
from __future__ import annotations

import os

from ._read import read_bytes

__all__ = ["cpu_flags", "parse_cpu_flags"]


def parse_cpu_flags(data: bytes) -> frozenset[str]:
    """The ``flags`` of the first CPU (x86 prints them per CPU, all alike); empty where the
    architecture names them otherwise (arm64 ``Features``)."""
    for line in data.splitlines():
        if line.startswith(b"flags"):
            return frozenset(os.fsdecode(f) for f in line.partition(b":")[2].split())
    return frozenset()


def cpu_flags(proc_root: str = "/proc") -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (``la57``, ``pdpe1gb``...)."""
    return parse_cpu_flags(read_bytes(f"{proc_root}/cpuinfo"))
