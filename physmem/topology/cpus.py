"""Logical CPUs from /sys/devices/system/cpu: which exist, which run, and where they sit."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from .._sysfs import listdir, parse_int, read_optional, read_parsed
from .._syntax import parse_cpulist

__all__ = ["Cpu", "CpuSets", "read_cpu_sets", "read_cpus"]

_CPU_DIR = re.compile(r"cpu(\d+)\Z")


@dataclass(frozen=True)
class Cpu:
    """One logical CPU (a hardware thread). ``None`` where the kernel does not say."""

    id: int
    online: bool
    core_id: int | None
    package_id: int | None
    node: int | None
    thread_siblings: frozenset[int]
    isolated: bool
    nohz_full: bool


class CpuSets(NamedTuple):
    """The kernel's machine-wide CPU masks (see Documentation/ABI/testing/sysfs-devices-system-cpu)."""

    possible: frozenset[int]
    present: frozenset[int]
    online: frozenset[int]
    isolated: frozenset[int]  # isolcpus= domain CPUs, as the kernel applied them
    nohz_full: frozenset[int]


def _cpu_dir_ids(base: str) -> frozenset[int]:
    return frozenset(int(m.group(1)) for m in map(_CPU_DIR.match, listdir(base)) if m)


def read_cpu_sets(sys_root: str = "/sys", *, skipped: list[str] | None = None) -> CpuSets:
    """possible/present/online/isolated/nohz_full; old kernels lacking a mask get it derived.

    A mask file that is empty or reads ``(null)`` (nohz_full on a NO_HZ_FULL kernel booted
    without ``nohz_full=``) is the empty set. With ``skipped``, an unreadable one is treated
    as missing and noted there (see :func:`physmem._sysfs.read_parsed`).
    """
    base = f"{sys_root}/devices/system/cpu"
    dirs = _cpu_dir_ids(base)

    def _mask(name: str) -> frozenset[int] | None:
        return read_parsed(f"{base}/{name}", parse_cpulist, skipped)

    present = _mask("present")
    possible = _mask("possible")
    online = _mask("online")
    if present is None:
        present = dirs
    if possible is None:
        possible = present | dirs
    if online is None:
        # Per-CPU "online" files exist only for hotpluggable CPUs; no file means online.
        online = frozenset(c for c in present if read_optional(f"{base}/cpu{c}/online") != b"0")
    return CpuSets(possible, present, online,
                   _mask("isolated") or frozenset(),
                   _mask("nohz_full") or frozenset())


def read_cpus(sys_root: str = "/sys", *, sets: CpuSets | None = None,
              node_of: dict[int, int] | None = None,
              skipped: list[str] | None = None) -> list[Cpu]:
    """Every present CPU (online or not) with its core, package and node, sorted by id.

    A CPU without a ``topology`` directory (offline on some kernels, some hypervisors) gets
    ``None`` core and package and itself as its only sibling.
    """
    base = f"{sys_root}/devices/system/cpu"
    sets = sets or read_cpu_sets(sys_root, skipped=skipped)
    node_of = node_of or {}
    out = []
    for cpu in sorted(sets.present | _cpu_dir_ids(base)):
        top = f"{base}/cpu{cpu}/topology"
        sib = read_parsed(f"{top}/thread_siblings_list", parse_cpulist, skipped)
        out.append(Cpu(
            id=cpu,
            online=cpu in sets.online,
            core_id=read_parsed(f"{top}/core_id", parse_int, skipped),
            package_id=read_parsed(f"{top}/physical_package_id", parse_int, skipped),
            node=node_of.get(cpu),
            # An empty sibling list (seen on offline CPUs) says nothing: the CPU itself.
            thread_siblings=sib or frozenset({cpu}),
            isolated=cpu in sets.isolated,
            nohz_full=cpu in sets.nohz_full,
        ))
    return out
