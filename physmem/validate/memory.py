"""Memory section: THP mode, overcommit headroom, hugepage pools, gigantic pages."""
from __future__ import annotations

import re

from .. import overcommit
from .._sysfs import read_optional
from ..errors import PhysmemError
from .._hugepools import pools
from ..hugepages.sizes import format_size
from .context import Context
from ..findings import Finding, Severity

__all__ = ["check"]

S = "memory"
HEADROOM_MIN = 1 << 30  # below 1 GiB of commit headroom a strict machine is close to ENOMEM


def _thp(ctx: Context) -> list[Finding]:
    base = f"{ctx.sys_root}/kernel/mm/transparent_hugepage"
    enabled = read_optional(f"{base}/enabled")
    if enabled is None:
        return [Finding("memory.thp_unavailable", S, Severity.INFO,
                        "transparent huge pages are not configured in this kernel")]
    m = re.search(rb"\[(\w+)\]", enabled)
    mode = m.group(1).decode() if m else enabled.decode(errors="replace")
    out = []
    if mode == "always":
        out.append(Finding("memory.thp_always", S, Severity.WARNING,
                           "THP is 'always': khugepaged and fault-time compaction can stall "
                           "latency-critical threads; use hugetlb pages for DMA buffers",
                           f"echo madvise > {base}/enabled (boot: transparent_hugepage=madvise)"))
    else:
        out.append(Finding("memory.thp_mode", S, Severity.INFO, f"THP mode is '{mode}'"))
    defrag = read_optional(f"{base}/defrag")
    m = re.search(rb"\[(\w+)\]", defrag or b"")
    if m and m.group(1) == b"always":
        out.append(Finding("memory.thp_defrag_always", S, Severity.WARNING,
                           "THP defrag is 'always': page faults may block in direct compaction",
                           f"echo defer+madvise > {base}/defrag"))
    return out


def _overcommit(ctx: Context) -> list[Finding]:
    s = overcommit.current(ctx.proc_root)
    out = []
    if s.commit_limit != s.commit_limit_computed:
        out.append(Finding("memory.commit_limit_mismatch", S, Severity.INFO,
                           f"CommitLimit {s.commit_limit} B differs from (RAM - hugetlb) x ratio + "
                           f"swap = {s.commit_limit_computed} B (memory hot-plugged or pools changed "
                           "since the kernel last recomputed it)"))
    if not s.enforced:
        out.append(Finding("memory.overcommit_policy", S, Severity.INFO,
                           f"overcommit policy {s.policy.name.lower()}: the commit limit is not "
                           "enforced; allocations fail only when memory really runs out"))
        return out
    if s.headroom < HEADROOM_MIN:
        ratio = overcommit.needed_for_headroom(HEADROOM_MIN, state=s)
        out.append(Finding("memory.overcommit_headroom", S,
                           Severity.ERROR if s.headroom <= 0 else Severity.WARNING,
                           f"strict overcommit leaves {s.headroom} B to commit "
                           f"(CommitLimit {s.commit_limit}, Committed_AS {s.committed_as}): "
                           "mmap and fork will fail with ENOMEM",
                           f"sysctl -w vm.overcommit_ratio={ratio}"))
    else:
        out.append(Finding("memory.overcommit_headroom_ok", S, Severity.INFO,
                           f"strict overcommit, {s.headroom} B headroom"))
    return out


def _pools(ctx: Context) -> list[Finding]:
    out = []
    everything = pools(ctx.sys_root, ctx.proc_root)
    glob = [p for p in everything if p.node is None]
    if not glob:
        return [Finding("memory.hugetlb_unavailable", S, Severity.WARNING,
                        "this kernel offers no huge page sizes (no hugetlbfs)",
                        "enable CONFIG_HUGETLBFS")]
    if not any(p.total for p in glob):
        smallest = glob[0]
        out.append(Finding("memory.no_hugepages", S, Severity.INFO,
                           "no huge pages are reserved; DMA buffers will have to reserve them first",
                           f"echo 512 > {ctx.sys_root}/kernel/mm/hugepages/hugepages-"
                           f"{smallest.size // 1024}kB/nr_hugepages"))
    for p in glob:
        if p.total and not p.free:
            out.append(Finding("memory.hugepages_exhausted", S, Severity.WARNING,
                               f"all {p.total} {format_size(p.size)} huge pages are in use",
                               f"echo {p.total * 2} > {ctx.sys_root}/kernel/mm/hugepages/"
                               f"hugepages-{p.size // 1024}kB/nr_hugepages"))
    cmd = ctx.topology.cmdline
    requested = {}
    for req in (cmd.hugepages if cmd else ()):
        size = req.size or (cmd.default_hugepagesz if cmd else None) or glob[0].size
        requested[size] = req.count
    for p in glob:
        if p.gigantic and not p.total and p.size not in requested:
            out.append(Finding("memory.gigantic_not_reserved", S, Severity.INFO,
                               f"{format_size(p.size)} pages are supported but none are reserved; "
                               "after boot, memory is usually too fragmented to find them",
                               f"boot with hugepagesz={format_size(p.size)} hugepages=N"))
        want = requested.get(p.size)
        if want and p.total < want:
            out.append(Finding("memory.boot_reservation_short", S, Severity.WARNING,
                               f"the command line asks for {want} {format_size(p.size)} pages, "
                               f"the pool has {p.total}",
                               f"lower hugepages= for hugepagesz={format_size(p.size)} or add RAM"))
    if cmd and cmd.default_hugepagesz and cmd.default_hugepagesz not in {p.size for p in glob}:
        out.append(Finding("memory.default_hugepagesz_unsupported", S, Severity.WARNING,
                           f"default_hugepagesz={format_size(cmd.default_hugepagesz)} is not a "
                           "size this kernel offers; the kernel ignored it",
                           "default_hugepagesz=" + format_size(glob[0].size)))
    return out


def check(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    for part, name in ((_thp, "thp"), (_overcommit, "overcommit"), (_pools, "hugepages")):
        try:
            out.extend(part(ctx))
        except (PhysmemError, OSError) as exc:
            out.append(Finding(f"memory.{name}_unreadable", S, Severity.WARNING,
                               f"cannot check {name}: {exc}"))
    return out
