"""Will it fit? A forecast of the hugepages (and contiguous runs) this machine can give.

``forecast()`` reads /proc/kpageflags for the whole machine once (threads split it by PFN
range) and classes every naturally aligned block of each hugepage size, per node and zone:

* **free now** - every frame is in the buddy allocator (``KPF_BUDDY``; kernels since 4.x
  flag every page of a free block, not only its head);
* **in the pool** - the block is one free hugetlb page of exactly that size (located from
  kpageflags and kpagecount, never by faulting it);
* **after compaction** - every frame is free or one compaction can migrate: on an LRU list
  (anonymous or page cache), and, when /proc/sys/vm/compact_unevictable_allowed is 0, not
  mlocked/unevictable. Those holding only clean, unmapped page cache (``reclaimable``) the
  kernel frees by reclaim when it runs short, before compacting: for buddy-sized pages
  they count as obtainable now;
* **not yet initialised** - deferred struct page init: memory the zone spans but has not
  given to the allocator yet (its frames read as flags 0 at the zone's top). The kernel
  initialises it section by section when an ordinary allocation finds the zone short, so
  buddy-sized pages (2 MiB) can come from it; gigantic pages (1 GiB, allocated with
  alloc_contig_range) cannot until something else has made the kernel initialise it;
* **blocked** - at least one frame nothing will move: a hole or a zone boundary, reserved
  memory, slab, page tables, hugetlb pages, kernel allocations without flags, offline or
  poisoned frames, or LRU-less pages (pinned, isolated, in flight).

What kpageflags cannot show: a page's reference count. A page pinned for DMA (RDMA, vfio,
io_uring fixed buffers) keeps its LRU flag yet compaction skips it, so "after compaction"
is an upper bound. Free pages on the per-CPU lists carry no flag and count as kernel
allocations.

From the classes, per zone and size: pages the kernel could add to the hugetlb pool now
and after ``compact()`` (capped by the zone's free memory above its min watermark and
lowmem reserve, the same test the page allocator applies), and the longest physically
contiguous run those pages would form.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from .. import _sysfs, addressing, proc, sysctl
from .._args import as_iterable, as_nonneg, as_positive, is_int
from .._runs import runs_of
from .._syntax import parse_cpulist
from ..errors import InvalidArgument, PhysmemError
from .._hugepools import supported_sizes
from .._syntax import parse_size
from ..hugepages.sizes import format_size
from ..kpageflags import KPF, KPageCgroup, KPageCount, KPageFlags, default_threads, read_range
from .classes import (BLOCK_STATE_INFO, FIRST_BLOCKER, FRAME_INFO, N_FRAMES,
                      PAGE_CLASS_FRAME, BlockState, Frame)
from .physmap import (ZoneSpan, classify, free_mask, ram_ranges, tails_marked,
                      unmanaged_start, zone_spans)

__all__ = ["Frame", "BlockState", "BLOCK_STATE_INFO", "FRAME_INFO", "ZoneForecast",
           "BlockerFrame", "NearlyFree", "Verdict", "Forecast", "forecast", "frame_classes",
           "free_pool_pages", "longest_pool_run", "drain_per_cpu_lists", "per_cpu_free",
           "memory_node"]


_MLOCK_BITS = int(KPF.UNEVICTABLE | KPF.MLOCKED)
# A page cache page reclaim drops without writing or unmapping anything.
_NOT_CLEAN_CACHE = int(KPF.ANON | KPF.SWAPBACKED | KPF.MMAP | KPF.DIRTY | KPF.WRITEBACK
                       | KPF.UNEVICTABLE | KPF.MLOCKED | KPF.SWAPCACHE)


def frame_classes(flags: np.ndarray, *, unevictable_movable: bool = True) -> np.ndarray:
    """One :class:`Frame` code (uint8) per kpageflags value.

    physmap's :func:`~physmem.analysis.physmap.classify` first; then anonymous and page-cache
    frames count as movable only with ``KPF_LRU`` (compaction isolates pages from the LRU
    lists), clean unmapped page cache as reclaimable, mlocked ones only if
    ``unevictable_movable``; ``KPF_OFFLINE`` and ``KPF_HWPOISON`` frames block. Holes by /proc/iomem and the uninitialised zone tops are marked by
    :func:`forecast`, which knows the zones.
    """
    f = np.asarray(flags)
    f = f.view(np.int64) if f.dtype == np.uint64 else f.astype(np.int64, copy=False)
    fc: np.ndarray = PAGE_CLASS_FRAME[classify(f)]
    movable = fc == Frame.MOVABLE
    fc[movable & ((f & int(KPF.LRU)) == 0)] = Frame.UNMOVABLE
    fc[movable & ((f & int(KPF.LRU)) != 0) & ((f & _NOT_CLEAN_CACHE) == 0)] = Frame.RECLAIMABLE
    if not unevictable_movable:
        fc[movable & ((f & _MLOCK_BITS) != 0)] = Frame.UNEVICTABLE
    odd = (f & int(KPF.OFFLINE | KPF.HWPOISON)) != 0
    if odd.any():
        fc[odd & ((f & int(KPF.NOPAGE)) == 0)] = Frame.OFFLINE
    return fc


@dataclass(frozen=True)
class ZoneForecast:
    """One zone and one hugepage size: blocks per state and what the kernel could give.

    Block counts cover the naturally aligned blocks that start in the zone. ``new_now`` and
    ``new_after_compaction`` are pages the kernel could add to the pool; ``obtainable_*``
    adds the pool's free pages there (``pool``). Longest runs are bytes of adjacent pages.
    """

    node: int
    zone: str
    size: int
    page_size: int
    blocks: int
    free_now: int
    pool: int
    after_compaction: int
    uninitialised: int
    blocked: int
    reclaimable: int                    # of after_compaction: only clean page cache in them
    blockers: dict[str, int]            # blocker class -> blocked blocks it appears in
    blocker_frames: dict[str, int]      # blocker class -> frames of it in blocked blocks
    new_now: int
    new_after_compaction: int
    obtainable_now: int
    obtainable_after_compaction: int
    longest_run_now: int
    longest_run_after_compaction: int
    # [low, high] around the two estimates: what the kernel may give where user space cannot
    # know the state (free pages on the CPUs' lists, memory moving while the scan ran, how
    # much page cache the kernel reclaims, how well its own compaction does).
    obtainable_now_range: tuple[int, int] = (0, 0)
    obtainable_after_compaction_range: tuple[int, int] = (0, 0)
    per_cpu_blocks: int = 0     # blocked blocks counted free: their flag-less frames fit the
                                # pages on the CPUs' lists

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["obtainable_now_range"] = list(self.obtainable_now_range)
        d["obtainable_after_compaction_range"] = list(self.obtainable_after_compaction_range)
        return d


class BlockerFrame(NamedTuple):
    """A frame that keeps a nearly free block from being a hugepage."""

    pfn: int
    cls: str
    flags: int
    names: tuple[str, ...]
    mapcount: int | None
    cgroup_ino: int | None       # /proc/kpagecgroup: inode of the owning memory cgroup
    cgroup: str | None           # that cgroup's directory, where found


class NearlyFree(NamedTuple):
    """A blocked block with few blockers, and which frames they are."""

    size: int
    start_pfn: int
    node: int
    zone: str
    blockers: int
    frames: tuple[BlockerFrame, ...]

    def as_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["frames"] = [b._asdict() for b in self.frames]
        return d


@dataclass(frozen=True)
class Verdict:
    """The answer to a request: ``count`` pages of ``size`` bytes, or one contiguous buffer
    of ``size`` bytes (``contiguous``). ``verdict`` is ``now``, ``after-compaction`` or ``no``."""

    size: int
    count: int
    contiguous: bool
    obtainable_now: int
    obtainable_after_compaction: int
    verdict: str
    advice: str
    obtainable_now_range: tuple[int, int] = (0, 0)
    obtainable_after_compaction_range: tuple[int, int] = (0, 0)
    page_size: int = 0          # the hugepage size the figures count (for a buffer: the best)

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["obtainable_now_range"] = list(self.obtainable_now_range)
        d["obtainable_after_compaction_range"] = list(self.obtainable_after_compaction_range)
        return d


@dataclass(frozen=True, eq=False)
class Forecast:
    """The whole forecast; ``states[size]`` and ``blockers[size]`` hold one entry per aligned
    block of the machine (block ``i`` covers PFNs ``[i*n, (i+1)*n)``, ``n = size//page_size``)."""

    page_size: int
    sizes: tuple[int, ...]
    node: int | None
    zones: tuple[ZoneForecast, ...]
    nearly_free: tuple[NearlyFree, ...]
    spans: tuple[ZoneSpan, ...]
    states: dict[int, np.ndarray] = field(repr=False)
    blockers: dict[int, np.ndarray] = field(repr=False)
    reclaim_only: dict[int, np.ndarray] = field(repr=False)   # compactable by reclaim alone
    per_cpu: dict[int, np.ndarray] = field(repr=False)        # counted free: CPUs' lists
    block_zone: dict[int, np.ndarray] = field(repr=False)     # zone index per block, -1 none
    free_runs: np.ndarray = field(repr=False)                 # (start_pfn, pages) rows
    frames: int = 0
    pool_exact: bool = True
    unevictable_movable: bool = True
    frame_counts: dict[str, int] = field(default_factory=dict)
    frame_class: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8), repr=False)
    proc_root: str = "/proc"

    def explain(self, size: int | str, start_pfn: int, *, limit: int | None = None
                ) -> tuple[BlockerFrame, ...]:
        """The blocker frames of the ``size`` block starting at ``start_pfn``, as classed by
        the scan, with their flags, map counts and owning cgroups read now."""
        size = self._size(size)
        n = size // self.page_size
        start = as_nonneg(start_pfn, "start_pfn")
        if start % n or start + n > len(self.frame_class):
            raise InvalidArgument(f"start_pfn {start:#x} does not start a {format_size(size)} "
                                  f"block of this machine (multiples of {n:#x} below "
                                  f"{len(self.frame_class):#x})")
        idx = np.flatnonzero(self.frame_class[start:start + n] >= FIRST_BLOCKER) + start
        if limit is not None:
            idx = idx[:as_nonneg(limit, "limit")]
        with KPageFlags(proc_root=self.proc_root) as kf:
            flags = kf.read(idx) if len(idx) else np.empty(0, np.int64)
        return _describe_frames(idx, flags, self.frame_class, self.proc_root, dense=False)

    def rows(self, size: int) -> list[ZoneForecast]:
        return [z for z in self.zones if z.size == size]

    def totals(self, size: int | str) -> dict[str, Any]:
        """The zones' figures for ``size`` added up (ranges too), with the longest runs."""
        size = self._size(size)
        keys = ("blocks", "free_now", "pool", "after_compaction", "uninitialised", "blocked",
                "reclaimable", "new_now", "new_after_compaction", "obtainable_now",
                "obtainable_after_compaction", "per_cpu_blocks")
        rows = self.rows(size)
        out: dict[str, Any] = {k: sum(getattr(r, k) for r in rows) for k in keys}
        for k in ("obtainable_now_range", "obtainable_after_compaction_range"):
            out[k] = [sum(getattr(r, k)[0] for r in rows), sum(getattr(r, k)[1] for r in rows)]
        out["longest_run_now"] = self._longest(size, now=True)
        out["longest_run_after_compaction"] = self._longest(size, now=False)
        return out

    def _usable(self, size: int, now: bool) -> np.ndarray:
        st = self.states[size]
        ok: np.ndarray = (st == BlockState.FREE) | (st == BlockState.POOL) | self.per_cpu[size]
        if not now or _gigantic(size, self.page_size, self._max_order):
            ok |= st == BlockState.COMPACTABLE
        if not _gigantic(size, self.page_size, self._max_order):
            ok |= st == BlockState.UNINITIALISED
        if self.node is not None:
            ok &= self._node_mask(size)
        return ok

    @property
    def _max_order(self) -> int:
        return int(self.frame_counts.get("_max_order", 10))

    def _node_mask(self, size: int) -> np.ndarray:
        bz = self.block_zone[size]
        nodes = np.array([z.node for z in self.spans] + [-1], dtype=np.int64)
        mask: np.ndarray = nodes[bz] == self.node
        return mask

    def _longest(self, size: int, *, now: bool) -> int:
        runs = runs_of(self._usable(size, now))
        cap = self.totals_cap(size, now)
        return int(min(runs[:, 1].max(initial=0), cap)) * size

    def totals_cap(self, size: int, now: bool) -> int:
        rows = self.rows(size)
        return sum(r.obtainable_now if now else r.obtainable_after_compaction for r in rows)

    def want(self, count: int, size: int | str) -> Verdict:
        """Can ``count`` hugepages of ``size`` be had (pool pages included)?"""
        count = as_positive(count, "count")
        size = self._size(size)
        t = self.totals(size)
        now, after = t["obtainable_now"], t["obtainable_after_compaction"]
        verdict = "now" if now >= count else "after-compaction" if after >= count else "no"
        return Verdict(size, count, False, now, after, verdict,
                       self._advice(verdict, f"{count} pages of {format_size(size)}", count,
                                    size),
                       (t["obtainable_now_range"][0], t["obtainable_now_range"][1]),
                       (t["obtainable_after_compaction_range"][0],
                        t["obtainable_after_compaction_range"][1]), size)

    def contiguous(self, nbytes: int | str) -> Verdict:
        """Can one physically contiguous buffer of ``nbytes`` be had from hugetlb pages?

        The obtainable figures count how many such buffers fit in the runs of adjacent
        pages, using the hugepage size that gives the most; the ranges scale those by the
        zones' ranges (a run never holds more pages than the zones can give).
        """
        nbytes = parse_size(nbytes, "size", positive=True)
        best: tuple[int, int] = (0, 0)
        best_size = self.sizes[0]
        ranges: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
        for size in self.sizes:
            need = -(-nbytes // size)
            fits = []
            spans = []
            t = self.totals(size)
            for now in (True, False):
                runs = runs_of(self._usable(size, now))
                cap = self.totals_cap(size, now)
                got = min(int((runs[:, 1] // need).sum()), cap // need)
                fits.append(got)
                lo, hi = t["obtainable_now_range" if now else "obtainable_after_compaction_range"]
                spans.append((min(got, lo // need), max(got, min(int((runs[:, 1] // need).sum()),
                                                               hi // need))))
            if (fits[0], fits[1]) > best:
                best, best_size = (fits[0], fits[1]), size
                ranges = (spans[0], spans[1])
        verdict = "now" if best[0] else "after-compaction" if best[1] else "no"
        pages = -(-nbytes // best_size)
        return Verdict(nbytes, 1, True, best[0], best[1], verdict,
                       self._advice(verdict, f"a {format_size(nbytes)} contiguous buffer",
                                    pages, best_size), ranges[0], ranges[1], best_size)

    def _size(self, size: int | str) -> int:
        s = parse_size(size, "size", positive=True)
        if s not in self.sizes:
            raise InvalidArgument(f"size {format_size(s)} is not a hugepage size of this "
                                  f"forecast ({', '.join(format_size(x) for x in self.sizes)})")
        return s

    def _advice(self, verdict: str, what: str, pages: int, size: int) -> str:
        reserve = f"physmem hugepages reserve {pages} --size {format_size(size)}"
        if verdict == "now":
            return f"{what}: obtainable now ({reserve})"
        if verdict == "after-compaction":
            return (f"{what}: obtainable after compaction: echo 1 > /proc/sys/vm/compact_memory "
                    f"(physmem.hugepages.compact()), then {reserve}")
        ram = (self.frames - self.frame_counts.get(FRAME_INFO[Frame.HOLE][0], 0)) * self.page_size
        if pages * size > ram:
            return (f"{what}: not on this machine, whose memory is {ram / 2 ** 30:.1f} GiB "
                    "in all")
        return (f"{what}: not without a reboot: boot with hugepagesz={format_size(size)} "
                f"hugepages={pages} on the kernel command line")

    def as_json(self) -> dict[str, Any]:
        return {
            "page_size": self.page_size, "frames": self.frames, "node": self.node,
            "sizes": list(self.sizes), "pool_exact": self.pool_exact,
            "compact_unevictable_allowed": self.unevictable_movable,
            "zones": [z.as_json() for z in self.zones],
            "totals": {str(s): self.totals(s) for s in self.sizes},
            "nearly_free": [n.as_json() for n in self.nearly_free],
        }


def _gigantic(size: int, page: int, max_order: int) -> bool:
    return size // page > 1 << max_order


# --- Free hugetlb pool pages, located without faulting them ----------------------------------

def _pool_candidates(read_flags: Any, size: int, page: int, frames: int,
                     smaller: bool) -> tuple[np.ndarray, np.ndarray]:
    """Heads of hugetlb folios of exactly ``size`` and their flags. ``read_flags(pfns)``
    reads sorted PFNs; ``smaller``: the kernel has hugetlb sizes below ``size``."""
    n = size // page
    aligned = np.arange(0, frames - n + 1, n, dtype=np.int64)
    if not len(aligned):
        return aligned, aligned
    f = np.asarray(read_flags(aligned)).view(np.int64)
    head = int(KPF.HUGE | KPF.COMPOUND_HEAD)
    idx = np.flatnonzero((f & head) == head)
    if not len(idx):
        return aligned[idx], f[idx]
    heads = aligned[idx]
    # The frame after each head is the next aligned frame, read above: a tail there means a
    # larger folio. Only the last aligned frame's successor may lie beyond that read.
    nxt = np.zeros(len(idx), dtype=np.int64)
    inner = idx + 1 < len(aligned)
    nxt[inner] = f[idx[inner] + 1]
    end = aligned[-1] + n
    if not inner[-1] and end < frames:
        nxt[-1] = int(np.asarray(read_flags(np.array([end], dtype=np.int64))).view(np.int64)[0])
    ok = (nxt & int(KPF.COMPOUND_TAIL)) == 0
    if smaller:
        # A smaller hugetlb folio may start at an aligned frame: exactly n frames means the
        # last one is still a tail.
        last = np.asarray(read_flags(heads + n - 1)).view(np.int64)
        tail = int(KPF.HUGE | KPF.COMPOUND_TAIL)
        ok &= (last & tail) == tail
    return heads[ok], f[idx[ok]]


def _read_parallel(kf: KPageFlags, pfns: np.ndarray, threads: int) -> np.ndarray:
    """``kf.read`` of sorted ``pfns`` split over threads (cffi drops the GIL in the reads)."""
    if threads <= 1 or len(pfns) < 4096:
        return kf.read(pfns)
    parts = np.array_split(pfns, threads)
    out: list[np.ndarray | None] = [None] * len(parts)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            out[i] = kf.read(parts[i])
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(1, len(parts))]
    for w in workers:
        w.start()
    work(0)
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    joined: np.ndarray = np.concatenate([o for o in out if o is not None])
    return joined


def _memory_nodes(sys_root: str) -> frozenset[int] | None:
    """Nodes with memory from sysfs (cheap), or None where the mask is missing."""
    base = f"{sys_root}/devices/system/node"
    for name in ("has_memory", "has_normal_memory"):
        got = _sysfs.read_parsed(f"{base}/{name}", parse_cpulist)
        if got:
            return got
    return None


def memory_node(node: int | None, nodes: Sequence[int]) -> int | None:
    """``node`` checked against the nodes with memory (None: any)."""
    if node is None:
        return None
    node = as_nonneg(node, "node")
    if node not in nodes:
        raise InvalidArgument(f"NUMA node {node} has no memory (nodes with memory: "
                              f"{list(nodes)})")
    return node


def _node_of(pfns: np.ndarray, spans: Sequence[ZoneSpan]) -> np.ndarray:
    out = np.full(len(pfns), -1, dtype=np.int64)
    for z in spans:
        out[(pfns >= z.start_pfn) & (pfns < z.end_pfn)] = z.node
    return out


def _pool_free_counts(size: int, nodes: Iterable[int], sys_root: str) -> dict[int, int]:
    leaf = f"hugepages/hugepages-{size // 1024}kB/free_hugepages"
    return {node: _sysfs.read_int(f"{sys_root}/devices/system/node/node{node}/{leaf}") or 0
            for node in nodes}


def free_pool_pages(size: int | str | None = None, node: int | None = None, *,
                    proc_root: str = "/proc", sys_root: str = "/sys",
                    flags: np.ndarray | None = None) -> np.ndarray | None:
    """PFNs of the first frames of the free hugetlb pages of ``size`` (sorted), or None.

    Free pool pages read as a hugetlb head (``HUGE|COMPOUND_HEAD``) with kpagecount 0 and no
    ``MMAP``. So do pages held unmapped in a hugetlbfs file, which the kernel marks
    ``DIRTY`` in its page cache; a freed anonymous page may keep a stale ``DIRTY`` too. The
    candidates are therefore checked against each node's ``free_hugepages``: the clean ones
    if they number exactly that, else all of them if they do; otherwise (pages in files
    and churn) the answer is None rather than a guess. ``flags`` is a kpageflags array from
    PFN 0 to use instead of reading the aligned frames.
    """
    heads, exact, _ = _locate_free_pool(size, node, proc_root=proc_root, sys_root=sys_root,
                                        flags=flags)
    return heads if exact else None


def _locate_free_pool(size: int | str | None, node: int | None, *, proc_root: str,
                      sys_root: str, flags: np.ndarray | None
                      ) -> tuple[np.ndarray, bool, dict[int, int]]:
    """:func:`free_pool_pages`, with what it cannot tell apart (see :func:`_pool_heads`)."""
    from ..hugepages.reservation import _resolve_size

    ps = _resolve_size(size, proc_root)
    supported = supported_sizes(sys_root)
    if ps not in supported:
        raise InvalidArgument(f"no {format_size(ps)} hugepage pool on this kernel "
                              f"(sizes: {', '.join(format_size(s) for s in supported)})")
    page = addressing.page_size()
    smaller = any(page < s < ps for s in supported)
    # One node with memory (the usual machine): every page is that node's, and zoneinfo,
    # slow to parse, is not needed to tell nodes apart.
    mem_nodes = _memory_nodes(sys_root)
    spans = None
    if mem_nodes is not None and len(mem_nodes) == 1:
        nodes = sorted(mem_nodes)
    else:
        spans = zone_spans(proc_root)
        nodes = sorted({z.node for z in spans})
    node = memory_node(node, nodes)
    want = nodes if node is None else [node]
    with KPageFlags(proc_root=proc_root) as kf, KPageCount(proc_root=proc_root) as kc:
        frames = len(flags) if flags is not None else kf.max_pfn()
        if flags is not None:
            arr = np.asarray(flags).view(np.int64)

            def read_flags(p: np.ndarray) -> np.ndarray:
                picked: np.ndarray = arr[p]
                return picked
        else:
            threads = default_threads()

            def read_flags(p: np.ndarray) -> np.ndarray:
                return _read_parallel(kf, p, threads)
        return _pool_heads(read_flags, kc, ps, page, frames, smaller, want, nodes, spans,
                           sys_root)


def _pool_heads(read_flags: Any, kc: KPageCount, ps: int, page: int, frames: int,
                smaller: bool, want: Sequence[int], nodes: Sequence[int],
                spans: Sequence[ZoneSpan] | None,
                sys_root: str) -> tuple[np.ndarray, bool, dict[int, int]]:
    """Free pool pages as :func:`free_pool_pages` finds them, whether that is exact, and each
    node's ``free_hugepages``. Not exact: every unmapped head, a superset (pages in files
    among them), whose count the caller caps by the sysfs counts."""
    heads = np.empty(0, np.int64)
    before: dict[int, int] = {}
    for _ in range(5):
        before = _pool_free_counts(ps, want, sys_root)
        heads, hf = _pool_candidates(read_flags, ps, page, frames, smaller)
        if len(heads):
            mapped = (kc.read(heads).astype(np.int64) != 0) | ((hf & int(KPF.MMAP)) != 0)
            heads, hf = heads[~mapped], hf[~mapped]
        after = _pool_free_counts(ps, want, sys_root)
        if before != after:
            continue
        where = (np.full(len(heads), nodes[0], dtype=np.int64) if spans is None
                 else _node_of(heads, spans))
        out = []
        for nd in want:
            mine = where == nd
            clean = mine & ((hf & int(KPF.DIRTY)) == 0)
            if int(clean.sum()) == before[nd]:
                out.append(heads[clean])
            elif int(mine.sum()) == before[nd]:
                out.append(heads[mine])
            else:
                break
        else:
            return (np.sort(np.concatenate(out)) if out else np.empty(0, np.int64),
                    True, before)
    return np.sort(heads), False, before


def _as_many_as_free(heads: np.ndarray, free: dict[int, int], spans: Sequence[ZoneSpan],
                     flags: np.ndarray) -> np.ndarray:
    """Of candidate heads (a superset of the free pool pages), each node's ``free`` count,
    clean pages before ``DIRTY`` ones (pages in a file's page cache are dirty)."""
    if not len(heads):
        return heads
    where = _node_of(heads, spans)
    dirty = (np.asarray(flags).view(np.int64)[heads] & int(KPF.DIRTY)) != 0
    keep = []
    for nd, count in free.items():
        mine = np.flatnonzero(where == nd)
        mine = mine[np.argsort(dirty[mine], kind="stable")]
        keep.append(heads[mine[:count]])
    return np.sort(np.concatenate(keep)) if keep else heads[:0]


def longest_pool_run(size: int | str | None = None, node: int | None = None, *,
                     proc_root: str = "/proc", sys_root: str = "/sys") -> int | None:
    """Bytes of the longest run of physically adjacent free hugetlb pages of ``size``, from
    kpageflags (None where :func:`free_pool_pages` cannot tell free pages apart)."""
    from ..hugepages.reservation import _resolve_size

    ps = _resolve_size(size, proc_root)
    heads = free_pool_pages(ps, node, proc_root=proc_root, sys_root=sys_root)
    if heads is None:
        return None
    if not len(heads):
        return 0
    n = ps // addressing.page_size()
    mask = np.zeros(int(heads[-1] // n) + 1, dtype=bool)
    mask[heads // n] = True
    return int(runs_of(mask)[:, 1].max()) * ps


# --- The forecast -----------------------------------------------------------------------------

def _check_sizes(sizes: object, supported: list[int]) -> tuple[int, ...]:
    if not supported:
        raise InvalidArgument("this kernel has no hugetlb page sizes (no /sys/kernel/mm/hugepages)")
    if sizes is None:
        return tuple(supported)
    listed: Iterable[Any] = [sizes] if isinstance(sizes, str) or is_int(sizes) else as_iterable(
        sizes, "sizes", "a hugepage size, a list of them or None (all)")
    out = []
    for s in listed:
        v = parse_size(s, "sizes", positive=True)
        if v not in supported:
            raise InvalidArgument(f"sizes: {format_size(v)} is not a hugepage size of this "
                                  f"kernel ({', '.join(format_size(x) for x in supported)})")
        if v not in out:
            out.append(v)
    if not out:
        raise InvalidArgument("sizes is empty: give at least one hugepage size, or None for all")
    return tuple(sorted(out))


def _unevictable_movable(proc_root: str) -> bool:
    try:
        return sysctl.read("vm.compact_unevictable_allowed", proc_root).strip() != "0"
    except OSError:
        return True  # kernels without the knob (before 4.1) migrate them


def _memcg_root(proc_root: str) -> str | None:
    """Mount point of the memory cgroup hierarchy (cgroup v2 with memory, or v1 memory)."""
    try:
        mounts = proc.mounts(proc_root)
    except OSError:
        return None
    v2 = None
    for mnt in mounts:
        if mnt.fstype == "cgroup" and "memory" in mnt.options:
            return mnt.path
        if mnt.fstype == "cgroup2" and v2 is None:
            try:
                controllers = _sysfs.read_optional(os.path.join(mnt.path, "cgroup.controllers"))
            except OSError:
                continue
            if controllers is not None and b"memory" in controllers.split():
                v2 = mnt.path
    return v2


def _cgroup_paths(inodes: set[int], proc_root: str) -> dict[int, str]:
    root = _memcg_root(proc_root)
    found: dict[int, str] = {}
    if root is None or not inodes:
        return found
    for dirpath in _sysfs.walk_dirs(root):
        try:
            ino = _sysfs.stat(dirpath, "cannot stat a cgroup").st_ino
        except OSError:
            continue
        if ino in inodes:
            found[ino] = dirpath
            if len(found) == len(inodes):
                break
    return found


# vm.percpu_pagelist_high_fraction while the per-CPU lists are drained: a value nobody sets
# by hand, so a run that finds it knows an earlier drain was cut short and restores 0.
_DRAIN_FRACTION = 999983


def per_cpu_free(proc_root: str = "/proc") -> dict[tuple[int, str], int]:
    """(node, zone) -> free pages on the CPUs' lists now (zoneinfo's ``pagesets count:``)."""
    return {(z.node, z.zone): sum(z.pcp) for z in proc.zoneinfo(proc_root)}


def drain_per_cpu_lists(proc_root: str = "/proc", *, timeout: float = 1.0) -> bool:
    """Give the free pages on the CPUs' lists back to the buddy allocator, as the kernel
    itself does before a gigantic allocation; returns whether it could (root, default tuning).

    Those pages carry no flag in /proc/kpageflags and read as kernel allocations: after a
    hugetlb pool shrinks, the lists can hold a GiB of 2 MiB blocks. User space has no drain
    call; lowering the lists' high mark (``vm.percpu_pagelist_high_fraction``) and asking
    each CPU to refresh its statistics (``vm.stat_refresh``, which trims a list above its
    mark by up to a batch at a time) empties them within tens of ms. The tuning is put back
    at once; one set by hand (not 0) is left alone and nothing is drained.
    """
    import time

    name = "vm.percpu_pagelist_high_fraction"
    try:
        old = sysctl.read_int(name, proc_root)
    except PhysmemError:
        return False
    if old not in (0, _DRAIN_FRACTION):
        return False
    try:
        sysctl.write(name, _DRAIN_FRACTION, proc_root)
    except PhysmemError:
        return False
    try:
        deadline = time.monotonic() + timeout
        last = sum(per_cpu_free(proc_root).values())
        while time.monotonic() < deadline:
            for _ in range(8):
                sysctl.write("vm.stat_refresh", 1, proc_root)
            now = sum(per_cpu_free(proc_root).values())
            if now >= last:
                break
            last = now
    except PhysmemError:
        return False
    finally:
        sysctl.write(name, 0, proc_root)
    return True


NEARLY_FREE_LIMIT = 16      # nearly free blocks listed per size
NEARLY_FREE_FRAMES = 64     # blocker frames listed per block


class _ZoneMemory(NamedTuple):
    """What the page allocator checks for one zone, read from /proc/zoneinfo (pages)."""

    free: int           # in the buddy allocator (zoneinfo's "pages free")
    pcp: int            # on the CPUs' free lists: free, but invisible to kpageflags
    wmin: int           # the min watermark: hugetlb allocations may go down to it
    prot_movable: int   # lowmem reserve against requests that may use ZONE_MOVABLE (2 MiB)
    prot_normal: int    # ... against requests that stop at ZONE_NORMAL (gigantic pages)


def _zone_memory(proc_root: str) -> dict[tuple[int, str], _ZoneMemory]:
    zones = proc.zoneinfo(proc_root)
    by_node: dict[int, list[str]] = {}
    for z in zones:
        by_node.setdefault(z.node, []).append(z.zone)
    out = {}
    for z in zones:
        names = by_node[z.node]
        # A zone's protection lists the pages it keeps back from requests whose highest zone
        # is each column: 2 MiB pool pages are GFP_HIGHUSER_MOVABLE (up to Movable), gigantic
        # ones GFP_HIGHUSER (up to Normal: they are never placed in ZONE_MOVABLE).
        mov = names.index("Movable") if "Movable" in names else len(names) - 1
        nor = names.index("Normal") if "Normal" in names else mov
        prot = z.protection

        def col(i: int) -> int:
            return prot[i] if i < len(prot) else 0
        out[(z.node, z.zone)] = _ZoneMemory(z.free, sum(z.pcp), z.min, col(mov), col(nor))
    return out


def _second_look(flags: np.ndarray, fc: np.ndarray, counts0: np.ndarray, n0: int, *,
                 drain: bool, unevictable_movable: bool, proc_root: str) -> int:
    """Read again the flag-less and off-LRU frames of the units blocked by nothing else,
    and update ``flags``, ``fc`` and ``counts0`` in place; returns how many changed class.

    Free pages on the CPUs' lists and pages on their way back to the allocator (page tables
    freed after an RCU grace period, pages in a batch being freed) carry no flag, like
    kernel allocations; pages isolated for a migration or waiting in a CPU's LRU batch are
    off the LRU for a moment. A moment later, and after a drain, they read as what the
    kernel sees when it allocates.
    """
    blk = counts0[:, FIRST_BLOCKER:].sum(axis=1)
    passing = counts0[:, Frame.KERNEL] + counts0[:, Frame.UNMOVABLE]
    units = np.flatnonzero((blk > 0) & (blk == passing))
    if not len(units):
        return 0
    idx = np.concatenate([np.flatnonzero((fc[u * n0:(u + 1) * n0] == Frame.KERNEL)
                                         | (fc[u * n0:(u + 1) * n0] == Frame.UNMOVABLE))
                          + u * n0 for u in units.tolist()])
    if drain:
        drain_per_cpu_lists(proc_root)
    with KPageFlags(proc_root=proc_root) as kf:
        again = np.asarray(kf.read(idx)).view(np.int64)
    cls = frame_classes(again, unevictable_movable=unevictable_movable)
    moved = cls != fc[idx]
    if moved.any():
        flags.view(np.int64)[idx[moved]] = again[moved]
        fc[idx[moved]] = cls[moved]
        for u in np.unique(idx[moved] // n0).tolist():
            counts0[u] = np.bincount(fc[u * n0:(u + 1) * n0], minlength=N_FRAMES)
    return int(moved.sum())


def _charged(blocks: np.ndarray, n: int, fc: np.ndarray, proc_root: str) -> np.ndarray:
    """Which of these blocks hold a flag-less frame charged to a memory cgroup: a kernel
    allocation made for a process, never a free page (freeing uncharges it)."""
    out = np.zeros(len(blocks), dtype=bool)
    if not len(blocks):
        return out
    idx = np.concatenate([np.flatnonzero(fc[b * n:(b + 1) * n] == Frame.KERNEL) + b * n
                          for b in blocks.tolist()])
    try:
        with KPageCgroup(proc_root=proc_root) as kg:
            inos = kg.read(idx)
    except PhysmemError:
        return out   # no CONFIG_MEMCG: nothing is charged
    hit = np.unique(idx[np.asarray(inos) != 0] // n)
    out[np.isin(blocks, hit)] = True
    return out


def _pcp_blocks(kern: np.ndarray, budget: int) -> np.ndarray:
    """Indices of the blocks (given their flag-less frame counts, all other frames free or
    movable) that the free pages on the CPUs' lists could account for: fewest first, while
    their frames fit in ``budget``."""
    order = np.argsort(kern, kind="stable")
    fits = np.cumsum(kern[order]) <= budget
    picked: np.ndarray = order[fits]
    return picked


class _Estimate(NamedTuple):
    now: int
    after: int
    now_low: int
    now_high: int
    after_low: int
    after_high: int


def _estimate(*, gig: bool, movable_zone: bool, n: int, mem: _ZoneMemory, pcp: int,
              pcp_high: int, moved: int, free_blocks: int, maybe: int, maybe_high: int,
              uninit_blocks: int, uninit_frames: int, compactable: int, movable_frames: int,
              clean_cache: int, stuck: int) -> _Estimate:
    """New pages of ``n`` frames one zone can give, best estimates and ranges.

    Gigantic pages (alloc_contig_range): every block whose frames are free or movable; the
    kernel migrates the movable ones itself and drains the CPUs' lists first, so "now" and
    "after compaction" are one figure. Buddy pages (2 MiB, __GFP_RETRY_MAYFAIL): the free
    blocks now; after compaction also the blocks compaction empties by gathering the
    compactable blocks' movable pages into as few blocks as they fill. Both stop where the
    zone's free memory would fall below its min watermark plus the lowmem reserve, or below
    the free pages stuck in blocked blocks (compaction does not fill those, and a growing pool
    stops there). The kernel's reclaim of clean page cache during a growth, and the direct
    compaction it tries, only raise the upper ends.
    """
    slack = -(-moved // n)

    def cap(extra: int, floor: int) -> int:
        return max(0, (mem.free + uninit_frames + extra - floor) // n)

    if gig:
        if movable_zone:
            return _Estimate(0, 0, 0, 0, 0, 0)
        floor = mem.wmin + mem.prot_normal
        sure = free_blocks + compactable
        best = min(sure + maybe, cap(pcp, floor))
        low = max(0, min(sure, cap(-moved, floor)) - slack)
        high = min(sure + maybe_high + slack, cap(pcp_high + moved, floor))
        low, high = min(low, best), max(high, best)
        return _Estimate(best, best, low, high, low, high)
    wmark = mem.wmin + mem.prot_movable
    floor = max(stuck, wmark)
    freed = max(0, compactable - -(-movable_frames // n))
    base = free_blocks + uninit_blocks
    now = min(base + maybe, cap(pcp, floor))
    after = min(base + maybe + freed, cap(pcp, floor))
    cap_low = cap(-moved, floor)
    cap_high = cap(pcp_high + moved + clean_cache, max(wmark, stuck - moved))
    now_low = max(0, min(base, cap_low) - slack)
    # Compaction may stop early (the kernel gives up after repeated failures or deferral):
    # at worst "after" is what is free now, so the range's low end is the one of "now".
    after_low = now_low
    high = min(base + maybe_high + compactable + slack, cap_high)
    return _Estimate(now, after, min(now_low, now), max(high, now), min(after_low, after),
                     max(high, after))


def forecast(*, node: int | None = None, sizes: Iterable[int | str] | int | str | None = None,
             threads: int | None = None, drain: bool = False, proc_root: str = "/proc",
             sys_root: str = "/sys") -> Forecast:
    """Class every aligned block of each hugepage size and predict what can be had.

    ``node`` limits the answer to one NUMA node (the scan still covers the machine);
    ``sizes`` picks hugepage sizes (``"2M"``, ``1 << 30``; default every size the kernel
    supports); ``threads`` reads kpageflags in that many PFN ranges at once (default one
    per CPU); ``drain`` first empties the CPUs' free lists (:func:`drain_per_cpu_lists`),
    which narrows the ranges. Needs root (CAP_SYS_ADMIN) for /proc/kpageflags.
    """
    supported = supported_sizes(sys_root)
    sz = _check_sizes(sizes, supported)
    spans = tuple(zone_spans(proc_root))
    nodes = sorted({z.node for z in spans})
    node = memory_node(node, nodes)
    page = addressing.page_size()
    max_order = max((len(b.free) - 1 for b in proc.buddyinfo(proc_root)), default=10)
    movable_mlocked = _unevictable_movable(proc_root)
    ram = ram_ranges(proc_root)

    pieces: dict[int, np.ndarray] = {}
    piece_counts: dict[int, np.ndarray] = {}
    # Counts per unit (the smallest size, or less so that units never straddle two thread
    # pieces); every size is a power-of-two multiple of it, so its counts are sums of those.
    n0 = min(sz[0] // page, 1 << 16)

    def classify_piece(first: int, piece: np.ndarray) -> None:
        # Runs in the reading threads: numpy drops the GIL, so this is parallel too.
        fcp = frame_classes(piece, unevictable_movable=movable_mlocked)
        if ram.size:
            fcp[~_in_ram(first, len(fcp), ram)] = Frame.HOLE
        pieces[first] = fcp
        piece_counts[first] = _block_counts(fcp, n0)

    if drain:
        drain_per_cpu_lists(proc_root)
    before = {k: (m.free, m.pcp) for k, m in _zone_memory(proc_root).items()}
    with KPageFlags(proc_root=proc_root) as kf:
        flags = read_range(kf, threads=threads, each=classify_piece)
    frames = len(flags)
    fc = (np.concatenate([pieces[k] for k in sorted(pieces)])[:frames] if pieces
          else np.empty(0, np.uint8))
    heads_only = frames > 0 and not tails_marked(int((fc == Frame.FREE).sum()), proc_root)
    if heads_only:
        # Older kernels flag only a free block's head BUDDY; its tails read 0. Extend each
        # head over them as physmap does (an upper bound: see physmap.free_mask).
        step = 1 << max_order
        f64 = flags.view(np.int64)
        for lo in range(0, frames, step * 64):
            seg = fc[lo:lo + step * 64]
            mask = free_mask(f64[lo:lo + step * 64], lo, tails=False, max_order=max_order)
            seg[mask & (seg == Frame.KERNEL)] = Frame.FREE
    # Deferred init: flag-0 frames at a zone's top, within what zoneinfo accounts for.
    uninit: list[tuple[int, int]] = []
    for z in spans:
        lo, hi = z.start_pfn, min(z.end_pfn, frames)
        if lo >= hi:
            continue
        seg = fc[lo:hi]
        # The last frame in use, found from the top (a list of every index cost 40 ms a zone).
        used = ((seg != Frame.KERNEL) & (seg != Frame.HOLE))[::-1]
        last = hi - 1 - int(np.argmax(used)) if used.any() else lo - 1
        start = unmanaged_start(z, int((seg == Frame.RESERVED).sum()), last)
        if start is not None:
            top = fc[start:hi]
            top[top == Frame.KERNEL] = Frame.UNINITIALISED
            uninit.append((start, hi))
    nb0 = frames // n0
    counts0 = (np.concatenate([piece_counts[k] for k in sorted(piece_counts)])[:nb0]
               if piece_counts else np.zeros((0, N_FRAMES), np.int64))
    if heads_only:
        counts0 = _block_counts(fc, n0)
    for lo, hi in uninit:
        # Recount the blocks the uninitialised tops touch (their KERNEL frames changed).
        b_lo, b_hi = lo // n0, min(nb0, -(-hi // n0))
        if b_lo < b_hi:
            counts0[b_lo:b_hi] = _block_counts(fc[b_lo * n0:b_hi * n0], n0)

    settled = _second_look(flags, fc, counts0, n0, drain=drain,
                           unevictable_movable=movable_mlocked, proc_root=proc_root)
    zmem = _zone_memory(proc_root)
    # Free memory moving while the scan ran (other processes, and the scan's own arrays):
    # the ranges widen by it. The lists' pages are counted as read before and after.
    pcp = {k: (max(m.pcp, before.get(k, (0, 0))[1]), m.pcp + before.get(k, (0, 0))[1])
           for k, m in zmem.items()}
    drift = {k: abs((m.free + m.pcp) - sum(before.get(k, (m.free + m.pcp, 0))))
             for k, m in zmem.items()}
    zone_start = np.array([z.start_pfn for z in spans], dtype=np.int64)
    order = np.argsort(zone_start, kind="stable")
    states: dict[int, np.ndarray] = {}
    reclaim_only: dict[int, np.ndarray] = {}
    pcp_maybe: dict[int, np.ndarray] = {}
    nblockers: dict[int, np.ndarray] = {}
    block_zone: dict[int, np.ndarray] = {}
    rows: list[ZoneForecast] = []
    nearly: list[NearlyFree] = []
    pool_exact = True
    for size in sz:
        n = size // page
        nb = frames // n
        k = n // n0
        counts = counts0[:nb * k].reshape(nb, k, N_FRAMES).sum(axis=1)
        # Zone of each block: the zone holding its first frame; a block that runs past that
        # zone's end (or starts outside every zone) counts a zone edge.
        starts = np.arange(nb, dtype=np.int64) * n
        zi = np.full(nb, -1, dtype=np.int64)
        edge = np.ones(nb, dtype=bool)
        for i in order.tolist():
            z = spans[i]
            inside = (starts >= z.start_pfn) & (starts < z.end_pfn)
            zi[inside] = i
            edge[inside] = starts[inside] + n > z.end_pfn
        counts[edge, Frame.ZONE_EDGE] = 1
        heads, exact, pool_free = _locate_free_pool(size, None, proc_root=proc_root,
                                                    sys_root=sys_root, flags=flags)
        if not exact:
            # The free pages cannot be told from pages held in files: sysfs knows how many
            # there are, if not which, so that many candidates count (the clean ones first).
            heads = _as_many_as_free(heads, pool_free, spans, flags)
        pool_exact = pool_exact and exact
        is_pool = np.zeros(nb, dtype=bool)
        is_pool[(heads // n)[heads // n < nb]] = True
        gig = _gigantic(size, page, max_order)
        if gig:
            # alloc_contig_range isolates unevictable (mlocked) pages too, whatever
            # compact_unevictable_allowed says: for gigantic pages they are movable.
            counts[:, Frame.MOVABLE] += counts[:, Frame.UNEVICTABLE]
            counts[:, Frame.UNEVICTABLE] = 0
        blockers = counts[:, FIRST_BLOCKER:].sum(axis=1)
        st = np.full(nb, BlockState.FREE, dtype=np.uint8)
        st[counts[:, Frame.UNINITIALISED] > 0] = BlockState.UNINITIALISED
        st[counts[:, Frame.MOVABLE] + counts[:, Frame.RECLAIMABLE] > 0] = BlockState.COMPACTABLE
        st[blockers > 0] = BlockState.BLOCKED
        st[is_pool & ~edge] = BlockState.POOL
        blockers[is_pool] = 0
        ronly = (st == BlockState.COMPACTABLE) & (counts[:, Frame.MOVABLE] == 0)
        blocked = st == BlockState.BLOCKED
        # Blocked only by flag-less frames, everything else free or movable: free pages on
        # the CPUs' lists read like that (a whole 2 MiB block when a hugetlb pool shrank).
        kern_only = blocked & (blockers == counts[:, Frame.KERNEL])
        kern_only[np.flatnonzero(kern_only)[_charged(np.flatnonzero(kern_only), n, fc,
                                                       proc_root)]] = False
        maybe = np.zeros(nb, dtype=bool)
        states[size], nblockers[size], block_zone[size] = st, blockers, zi
        reclaim_only[size] = ronly
        pcp_maybe[size] = maybe
        for i, z in enumerate(spans):
            if node is not None and z.node != node:
                continue
            mine = zi == i
            if not mine.any() and z.end_pfn - z.start_pfn < n:
                continue
            c = {s_: int(((st == s_) & mine).sum()) for s_ in BlockState}
            bb = blocked & mine
            blk = {FRAME_INFO[Frame(k_)][0]: int((counts[bb, k_] > 0).sum())
                   for k_ in range(FIRST_BLOCKER, N_FRAMES) if (counts[bb, k_] > 0).any()}
            bfr = {FRAME_INFO[Frame(k_)][0]: int(counts[bb, k_].sum())
                   for k_ in range(FIRST_BLOCKER, N_FRAMES)
                   if k_ != Frame.ZONE_EDGE and counts[bb, k_].any()}
            mem = zmem.get((z.node, z.zone), _ZoneMemory(0, 0, 0, 0, 0))
            pcp_best, pcp_high = pcp[(z.node, z.zone)]
            moved = drift[(z.node, z.zone)]
            cand = np.flatnonzero(kern_only & mine)
            picked = cand[_pcp_blocks(counts[cand, Frame.KERNEL], pcp_best)]
            n_maybe = len(picked)
            n_maybe_hi = len(_pcp_blocks(counts[cand, Frame.KERNEL], pcp_high))
            maybe[picked] = True
            pool = c[BlockState.POOL]
            cm = mine & (st == BlockState.COMPACTABLE)
            est = _estimate(gig=gig, movable_zone=z.zone == "Movable", n=n, mem=mem,
                            pcp=pcp_best, pcp_high=pcp_high, moved=moved,
                            free_blocks=c[BlockState.FREE], maybe=n_maybe, maybe_high=n_maybe_hi,
                            uninit_blocks=c[BlockState.UNINITIALISED],
                            uninit_frames=int(counts[mine, Frame.UNINITIALISED].sum()),
                            compactable=c[BlockState.COMPACTABLE],
                            movable_frames=int(counts[cm, Frame.MOVABLE].sum()
                                               + counts[cm, Frame.RECLAIMABLE].sum()),
                            clean_cache=int(counts[mine, Frame.RECLAIMABLE].sum()),
                            stuck=int(counts[bb, Frame.FREE].sum()))
            usable_now = (st == BlockState.FREE) | (st == BlockState.POOL) | maybe
            if gig:
                usable_now |= st == BlockState.COMPACTABLE
            else:
                usable_now |= st == BlockState.UNINITIALISED
            ok_now = mine & usable_now
            ok_after = ok_now | (mine & (st == BlockState.COMPACTABLE))
            run_now = min(int(runs_of(ok_now)[:, 1].max(initial=0)), est.now + pool)
            run_after = min(int(runs_of(ok_after)[:, 1].max(initial=0)), est.after + pool)
            rows.append(ZoneForecast(
                z.node, z.zone, size, page, int(mine.sum()), c[BlockState.FREE], pool,
                c[BlockState.COMPACTABLE], c[BlockState.UNINITIALISED], c[BlockState.BLOCKED],
                int(ronly[mine].sum()), blk, bfr, est.now, est.after, pool + est.now,
                pool + est.after, run_now * size, run_after * size,
                (pool + est.now_low, pool + est.now_high),
                (pool + est.after_low, pool + est.after_high), n_maybe))
        # Nearly free: blocked by few real frames (not by a zone edge or a hole).
        limit = max(8, n // 1024)
        cand = np.flatnonzero(blocked & (counts[:, Frame.ZONE_EDGE] == 0)
                              & (counts[:, Frame.HOLE] == 0) & (blockers <= limit)
                              & (zi >= 0))
        if node is not None:
            cand = cand[np.array([spans[k].node for k in zi[cand]], dtype=np.int64) == node] \
                if len(cand) else cand
        cand = cand[np.argsort(blockers[cand], kind="stable")][:NEARLY_FREE_LIMIT]
        for b in cand.tolist():
            lo = b * n
            idx = np.flatnonzero(fc[lo:lo + n] >= FIRST_BLOCKER)[:NEARLY_FREE_FRAMES] + lo
            nearly.append(NearlyFree(size, lo, spans[zi[b]].node, spans[zi[b]].zone,
                                     int(blockers[b]), _describe_frames(idx, flags, fc,
                                                                        proc_root)))
    # The per-unit counts already hold every frame but a tail shorter than one unit.
    whole = counts0.sum(axis=0) + np.bincount(fc[nb0 * n0:], minlength=N_FRAMES)
    totals = {FRAME_INFO[Frame(k)][0]: int(v) for k, v in enumerate(whole) if v}
    totals["_max_order"] = max_order
    return Forecast(page, sz, node, tuple(rows), tuple(nearly), spans, states, nblockers,
                    reclaim_only, pcp_maybe, block_zone, runs_of(fc == Frame.FREE), frames, pool_exact,
                    movable_mlocked, totals, fc, proc_root)


def _in_ram(first: int, n: int, ram: np.ndarray) -> np.ndarray:
    inram = np.zeros(n, dtype=bool)
    for lo, hi in ram.tolist():
        a, b = max(lo, first), min(hi, first + n)
        if a < b:
            inram[a - first:b - first] = True
    return inram


def _block_counts(fc: np.ndarray, n: int) -> np.ndarray:
    """(blocks, N_FRAMES) frames of each class per whole block of ``n`` frames."""
    nb = len(fc) // n
    key = fc[:nb * n].reshape(nb, n).astype(np.int32)
    key += (np.arange(nb, dtype=np.int32) * N_FRAMES)[:, None]
    return np.bincount(key.ravel(), minlength=nb * N_FRAMES).reshape(nb, N_FRAMES)


def _describe_frames(pfns: np.ndarray, flags: np.ndarray, fc: np.ndarray,
                     proc_root: str, *, dense: bool = True) -> tuple[BlockerFrame, ...]:
    """``flags`` indexed by PFN (``dense``) or one value per entry of ``pfns``."""
    from ..kpageflags import describe

    if not len(pfns):
        return ()
    counts: list[int | None] = [None] * len(pfns)
    inos: list[int | None] = [None] * len(pfns)
    try:
        with KPageCount(proc_root=proc_root) as kc:
            counts = [int(v) for v in kc.read(pfns)]
    except PhysmemError:
        pass
    try:
        with KPageCgroup(proc_root=proc_root) as kg:
            inos = [int(v) or None for v in kg.read(pfns)]
    except PhysmemError:
        pass  # no CONFIG_MEMCG: kpagecgroup is absent
    paths = _cgroup_paths({i for i in inos if i}, proc_root)
    f = np.asarray(flags).view(np.int64)
    fl = [int(f[p]) for p in pfns.tolist()] if dense else [int(v) for v in f]
    return tuple(BlockerFrame(int(p), FRAME_INFO[Frame(int(fc[p]))][0], fl[k],
                              describe(fl[k]), counts[k], inos[k],
                              paths.get(inos[k] or 0))
                 for k, p in enumerate(pfns.tolist()))
