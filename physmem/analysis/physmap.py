"""A map of all physical memory: every frame classified from /proc/kpageflags, per cell.

``classify(flags)`` turns kpageflags values into :class:`PageClass` codes; ``cell_map()``
scans every frame in bounded chunks and counts the classes per cell (a pageblock, 2 MiB,
by default), with the zones of /proc/zoneinfo and the RAM ranges of /proc/iomem beside it.

Free memory. Current kernels set KPF_BUDDY on every page of a free buddy block (the tails
through ``is_free_buddy_page()``); older ones set it on the block's first page only and the
rest read as flags 0. ``cell_map`` tells the two apart by comparing the BUDDY pages it saw
with buddyinfo (pages in free blocks vs number of free blocks). In head-only mode a head is
extended over the flag-0 pages after it, up to the largest naturally aligned block (at most
the zone's top order) that they fill: an upper bound, since an allocated page with no flags
looks the same as a free tail. Free pages on the per-CPU lists carry no flag on any kernel
and count as ``NOFLAGS``.

Holes are frames outside "System RAM" in /proc/iomem (or flagged NOPAGE). ``UNMANAGED`` is
memory a zone has present but has not given to the allocator yet (deferred struct page
initialisation): the flag-0 whole cells at a zone's top, at most ``present - managed`` minus
the zone's reserved frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .. import addressing, proc
from .._args import as_multiple
from .._runs import extend_free_heads, runs_of
from .._syntax import format_size
from ..errors import InvalidArgument
from ..kpageflags import KPF, KPageFlags, read_range
from ..pagemap import PageMap
from .classes import CLASS_INFO, N_CLASSES, PageClass

__all__ = ["PageClass", "CLASS_INFO", "CellMap", "ZoneSpan", "classify", "cell_map",
           "free_mask", "free_runs", "ram_ranges", "zone_spans", "process_pfns", "tails_marked",
           "runs_of", "unmanaged_start"]


_FILE_BITS = int(KPF.LRU | KPF.MMAP | KPF.UPTODATE | KPF.DIRTY | KPF.WRITEBACK | KPF.SWAPCACHE
                 | KPF.UNEVICTABLE | KPF.MAPPEDTODISK | KPF.PRIVATE)


def classify(flags: np.ndarray) -> np.ndarray:
    """One :class:`PageClass` code (uint8) per kpageflags value, by the first rule that fits.

    NOPAGE -> HOLE; HUGE -> HUGETLB (pool pages too); BUDDY -> FREE; SLAB; PGTABLE;
    RESERVED; ANON (KSM and anonymous THP included) -> ANON; any page-cache bit (LRU, MMAP,
    UPTODATE, DIRTY, ...) -> FILE, shmem included; 0 -> NOFLAGS; anything else -> OTHER.
    """
    f = np.asarray(flags).view(np.int64) if np.asarray(flags).dtype == np.uint64 else np.asarray(flags, dtype=np.int64)
    out = np.full(f.shape, PageClass.OTHER, dtype=np.uint8)
    out[f == 0] = PageClass.NOFLAGS
    # Assign from the weakest rule to the strongest so the strongest overwrites.
    for bits, cls in ((_FILE_BITS, PageClass.FILE), (int(KPF.ANON), PageClass.ANON),
                      (int(KPF.RESERVED), PageClass.RESERVED), (int(KPF.PGTABLE), PageClass.PGTABLE),
                      (int(KPF.SLAB), PageClass.SLAB), (int(KPF.BUDDY), PageClass.FREE),
                      (int(KPF.HUGE), PageClass.HUGETLB), (int(KPF.NOPAGE), PageClass.HOLE)):
        out[(f & bits) != 0] = cls
    return out


def free_mask(flags: np.ndarray, first_pfn: int, *, tails: bool, max_order: int) -> np.ndarray:
    """Which frames are in a free buddy block. ``flags`` must start and end on 2**max_order
    boundaries (a block never crosses one) except at the end of memory."""
    f = np.asarray(flags, dtype=np.int64)
    free: np.ndarray = (f & int(KPF.BUDDY)) != 0
    if tails:
        return free
    return extend_free_heads(f, first_pfn, int(KPF.BUDDY), max_order)


class ZoneSpan:
    """A zone's PFN range from /proc/zoneinfo: [start_pfn, end_pfn)."""

    __slots__ = ("node", "zone", "start_pfn", "end_pfn", "present", "managed")

    def __init__(self, node: int, zone: str, start_pfn: int, end_pfn: int, present: int,
                 managed: int) -> None:
        self.node, self.zone, self.start_pfn, self.end_pfn = node, zone, start_pfn, end_pfn
        self.present, self.managed = present, managed

    def __repr__(self) -> str:
        return f"ZoneSpan(node={self.node}, zone={self.zone!r}, pfns={self.start_pfn:#x}-{self.end_pfn:#x})"

    def _asdict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


def zone_spans(proc_root: str = "/proc") -> list[ZoneSpan]:
    """Non-empty zones with their PFN span (kernels before 4.13 print no start_pfn: skipped)."""
    return [ZoneSpan(z.node, z.zone, z.start_pfn, z.start_pfn + z.spanned, z.present, z.managed)
            for z in proc.zoneinfo(proc_root) if z.spanned and z.start_pfn is not None]


def ram_ranges(proc_root: str = "/proc") -> np.ndarray:
    """Top-level "System RAM" ranges of /proc/iomem as (start_pfn, end_pfn) rows.

    Unprivileged readers see every address as 0; then nothing is known and an empty array
    comes back (callers treat every frame as RAM).
    """
    shift = addressing.page_shift()
    rows = [(r.start >> shift, r.end >> shift) for r in proc.iomem(proc_root)
            if r.depth == 0 and r.name == "System RAM" and r.end > 1]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def tails_marked(buddy_pages: int, proc_root: str = "/proc") -> bool:
    """Whether this kernel flags every page of a free block BUDDY (not only the head).

    ``buddy_pages`` counted over all memory lands near buddyinfo's free pages when tails are
    marked, near its number of free blocks when they are not.
    """
    info = proc.buddyinfo(proc_root)
    pages = sum(b.free_pages for b in info)
    blocks = sum(sum(b.free) for b in info)
    return abs(buddy_pages - pages) <= abs(buddy_pages - blocks)


def process_pfns(pid: int | None, proc_root: str = "/proc") -> np.ndarray:
    """Sorted unique PFNs of the pages a process has present (hugepages counted per base page)."""
    chunk = 1 << 16
    page = addressing.page_size()
    out = []
    with PageMap(pid, proc_root=proc_root) as pm:
        for vma in proc.maps(pid, proc_root=proc_root):
            if vma.path == "[vsyscall]":
                continue
            for addr in range(vma.start, vma.end, chunk * page):
                entries = pm.read(addr, min(chunk * page, vma.end - addr))
                present = entries.present
                if present.any():
                    out.append(entries.pfn[present])
    if not out:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(out).astype(np.int64))


@dataclass(frozen=True, eq=False)
class CellMap:
    """Class counts per cell of physical memory; cell ``i`` covers PFNs
    [i * cell_pages, (i + 1) * cell_pages)."""

    cell_bytes: int
    page_size: int
    frames: int                 # frames scanned (the kpageflags file's length)
    counts: np.ndarray          # (cells, N_CLASSES) uint32 pages per class
    zones: tuple[ZoneSpan, ...]
    unmanaged: np.ndarray       # (n, 2) PFN ranges counted UNMANAGED
    free_tails_marked: bool
    pid: int | None = None
    pid_pages: np.ndarray | None = None   # per cell: frames the process has there

    @property
    def cell_pages(self) -> int:
        return self.cell_bytes // self.page_size

    @property
    def dominant(self) -> np.ndarray:
        """Per cell, the class with the most pages (lowest code on a tie)."""
        dominant: np.ndarray = self.counts.argmax(axis=1).astype(np.uint8)
        return dominant

    def pages_per_class(self) -> np.ndarray:
        pages: np.ndarray = self.counts.sum(axis=0, dtype=np.int64)
        return pages

    def cells_per_class(self) -> np.ndarray:
        return np.bincount(self.dominant, minlength=N_CLASSES)


def _parse_cell(cell: int, page: int, frames: int) -> int:
    """Pages per cell: a whole number of pages, at most all of memory (one cell)."""
    cell = as_multiple(cell, "cell size", page, lo=1)  # memory is the real bound, below
    if cell // page > frames:
        # A larger cell is one cell with most of it past the end of memory: refuse it
        # rather than draw a map of one mostly empty cell.
        raise InvalidArgument(
            f"cell size {format_size(cell)} is larger than all physical memory "
            f"({frames} frames of {page} bytes = {format_size(frames * page)}): "
            f"give at most {format_size(frames * page)}")
    return cell // page


def cell_map(cell: int = 2 << 20, *, pid: int | None = None, flags: np.ndarray | None = None,
             proc_root: str = "/proc",
             progress: Callable[[int, int], None] | None = None,
             threads: int | None = None) -> CellMap:
    """Scan all physical memory and count page classes per ``cell`` bytes.

    ``flags`` takes an already-read kpageflags array starting at PFN 0 instead of scanning
    (a snapshot); ``pid`` also records which cells hold that process's pages;
    ``progress(frames_done, frames_total)`` is called as the classification advances.
    The scan reads kpageflags with ``threads`` threads at once (default: one per CPU).
    """
    page = addressing.page_size()
    zones = tuple(zone_spans(proc_root))
    if flags is not None:
        span = len(flags)
    elif zones:
        # The zones' end, which anyone may read: a wrong cell is refused before the root-only
        # kpageflags is opened, so the refusal does not depend on who asks.
        span = max(z.end_pfn for z in zones)
    else:
        with KPageFlags(proc_root=proc_root) as kf:
            span = kf.max_pfn()
    cp = _parse_cell(cell, page, span)
    # Before the scan too: a process that is not there (or not ours to read) is found at once.
    pfns = None if pid is None else process_pfns(pid, proc_root)
    max_order = max((len(b.free) - 1 for b in proc.buddyinfo(proc_root)), default=10)
    ram = ram_ranges(proc_root)
    # Chunks hold whole top-order blocks, so no free block spans two; a cell may (its
    # counts add up over the chunks), which keeps memory bounded whatever the cell size.
    chunk = max(1 << max_order, (1 << 16) >> max_order << max_order)

    if flags is None:
        # One parallel read; a rescan for head-only kernels reuses it.
        with KPageFlags(proc_root=proc_root) as kf:
            flags = read_range(kf, threads=threads)

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        f = np.asarray(flags)
        for s in range(0, len(f), chunk):
            yield s, f[s:s + chunk]
            if progress is not None:
                progress(min(len(f), s + chunk), len(f))

    # Assume marked tails (current kernels) and scan again only if BUDDY pages turn out to
    # be heads: memory stays bounded by one chunk either way.
    counts, buddy, frames, reserved, last_used = _scan(chunks(), zones, ram, cp, None)
    tails = tails_marked(buddy, proc_root)
    if not tails:
        counts, buddy, frames, reserved, last_used = _scan(chunks(), zones, ram, cp, max_order)
    unmanaged = _mark_unmanaged(counts, zones, reserved, last_used, cp)
    pid_pages = None
    if pfns is not None:
        pid_pages = np.bincount(pfns // cp, minlength=len(counts))[:len(counts)].astype(np.uint32)
    return CellMap(cp * page, page, frames, counts, zones, unmanaged, tails, pid, pid_pages)


def _scan(chunks: Iterator[tuple[int, np.ndarray]], zones: tuple[ZoneSpan, ...], ram: np.ndarray,
          cp: int, heads_max_order: int | None
          ) -> tuple[np.ndarray, int, int, np.ndarray, np.ndarray]:
    pieces: list[tuple[int, np.ndarray]] = []
    buddy = frames = 0
    reserved = np.zeros(len(zones), dtype=np.int64)
    last_used = np.array([z.start_pfn - 1 for z in zones], dtype=np.int64)
    for start, raw in chunks:
        f = raw.view(np.int64) if raw.dtype == np.uint64 else np.asarray(raw, dtype=np.int64)
        n = len(f)
        frames = start + n
        cls = classify(f)
        buddy += int((cls == PageClass.FREE).sum())
        if heads_max_order is not None:
            extra = free_mask(f, start, tails=False, max_order=heads_max_order)
            cls[extra & (cls == PageClass.NOFLAGS)] = PageClass.FREE
        if ram.size:
            cls[~_in_ranges(start, n, ram)] = PageClass.HOLE
        for i, z in enumerate(zones):
            lo, hi = max(z.start_pfn, start), min(z.end_pfn, start + n)
            if lo >= hi:
                continue
            seg = cls[lo - start:hi - start]
            reserved[i] += int((seg == PageClass.RESERVED).sum())
            used = np.flatnonzero((seg != PageClass.NOFLAGS) & (seg != PageClass.HOLE))
            if used.size:
                last_used[i] = max(last_used[i], lo + int(used[-1]))
        pieces.append((start // cp, _count_cells(cls, start, cp)))
    counts = np.zeros((-(-frames // cp), N_CLASSES), np.uint32)
    for first, piece in pieces:
        counts[first:first + len(piece)] += piece
    return counts, buddy, frames, reserved, last_used


def _in_ranges(start: int, n: int, ranges: np.ndarray) -> np.ndarray:
    i = int(np.searchsorted(ranges[:, 0], start, side="right")) - 1
    if i >= 0 and start + n <= ranges[i, 1]:
        return np.ones(n, dtype=bool)   # the usual case: a chunk inside one RAM range
    pfns = np.arange(start, start + n, dtype=np.int64)
    idx = np.searchsorted(ranges[:, 0], pfns, side="right") - 1
    ok = idx >= 0
    ok[ok] = pfns[ok] < ranges[idx[ok], 1]
    return ok


def free_runs(proc_root: str = "/proc", *, flags: np.ndarray | None = None,
              threads: int | None = None) -> np.ndarray:
    """Runs of adjacent free frames over all memory as (start_pfn, pages) rows, in PFN order.

    Free as :func:`cell_map` decides it (BUDDY pages; heads extended on older kernels).
    Adjacent free blocks form one run: what a contiguous allocation could use. ``flags``
    takes an already-read kpageflags array from PFN 0; otherwise the file is read with
    ``threads`` threads at once.
    """
    max_order = max((len(b.free) - 1 for b in proc.buddyinfo(proc_root)), default=10)
    chunk = max(1 << max_order, (1 << 16) >> max_order << max_order)
    if flags is None:
        with KPageFlags(proc_root=proc_root) as kf:
            flags = read_range(kf, threads=threads)
    whole = np.asarray(flags).view(np.int64)

    buddy_mask = (whole & int(KPF.BUDDY)) != 0
    if tails_marked(int(buddy_mask.sum()), proc_root):
        return runs_of(buddy_mask)
    # Head-only kernel: extend each head over its flag-0 tails, chunk by chunk (a block
    # never crosses a 2**max_order boundary, and chunks start on one).
    free = np.concatenate([free_mask(whole[s:s + chunk], s, tails=False, max_order=max_order)
                           for s in range(0, len(whole), chunk)]) if len(whole) else buddy_mask
    return runs_of(free)


def _count_cells(cls: np.ndarray, start: int, cp: int) -> np.ndarray:
    """Pages per class of the cells a chunk touches, the first being cell ``start // cp``."""
    n = len(cls)
    skip = start % cp
    cells = -(-(skip + n) // cp)
    key = ((np.arange(n, dtype=np.int64) + skip) // cp) * N_CLASSES + cls
    return np.bincount(key, minlength=cells * N_CLASSES).reshape(cells, N_CLASSES).astype(np.uint32)


def unmanaged_start(zone: ZoneSpan, reserved: int, last_used: int) -> int | None:
    """First PFN of the zone's not-yet-initialised top (deferred struct page init), or None.

    Frames the kernel has not handed to the allocator read as flags 0, like many allocated
    kernel pages; the rule keeps to what zoneinfo accounts for: at most ``present - managed``
    minus the zone's reserved frames, and only above the last frame in use (``last_used``).
    """
    budget = zone.present - zone.managed - reserved
    if budget <= 0:
        return None
    lo = max(last_used + 1, zone.end_pfn - budget)
    return lo if lo < zone.end_pfn else None


def _mark_unmanaged(counts: np.ndarray, zones: tuple[ZoneSpan, ...], reserved: np.ndarray,
                    last_used: np.ndarray, cp: int) -> np.ndarray:
    rows = []
    for i, z in enumerate(zones):
        start = unmanaged_start(z, int(reserved[i]), int(last_used[i]))
        if start is None:
            continue
        lo = start
        c_lo, c_hi = -(-lo // cp), min(z.end_pfn // cp, len(counts))
        if c_lo >= c_hi:
            continue
        block = counts[c_lo:c_hi]
        block[:, PageClass.UNMANAGED] += block[:, PageClass.NOFLAGS]
        block[:, PageClass.NOFLAGS] = 0
        rows.append((c_lo * cp, c_hi * cp))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)
