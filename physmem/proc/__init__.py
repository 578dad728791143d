"""Typed parsers for the memory files of /proc.

Every reader takes ``proc_root="/proc"`` (so it can be pointed at a copied tree) and the
per-process ones ``pid=None`` (this process). Files are read as bytes; a line that cannot be
read raises :class:`~physmem.errors.ParseError`, a vanished process
:class:`~physmem.errors.ProcessGone`, missing rights :class:`~physmem.errors.PermissionDenied`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Loaded on first use, like the package above: physmem's kpageflags summary reads /proc
# through proc._read and must not pay for the maps parser's numpy on the way.
_NAMES = {
    "BuddyInfo": "zones", "Device": "_maps", "IomemRange": "_iomem",
    "KIND_CODES": "_maps", "Mount": "_mounts", "NumaMap": "_numa_maps", "Oom": "_oom",
    "PageTypeInfo": "zones", "Prot": "_maps", "Smaps": "_smaps",
    "SmapsList": "_smaps", "Stat": "pidstat", "Statm": "pidstat", "Vma": "_maps",
    "VmaKind": "_maps", "VmaList": "_maps", "Zone": "zones", "buddyinfo": "zones",
    "check_maps": "checks", "cpu_flags": "_cpuinfo", "iomem": "_iomem", "maps": "_maps",
    "meminfo": "_meminfo", "memory_totals": "_smaps", "mounts": "_mounts",
    "MountInfo": "_mounts", "mountinfo": "_mounts", "parse_mountinfo": "_mounts",
    "node_meminfo": "_meminfo", "numa_maps": "_numa_maps", "oom": "_oom", "pagetypeinfo": "zones",
    "parse_buddyinfo": "zones", "parse_cpu_flags": "_cpuinfo", "parse_iomem": "_iomem", "parse_maps": "_maps", "parse_meminfo": "_meminfo",
    "parse_mounts": "_mounts", "parse_numa_maps": "_numa_maps", "parse_pagetypeinfo": "zones",
    "parse_smaps": "_smaps", "parse_stat": "pidstat", "parse_status": "pidstat",
    "parse_vmstat": "_vmstat", "parse_zoneinfo": "zones", "set_oom_score_adj": "_oom",
    "smaps": "_smaps", "smaps_rollup": "_smaps", "stat": "pidstat", "statm": "pidstat",
    "status": "pidstat", "status_field": "pidstat", "vmstat": "_vmstat", "zoneinfo": "zones",
    "UringBuffer": "_uring", "parse_uring_buffers": "_uring", "uring_buffers": "_uring",
    "uring_fds": "_uring",
}

if TYPE_CHECKING:  # what __getattr__ returns, so type checkers see the real names
    from .checks import check_maps
    from ._cpuinfo import cpu_flags, parse_cpu_flags
    from ._iomem import IomemRange, iomem, parse_iomem
    from ._maps import KIND_CODES, Device, Prot, Vma, VmaKind, VmaList, maps, parse_maps
    from ._meminfo import meminfo, node_meminfo, parse_meminfo
    from ._mounts import Mount, MountInfo, mountinfo, mounts, parse_mountinfo, parse_mounts
    from ._numa_maps import NumaMap, numa_maps, parse_numa_maps
    from ._oom import Oom, oom, set_oom_score_adj
    from .pidstat import (
                          Stat,
                          Statm,
                          parse_stat,
                          parse_status,
                          stat,
                          statm,
                          status,
                          status_field,
    )
    from ._smaps import Smaps, SmapsList, memory_totals, parse_smaps, smaps, smaps_rollup
    from ._uring import UringBuffer, parse_uring_buffers, uring_buffers, uring_fds
    from ._vmstat import parse_vmstat, vmstat
    from .zones import (
                          BuddyInfo,
                          PageTypeInfo,
                          Zone,
                          buddyinfo,
                          pagetypeinfo,
                          parse_buddyinfo,
                          parse_pagetypeinfo,
                          parse_zoneinfo,
                          zoneinfo,
    )


if not TYPE_CHECKING:
    def __getattr__(name: str) -> Any:
        import importlib

        module = _NAMES.get(name)
        if module is None:
            try:   # a submodule (proc.pidstat) not imported yet
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError:
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # found once; later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))


__all__ = [
    "KIND_CODES", "BuddyInfo", "Device", "IomemRange", "Mount", "MountInfo", "NumaMap", "Oom", "PageTypeInfo", "Prot",
    "Smaps", "SmapsList", "Stat", "Statm", "Vma", "VmaKind", "VmaList", "Zone",
    "buddyinfo", "check_maps", "cpu_flags", "iomem", "maps", "meminfo", "memory_totals", "mountinfo", "mounts", "node_meminfo", "numa_maps",
    "oom", "pagetypeinfo", "parse_buddyinfo", "parse_cpu_flags", "parse_iomem", "parse_maps", "parse_meminfo", "parse_mountinfo", "parse_mounts",
    "parse_numa_maps", "parse_pagetypeinfo", "parse_smaps", "parse_stat", "parse_status",
    "parse_vmstat", "parse_zoneinfo", "set_oom_score_adj", "smaps", "smaps_rollup", "stat",
    "statm", "status", "status_field", "vmstat", "zoneinfo", "UringBuffer", "parse_uring_buffers",
    "uring_buffers", "uring_fds",
]
