"""Automatic NUMA balancing: the mode sysctl and the task scanner's settings.

The mode is ``/proc/sys/kernel/numa_balancing``. The scanner settings moved from
``/proc/sys/kernel/numa_balancing_scan_*`` to debugfs ``sched/numa_balancing/`` in 5.13;
this reads whichever this kernel has (debugfs must be mounted to see the new place).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from .. import sysctl
from .._sysfs import read_int
from .._args import as_flags
from ..errors import FeatureUnavailable

__all__ = ["BalancingMode", "Balancing", "balancing", "set_balancing"]

_SCAN = ("scan_delay_ms", "scan_period_min_ms", "scan_period_max_ms", "scan_size_mb")


class BalancingMode(enum.IntFlag):
    """Bits of kernel.numa_balancing; 3 is both (Documentation/admin-guide/sysctl/kernel.rst)."""

    DISABLED = 0
    NORMAL = 1  # migrate pages/tasks towards the node that uses them
    MEMORY_TIERING = 2  # promote hot pages from slow (e.g. CXL/PMEM) to fast memory (5.18+)


@dataclass(frozen=True)
class Balancing:
    """The balancing mode and scanner settings (``None`` where this kernel hides them)."""

    mode: BalancingMode
    scan_delay_ms: int | None
    scan_period_min_ms: int | None
    scan_period_max_ms: int | None
    scan_size_mb: int | None
    settings_path: str | None  # directory the scan settings came from
    settings_note: str | None = None  # why they are missing, if the kernel refused them

    @property
    def enabled(self) -> bool:
        return self.mode != BalancingMode.DISABLED


def _sysctl_or_none(name: str, proc_root: str) -> int | None:
    try:
        return sysctl.read_int(name, proc_root=proc_root)
    except FileNotFoundError:
        return None  # before 5.13 these were sysctls; after, debugfs only


def balancing(sys_root: str = "/sys", proc_root: str = "/proc") -> Balancing:
    """Read the current mode and scan settings. Raises FeatureUnavailable without NUMA balancing."""
    try:
        mode = sysctl.read_int("kernel.numa_balancing", proc_root=proc_root)
    except FileNotFoundError:
        raise FeatureUnavailable("this kernel has no automatic NUMA balancing "
                                 "(CONFIG_NUMA_BALANCING, Linux 3.8+)",
                                 path=sysctl.path_of("kernel.numa_balancing", proc_root)) from None
    note = None
    debugfs = f"{sys_root}/kernel/debug/sched/numa_balancing"
    sources: tuple[tuple[str, Callable[[str], int | None]], ...] = (
        (debugfs, lambda name: read_int(f"{debugfs}/{name}")),
        (f"{proc_root}/sys/kernel",
         lambda name: _sysctl_or_none(f"kernel.numa_balancing_{name}", proc_root)))
    for directory, read in sources:
        try:
            # Unpacked by name: Balancing's settings_path must not look like a fifth value.
            delay, period_min, period_max, size_mb = (read(name) for name in _SCAN)
        except PermissionError as exc:
            # debugfs under kernel lockdown (or without CAP_SYS_ADMIN) refuses reads.
            note = f"scan settings not readable: {exc}"
            continue
        if any(v is not None for v in (delay, period_min, period_max, size_mb)):
            return Balancing(BalancingMode(mode), delay, period_min, period_max, size_mb,
                             settings_path=directory)
    if note is None:
        note = (f"scan settings not found: mount debugfs on {sys_root}/kernel/debug "
                "(Linux 5.13+ keeps them in sched/numa_balancing/)")
    return Balancing(BalancingMode(mode), None, None, None, None, settings_path=None,
                     settings_note=note)


def set_balancing(mode: int | BalancingMode | bool, proc_root: str = "/proc") -> BalancingMode:
    """Set kernel.numa_balancing (0-3; ``True``/``False`` for 1/0); returns the previous mode.

    Not persistent: boot with ``numa_balancing=disable`` (or enable) for that.
    """
    if isinstance(mode, bool):   # documented: True and False are 1 and 0
        mode = int(mode)
    mode = BalancingMode(as_flags(mode, "mode", 3))  # NORMAL | MEMORY_TIERING
    previous = BalancingMode(sysctl.read_int("kernel.numa_balancing", proc_root=proc_root))
    sysctl.write("kernel.numa_balancing", int(mode), proc_root=proc_root)
    return previous
