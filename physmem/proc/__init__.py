"""Typed parsers for the memory files of /proc.

Every reader takes ``proc_root="/proc"`` (so it can be pointed at a copied tree) and the
per-process ones ``pid=None`` (this process). Files are read as bytes; a line that cannot be
read raises :class:`~physmem.errors.ParseError`, a vanished process
:class:`~physmem.errors.ProcessGone`, missing rights :class:`~physmem.errors.PermissionDenied`.
"""
from __future__ import annotations

from .checks import Finding, Severity, check_maps
from ._cpuinfo import cpu_flags, parse_cpu_flags
from ._iomem import IomemRange, iomem, parse_iomem
from ._maps import KIND_CODES, Device, Prot, Vma, VmaKind, VmaList, maps, parse_maps
from ._meminfo import meminfo, node_meminfo, parse_meminfo
from ._mounts import Mount, mounts, parse_mounts
from ._numa_maps import NumaMap, numa_maps, parse_numa_maps
from ._oom import Oom, oom, set_oom_score_adj
from .pidstat import (
                      Stat,
                      Statm,
                      parse_cpu_list,
                      parse_stat,
                      parse_status,
                      stat,
                      statm,
                      status,
)
from ._smaps import Smaps, SmapsList, memory_totals, parse_smaps, smaps, smaps_rollup
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

__all__ = [
    "KIND_CODES", "BuddyInfo", "Device", "Finding", "IomemRange", "Mount", "NumaMap", "Oom", "PageTypeInfo", "Prot", "Severity",
    "Smaps", "SmapsList", "Stat", "Statm", "Vma", "VmaKind", "VmaList", "Zone",
    "buddyinfo", "check_maps", "cpu_flags", "iomem", "maps", "meminfo", "memory_totals", "mounts", "node_meminfo", "numa_maps",
    "oom", "pagetypeinfo", "parse_buddyinfo", "parse_cpu_flags", "parse_cpu_list", "parse_iomem", "parse_maps", "parse_meminfo", "parse_mounts",
    "parse_numa_maps", "parse_pagetypeinfo", "parse_smaps", "parse_stat", "parse_status",
    "parse_vmstat", "parse_zoneinfo", "set_oom_score_adj", "smaps", "smaps_rollup", "stat",
    "statm", "status", "vmstat", "zoneinfo",
]
