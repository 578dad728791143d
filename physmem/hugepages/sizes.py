"""Which huge page sizes each architecture can have, and why one is missing here.

sysfs (/sys/kernel/mm/hugepages) is the truth for what exists; this table only explains
absences: a CPU feature lacking, a different MMU or page granule, or a size that is simply
not one the architecture has.
"""
from __future__ import annotations

import os

from .._hugepools import supported_sizes
from .._syntax import format_size
from ..proc._cpuinfo import parse_cpuinfo
from ..proc._read import read_optional

__all__ = ["architecture_sizes", "explain_size", "format_size"]

K, M, G = 1 << 10, 1 << 20, 1 << 30


def architecture_sizes(machine: str, *, cpuinfo: str | bytes = "",
                       page_size: int = 4096) -> dict[int, str | None]:
    """Sizes the architecture defines -> the requirement this CPU fails (``None`` = met);
    ``cpuinfo`` is the text of /proc/cpuinfo."""
    fields = {name.lower(): value for name, value in reversed(parse_cpuinfo(cpuinfo).items())}
    # x86 "flags", arm64 "Features", s390 "features"
    flags = set(fields.get("flags", "").split()) | set(fields.get("features", "").split())
    if machine == "x86_64":
        return {2 * M: None, G: None if "pdpe1gb" in flags else "the CPU flag pdpe1gb"}
    if machine in ("i386", "i586", "i686"):
        return {2 * M: None if "pae" in flags else "a PAE kernel", 4 * M: None}
    if machine == "aarch64":
        by_granule = {4 * K: [64 * K, 2 * M, 32 * M, G], 16 * K: [2 * M, 32 * M, G],
                      64 * K: [2 * M, 512 * M, 16 * G]}
        return {s: None for s in by_granule.get(page_size, by_granule[4 * K])}
    if machine.startswith("ppc64"):
        radix = fields.get("mmu", "").lower() == "radix"
        sizes = {2 * M: None, G: None} if radix else {16 * M: None, 16 * G: None}
        other = {16 * M: "the hash MMU", 16 * G: "the hash MMU"} if radix else \
            {2 * M: "the radix MMU (POWER9+)", G: "the radix MMU (POWER9+)"}
        return {**other, **sizes}
    if machine == "riscv64":
        return {64 * K: None if "svnapot" in fields.get("isa", "") else "the Svnapot extension",
                2 * M: None, G: None}
    if machine == "s390x":
        return {M: None if "edat" in flags else "EDAT-1",
                2 * G: None if "edat" in flags else "EDAT-2"}
    return {}


def explain_size(size: int, *, sys_root: str = "/sys", proc_root: str = "/proc",
                 machine: str | None = None) -> str | None:
    """``None`` if the kernel offers ``size``, else one sentence on why not and what to do."""
    have = supported_sizes(sys_root)
    if size in have:
        return None
    machine = machine or os.uname().machine
    table = architecture_sizes(machine, cpuinfo=read_optional(f"{proc_root}/cpuinfo") or b"",
                               page_size=os.sysconf("SC_PAGE_SIZE"))
    name = format_size(size)
    offered = ", ".join(format_size(s) for s in have) or "none"
    if size not in table:
        known = ", ".join(format_size(s) for s in sorted(table)) or "unknown"
        return f"{machine} has no {name} huge pages (its sizes: {known}; this kernel offers {offered})"
    if table[size] is not None:
        return f"{name} huge pages on {machine} need {table[size]}, which this machine lacks"
    return (f"{machine} supports {name} huge pages but this kernel does not offer them "
            f"(offers {offered}): boot with hugepagesz={name} hugepages=N, or enable "
            f"CONFIG_HUGETLB_PAGE for that size")
