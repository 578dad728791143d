"""Automatic NUMA balancing: the mode sysctl and the task scanner's settings.

The mode is ``/proc/sys/kernel/numa_balancing``. The scanner settings moved from
``/proc/sys/kernel/numa_balancing_scan_*`` to debugfs ``sched/numa_balancing/`` in 5.13;
this reads whichever this kernel has (debugfs must be mounted to see the new place).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import sysctl
from .._sysfs import read_int
from ..errors import FeatureUnavailable, InvalidArgument

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


def balancing(sys_root: str = "/sys", proc_root: str = "/proc") -> Balancing:
    """Read the current mode and scan settings. Raises FeatureUnavailable without NUMA balancing."""
    try:
        mode = sysctl.read_int("kernel.numa_balancing", proc_root=proc_root)
    except FileNotFoundError:
        raise FeatureUnavailable("this kernel has no automatic NUMA balancing "
                                 "(CONFIG_NUMA_BALANCING, Linux 3.8+)",
                                 path=sysctl.path_of("kernel.numa_balancing", proc_root)) from None
    note = None
    for directory, prefix in ((f"{sys_root}/kernel/debug/sched/numa_balancing", ""),
                              (f"{proc_root}/sys/kernel", "numa_balancing_")):
        try:
            # Unpacked by name: Balancing's settings_path must not look like a fifth value.
            delay, period_min, period_max, size_mb = (read_int(f"{directory}/{prefix}{name}")
                                                      for name in _SCAN)
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
    if isinstance(mode, bool):
        mode = int(mode)
    if not isinstance(mode, int) or not 0 <= int(mode) <= 3:
        raise InvalidArgument(f"numa balancing mode must be 0-3 (or a BalancingMode), not {mode!r}")
    previous = BalancingMode(sysctl.read_int("kernel.numa_balancing", proc_root=proc_root))
    sysctl.write("kernel.numa_balancing", int(mode), proc_root=proc_root)
    return previous
