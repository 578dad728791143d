"""Memory overcommit: the policy, the commit limit (reported and recomputed) and headroom.

Under policy NEVER (vm.overcommit_memory=2) the kernel refuses allocations once
``Committed_AS`` would pass ``CommitLimit``, which mm/util.c computes as
``(RAM - hugetlb) * overcommit_ratio / 100 + swap`` or, if vm.overcommit_kbytes is set,
``overcommit_kbytes + swap``. Nothing here writes unless a ``set_*`` function is called.
"""
from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass
from typing import Literal

from . import sysctl
from ._args import as_choice, as_enum, as_nonneg, as_positive
from .errors import InvalidArgument

__all__ = ["OvercommitPolicy", "Overcommit", "current", "commit_limit", "needed_for_headroom",
           "set_policy", "set_headroom"]


class OvercommitPolicy(enum.IntEnum):
    """vm.overcommit_memory."""

    HEURISTIC = 0  # refuse only obvious overcommits
    ALWAYS = 1  # never refuse
    NEVER = 2  # strict accounting against CommitLimit


@dataclass(frozen=True)
class Overcommit:
    """Sizes in bytes. ``headroom`` is what may still be committed (enforced only under NEVER)."""

    policy: OvercommitPolicy
    ratio: int
    kbytes: int
    commit_limit: int  # CommitLimit as /proc/meminfo reports it
    commit_limit_computed: int  # the same from MemTotal, hugetlb, swap and the sysctls
    committed_as: int
    mem_total: int
    hugetlb: int
    swap_total: int

    @property
    def headroom(self) -> int:
        return self.commit_limit - self.committed_as

    @property
    def enforced(self) -> bool:
        return self.policy == OvercommitPolicy.NEVER


def commit_limit(mem_total: int, hugetlb: int, swap_total: int, *, ratio: int = 50,
                 kbytes: int = 0, page_size: int | None = None) -> int:
    """The kernel's vm_commit_limit() in bytes, rounded in pages as the kernel does."""
    mem_total, hugetlb, swap_total, ratio, kbytes = (
        as_nonneg(v, name) for v, name in ((mem_total, "mem_total"), (hugetlb, "hugetlb"),
                                           (swap_total, "swap_total"), (ratio, "ratio"),
                                           (kbytes, "kbytes")))
    page = os.sysconf("SC_PAGE_SIZE") if page_size is None else as_positive(page_size, "page_size")
    if kbytes:
        allowed = kbytes * 1024 // page
    else:
        allowed = (mem_total // page - hugetlb // page) * ratio // 100
    return (allowed + swap_total // page) * page


def current(proc_root: str = "/proc") -> Overcommit:
    """Current policy, settings and accounting."""
    from .proc import meminfo

    info = meminfo(proc_root=proc_root)
    ratio = sysctl.read_int("vm.overcommit_ratio", proc_root=proc_root)
    kbytes = sysctl.read_int("vm.overcommit_kbytes", proc_root=proc_root)
    # "Hugetlb:" (4.16+) counts every pool size; older kernels only show the default size.
    hugetlb = info.get("Hugetlb", info.get("HugePages_Total", 0) * info.get("Hugepagesize", 0))
    mem, swap = info["MemTotal"], info.get("SwapTotal", 0)
    return Overcommit(
        policy=OvercommitPolicy(sysctl.read_int("vm.overcommit_memory", proc_root=proc_root)),
        ratio=ratio, kbytes=kbytes, commit_limit=info["CommitLimit"],
        commit_limit_computed=commit_limit(mem, hugetlb, swap, ratio=ratio, kbytes=kbytes),
        committed_as=info["Committed_AS"], mem_total=mem, hugetlb=hugetlb, swap_total=swap,
    )


def needed_for_headroom(headroom: int, *, using: Literal["ratio", "kbytes"] = "ratio",
                        state: Overcommit | None = None, proc_root: str = "/proc") -> int:
    """The smallest vm.overcommit_ratio (or _kbytes) giving at least ``headroom`` bytes."""
    headroom = as_nonneg(headroom, "headroom")
    as_choice(using, "using", ("ratio", "kbytes"))
    s = state or current(proc_root)
    target = s.committed_as + headroom - s.swap_total
    if using == "kbytes":
        return max(1, math.ceil(target / 1024))  # 0 would mean "use the ratio"
    usable = s.mem_total - s.hugetlb
    if usable <= 0:
        raise InvalidArgument("all RAM is in hugetlb pools; no ratio can give headroom")
    # +1 page per 100 absorbs the kernel's rounding down in pages.
    page = os.sysconf("SC_PAGE_SIZE")
    return max(0, math.ceil((target + page) * 100 / usable))


def set_policy(policy: OvercommitPolicy | int, proc_root: str = "/proc") -> OvercommitPolicy:
    """Write vm.overcommit_memory; returns the previous policy."""
    new = as_enum(policy, OvercommitPolicy, "policy")  # True or 1.0 is not ALWAYS
    old = OvercommitPolicy(sysctl.read_int("vm.overcommit_memory", proc_root=proc_root))
    sysctl.write("vm.overcommit_memory", int(new), proc_root=proc_root)
    return old


def set_headroom(headroom: int, *, using: Literal["ratio", "kbytes"] = "ratio",
                 proc_root: str = "/proc") -> int:
    """Raise (or lower) the commit limit so ``headroom`` bytes can still be committed now.

    Writes vm.overcommit_ratio or vm.overcommit_kbytes (the kernel zeroes the other one)
    and returns the value written. Committed_AS moves, so this is a snapshot, not a promise.
    """
    value = needed_for_headroom(headroom, using=using, proc_root=proc_root)
    sysctl.write(f"vm.overcommit_{using}", value, proc_root=proc_root)
    return value
