"""DMA section: what on this machine can move DMA memory, and whether it can be pinned.

A page a device writes into must keep its frame. mlock does not ensure that: memory
offline and hot-unplug, compaction (of mlocked pages, unless
``vm.compact_unevictable_allowed`` is 0), NUMA migration (numad, ``migratepages``) and, since
Linux 7.0, the allocation of 1G hugepages (which may now migrate in-use 2M ones) all
move unpinned pages, hugetlb ones included. A long-term pin stops every one of them;
physmem pins through io_uring fixed buffers, which ``kernel.io_uring_disabled`` can forbid.
Each mover is a warning where pinning is impossible, information otherwise.
"""
from __future__ import annotations

import re

from .. import _sysfs, sysctl
from ..errors import PhysmemError
from ..findings import Finding, Severity
from ..hugepages.sizes import format_size
from .context import Context

__all__ = ["check"]

S = "dma"
# The first release with "page_alloc: allow migration of smaller hugepages during
# contig_alloc" (mainline 3bb64898f003): allocating a gigantic page may migrate in-use
# smaller hugetlb pages out of its way.
GIGANTIC_MIGRATES_SINCE = (7, 0)
_BLOCK = re.compile(r"memory(\d+)")
_AUTO_ONLINE = {
    "offline": "stays offline until someone onlines it",
    "online": "comes online by itself, in the zone the kernel picks",
    "online_kernel": "comes online by itself, in a kernel zone",
    "online_movable": "comes online by itself, in ZONE_MOVABLE: a pin moves pages out of it "
                      "first, and the memory may be unplugged again, moving unpinned pages",
}


def _pinning(ctx: Context) -> tuple[bool, list[Finding]]:
    """Whether a process can take a long-term pin here, and the finding saying so."""
    try:
        disabled = sysctl.read_int("kernel.io_uring_disabled", ctx.proc_root)
    except (PhysmemError, OSError) as exc:
        if not isinstance(exc, FileNotFoundError):
            return True, [Finding("dma.pinning_unreadable", S, Severity.WARNING,
                                  f"cannot read kernel.io_uring_disabled: {exc}")]
        return True, [Finding("dma.pinning_unknown", S, Severity.INFO,
                              "no kernel.io_uring_disabled (a kernel before 6.6, or one without "
                              "io_uring): DMA buffers can be pinned where io_uring is built in "
                              "(physmem.dma pin='auto' says why not otherwise)")]
    if disabled == 0:
        return True, [Finding("dma.pinning", S, Severity.INFO,
                              "io_uring is enabled (kernel.io_uring_disabled=0): DMA buffers "
                              "can be pinned, and pinned pages are moved by none of the below")]
    if disabled == 1:
        return True, [Finding("dma.pinning_restricted", S, Severity.WARNING,
                              "kernel.io_uring_disabled=1: only CAP_SYS_ADMIN and the group in "
                              "kernel.io_uring_group may use io_uring, so other users' DMA "
                              "buffers cannot be pinned and stay movable",
                              "sysctl -w kernel.io_uring_disabled=0")]
    return False, [Finding("dma.pinning_disabled", S, Severity.WARNING,
                           f"kernel.io_uring_disabled={disabled}: no process can pin DMA memory "
                           "through io_uring, so every mover below can move DMA buffers",
                           "sysctl -w kernel.io_uring_disabled=0")]


def _severity(pin_ok: bool) -> Severity:
    return Severity.INFO if pin_ok else Severity.WARNING


def _memory_blocks(ctx: Context, pin_ok: bool) -> list[Finding]:
    base = f"{ctx.sys_root}/devices/system/memory"
    if not _sysfs.is_dir(base):
        return [Finding("dma.no_memory_hotplug", S, Severity.INFO,
                        f"{base} is absent (no CONFIG_MEMORY_HOTPLUG): memory offline cannot "
                        "move DMA memory")]
    out = []
    raw = _sysfs.read_optional(f"{base}/block_size_bytes")   # hex, without 0x
    size = int(raw, 16) if raw and raw.strip() else 0
    online = removable = movable = 0
    for name in _sysfs.listdir(base):
        if not _BLOCK.fullmatch(name):
            continue
        state = _sysfs.read_optional(f"{base}/{name}/state")
        if state is None or state.strip() != b"online":
            continue
        online += 1
        if (_sysfs.read_optional(f"{base}/{name}/removable") or b"0").strip() == b"1":
            removable += 1
            zones = (_sysfs.read_optional(f"{base}/{name}/valid_zones") or b"").split()
            movable += zones == [b"Movable"]
    if removable:
        amount = f" of {format_size(size)}" if size else ""
        zone = (f", {movable} of them in ZONE_MOVABLE, which is there to be unplugged"
                if movable else "")
        out.append(Finding(
            "dma.memory_offline", S, _severity(pin_ok),
            f"{removable} of {online} online memory blocks{amount} may be taken offline{zone}: "
            "offlining a block (echo offline > .../memoryN/state, or a hot-unplug by "
            "virtio-mem, ACPI or CXL) migrates its unpinned pages, hugetlb ones included, "
            "and succeeds wherever every page of the block can move",
            None if pin_ok else "sysctl -w kernel.io_uring_disabled=0, then pin DMA buffers"))
    auto = _sysfs.read_optional(f"{base}/auto_online_blocks")
    if auto is not None:
        policy = auto.decode(errors="replace").strip()
        what = _AUTO_ONLINE.get(policy, f"comes online as '{policy}'")
        out.append(Finding("dma.auto_online_blocks", S, Severity.INFO,
                           f"hot-added memory {what} (auto_online_blocks={policy})"))
    return out


def _numad(ctx: Context, pin_ok: bool) -> list[Finding]:
    from ..proc import stat
    from ..proc.fds import pids

    running = []
    for pid in pids(ctx.proc_root):
        try:
            if stat(pid, ctx.proc_root).comm == "numad":
                running.append(pid)
        except (PhysmemError, OSError):
            continue   # gone meanwhile
    if not running:
        return []
    nodes = sum(1 for n in ctx.topology.nodes if n.has_memory)
    severity = Severity.WARNING if nodes > 1 or not pin_ok else Severity.INFO
    return [Finding("dma.numad", S, severity,
                    f"numad is running (pid {', '.join(map(str, running))}): it migrates "
                    "processes' memory between NUMA nodes, unpinned DMA buffers included"
                    + (" (one memory node: it has nowhere to move them)" if nodes == 1 else ""),
                    "pin DMA buffers, or exclude their processes in numad's configuration")]


def _compaction(ctx: Context, pin_ok: bool) -> list[Finding]:
    try:
        allowed = sysctl.read_int("vm.compact_unevictable_allowed", ctx.proc_root)
    except FileNotFoundError:
        return []
    if not allowed:
        return [Finding("dma.compaction_spares_mlocked", S, Severity.INFO,
                        "vm.compact_unevictable_allowed=0: compaction leaves mlocked pages "
                        "where they are")]
    return [Finding("dma.compaction_moves_mlocked", S, _severity(pin_ok),
                    "vm.compact_unevictable_allowed=1: compaction migrates mlocked pages, so "
                    "mlock alone does not keep a DMA buffer in place",
                    "pin DMA buffers; or sysctl -w vm.compact_unevictable_allowed=0")]


def _kernel(ctx: Context) -> tuple[int, int] | None:
    try:
        release = sysctl.read("kernel.osrelease", ctx.proc_root)
    except (PhysmemError, OSError):
        return None
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _gigantic(ctx: Context, pin_ok: bool) -> list[Finding]:
    version = _kernel(ctx)
    if version is None:
        return []
    shown = f"{version[0]}.{version[1]}"
    since = f"{GIGANTIC_MIGRATES_SINCE[0]}.{GIGANTIC_MIGRATES_SINCE[1]}"
    if version < GIGANTIC_MIGRATES_SINCE:
        return [Finding("dma.gigantic_allocation_spares_hugetlb", S, Severity.INFO,
                        f"Linux {shown} does not migrate in-use 2M hugetlb pages to make "
                        f"room for a 1G page (kernels since {since} do)")]
    return [Finding("dma.gigantic_allocation_moves_hugetlb", S, _severity(pin_ok),
                    f"Linux {shown} migrates in-use 2M hugetlb pages out of the way when it "
                    "allocates a 1G page (growing the 1G pool, or physmem's reserve=True "
                    "demoting one): unpinned 2M DMA buffers can move",
                    "pin DMA buffers")]


def check(ctx: Context) -> list[Finding]:
    pin_ok, out = _pinning(ctx)
    for part, name in ((_memory_blocks, "memory_blocks"), (_numad, "numad"),
                       (_compaction, "compaction"), (_gigantic, "kernel")):
        try:
            out.extend(part(ctx, pin_ok))
        except (PhysmemError, OSError) as exc:
            out.append(Finding(f"dma.{name}_unreadable", S, Severity.WARNING,
                               f"cannot check {name.replace('_', ' ')}: {exc}"))
    return out
