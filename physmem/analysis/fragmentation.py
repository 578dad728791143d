"""How fragmented free memory is, per zone: what a 2 MiB or 1 GiB allocation could get now.

Block counts per order come from /proc/buddyinfo (readable by anyone), the split by migrate
type from /proc/pagetypeinfo (root on Linux 5.6+). Adjacent free blocks form longer runs
than any one block; those runs, and so the 1 GiB answers, come from /proc/kpageflags (root);
without it they are ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import addressing, proc
from .._args import as_bool, as_int
from .._kpfcore import _threads
from ..errors import InvalidArgument, PermissionDenied
from .physmap import free_runs, zone_spans

__all__ = ["ZoneFragmentation", "zone_fragmentation"]

MIB2 = 2 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class ZoneFragmentation:
    """Free memory of one zone and how much of it comes in large pieces (sizes in pages)."""

    node: int
    zone: str
    page_size: int
    free_pages: int
    free_blocks: tuple[int, ...]                         # buddyinfo: blocks per order
    by_type: dict[str, tuple[int, ...]] | None           # pagetypeinfo: type -> blocks per order
    largest_block_pages: int                             # 2**(highest order with a free block)
    share_2m: float                                      # free pages in blocks >= 2 MiB / free
    available_2m: int                                    # 2 MiB pages the free blocks hold
    largest_run_pages: int | None                        # kpageflags: adjacent free pages
    share_1g: float | None                               # free pages in runs >= 1 GiB / free
    available_1g: int | None                             # 1 GiB-aligned fully free windows

    def as_json(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["free_blocks"] = list(self.free_blocks)
        if self.by_type is not None:
            d["by_type"] = {k: list(v) for k, v in self.by_type.items()}
        return d


def _order_of(size: int, page: int) -> int:
    return (size // page).bit_length() - 1


def zone_fragmentation(node: int | None = None, *, runs: bool = True,
                  proc_root: str = "/proc", threads: int | None = None) -> list[ZoneFragmentation]:
    """One record per zone with memory (of ``node``, or all nodes), in /proc/buddyinfo order;
    a node without memory has none, a node the kernel does not have is InvalidArgument.

    ``runs=False`` skips the kpageflags scan (the run and 1 GiB fields are then ``None``);
    so does a reader without the right to /proc/kpageflags or /proc/pagetypeinfo. The scan
    reads with ``threads`` threads at once (default: one per allowed CPU).
    """
    runs = as_bool(runs, "runs")
    _threads(threads)   # checked now, not only once the root-only scan starts
    if node is not None:
        node = as_int(node, "node", lo=0)
        # zoneinfo lists every node the kernel has, those without memory too.
        known = sorted({z.node for z in proc.zoneinfo(proc_root)})
        if node not in known:
            raise InvalidArgument(f"no NUMA node {node} (nodes: "
                                  f"{', '.join(map(str, known)) or 'none'})")
    page = addressing.page_size()
    o2 = _order_of(MIB2, page)
    g = GIB // page
    try:
        pti = proc.pagetypeinfo(proc_root)
    except PermissionDenied:
        pti = None
    run_rows: np.ndarray | None = None
    if runs:
        try:
            run_rows = free_runs(proc_root, threads=threads)
        except PermissionDenied:
            run_rows = None
    spans = {(z.node, z.zone): z for z in zone_spans(proc_root)}
    out = []
    for b in proc.buddyinfo(proc_root):
        if node is not None and b.node != node:
            continue
        free = b.free_pages
        big = sum(n << k for k, n in enumerate(b.free) if k >= o2)
        top = max((k for k, n in enumerate(b.free) if n), default=-1)
        by_type = None
        if pti is not None:
            by_type = {t: v for (n_, z_, t), v in pti.free.items() if (n_, z_) == (b.node, b.zone)}
        largest_run = share_1g = avail_1g = None
        span = spans.get((b.node, b.zone))
        if run_rows is not None and span is not None:
            s = np.clip(run_rows[:, 0], span.start_pfn, span.end_pfn)
            e = np.clip(run_rows[:, 0] + run_rows[:, 1], span.start_pfn, span.end_pfn)
            lengths = e - s
            largest_run = int(lengths.max(initial=0))
            # Runs and buddyinfo are read moments apart: keep the share a share.
            share_1g = min(1.0, float(lengths[lengths >= g].sum()) / free) if free else 0.0
            avail_1g = int(np.maximum(e // g - (s + g - 1) // g, 0).sum())
        out.append(ZoneFragmentation(
            b.node, b.zone, page, free, tuple(b.free), by_type,
            (1 << top) if top >= 0 else 0, big / free if free else 0.0,
            sum(n << (k - o2) for k, n in enumerate(b.free) if k >= o2),
            largest_run, share_1g, avail_1g))
    return out
