"""Ask before growing a pool: can a run of N adjacent hugepages be had now, after compaction,
or not at all?

:func:`run_obtainable` answers for one page size and node in tens of milliseconds, where the
whole-machine :func:`~physmem.analysis.contiguity.forecast` takes a second: it reads the
kpageflags of one frame per 2 MiB of memory, keeps the windows whose sampled frames are all
free (or free and movable), and reads every frame of those windows only, longest first,
until one holds the run. The verdict follows the forecast's rules (the same frame classes,
the same watermark and lowmem reserve, gigantic pages never in ZONE_MOVABLE); it judges
adjacency, which a page count cannot: a pool may grow by N pages and still hold no N
adjacent ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import addressing
from .._args import as_positive
from .._runs import runs_of
from ..errors import InvalidArgument
from .._hugepools import supported_sizes
from .._syntax import parse_size
from ..hugepages.sizes import format_size
from ..kpageflags import KPageFlags
from .classes import Frame
from .contiguity import (_gigantic, _unevictable_movable, _zone_memory, drain_per_cpu_lists,
                         frame_classes, free_pool_pages, memory_node)
from .physmap import zone_spans

__all__ = ["RunAnswer", "run_obtainable"]

# Frames read in full at most, per answer: the windows beyond it stay unread (the answer
# then says "no" on what it read, and says so in its advice).
VERIFY_FRAMES = 1 << 22


@dataclass(frozen=True)
class RunAnswer:
    """Whether ``count`` physically adjacent pages of ``size`` bytes can be had on ``node``.

    ``verdict`` is ``now``, ``after-compaction`` or ``no``. ``longest_now`` and
    ``longest_after_compaction`` are the longest runs found (pages; at least ``count`` when
    found, else the longest among the windows read in full); ``free_pages`` is how many pages
    of ``size`` the zones' free memory holds above their watermarks; ``seconds`` what the
    answer took.
    """

    size: int
    count: int
    node: int | None
    verdict: str
    longest_now: int
    longest_after_compaction: int
    free_pages: int
    start_pfn: int | None      # where the run found starts
    advice: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verdict != "no"

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Hit(NamedTuple):
    now: int
    after: int
    start: int | None
    budget: int


def _verify(kf: KPageFlags, first: int, length: int, count: int, n: int, gig: bool,
            mlocked: bool, now: bool, budget: int, pool: np.ndarray) -> _Hit:
    """Read the candidate window of ``length`` blocks from PFN ``first`` in pieces of about
    ``count`` blocks, each piece starting after the last block that failed, until a run of
    ``count`` good blocks is found, the window ends or ``budget`` frames are read."""
    best_now = best_after = 0
    pos = 0
    while pos + count <= length and budget > 0:
        span = min(length - pos, count + max(1, count // 8))
        budget -= span * n
        base = first + pos * n
        full = frame_classes(kf.read(np.arange(base, base + span * n, dtype=np.int64)),
                             unevictable_movable=mlocked).reshape(span, n)
        free_v = (full == Frame.FREE).all(axis=1)
        mov = (full == Frame.MOVABLE) | (full == Frame.RECLAIMABLE)
        if gig:
            mov |= full == Frame.UNEVICTABLE
        after_v = ((full == Frame.FREE) | mov).all(axis=1)
        in_pool = np.isin(base // n + np.arange(span), pool)
        free_v |= in_pool
        after_v |= in_pool
        # Gigantic pages: the kernel migrates what is movable itself.
        good = after_v if (gig or not now) else free_v
        runs = runs_of(good)
        best_now = max(best_now, int(runs_of(after_v if gig else free_v)[:, 1].max(initial=0)))
        best_after = max(best_after, int(runs_of(after_v)[:, 1].max(initial=0)))
        long = runs[runs[:, 1] >= count]
        if len(long):
            return _Hit(best_now, best_after, base + int(long[0, 0]) * n, budget)
        bad = np.flatnonzero(~good)
        # A run reaching the piece's end continues in the next piece: start at its first block.
        tail = int(runs[-1, 0]) if len(runs) and runs[-1, 0] + runs[-1, 1] == span else span
        pos += max(1, min(tail, int(bad[-1]) + 1 if len(bad) else span))
    return _Hit(best_now, best_after, None, budget)


def run_obtainable(count: int, size: int | str, node: int | None = None, *,
                   drain: bool = True, proc_root: str = "/proc",
                   sys_root: str = "/sys") -> RunAnswer:
    """Can ``count`` adjacent hugepages of ``size`` (``"2M"``, ``1 << 30``) be had on ``node``
    (default any), now, after compaction, or not at all? Needs root for /proc/kpageflags.

    ``drain`` first gives the CPUs' free lists back to the buddy allocator (see
    :func:`~physmem.analysis.contiguity.drain_per_cpu_lists`): after a pool shrank, the
    2 MiB blocks waiting there are otherwise invisible.
    """
    t0 = time.monotonic()
    count = as_positive(count, "count")
    supported = supported_sizes(sys_root)
    ps = parse_size(size, "size", positive=True)
    if ps not in supported:
        raise InvalidArgument(f"size {format_size(ps)} is not a hugepage size of this kernel "
                              f"({', '.join(format_size(s) for s in supported)})")
    spans = zone_spans(proc_root)
    node = memory_node(node, sorted({z.node for z in spans}))
    page = addressing.page_size()
    n = ps // page
    unit = min(n, max(1, (2 << 20) // page))     # frames per sampled frame
    gig = _gigantic(ps, page, 10)
    mlocked = gig or _unevictable_movable(proc_root)
    if drain:
        drain_per_cpu_lists(proc_root)
    mem = _zone_memory(proc_root)
    zones = [z for z in spans if (node is None or z.node == node)
             and not (gig and z.zone == "Movable")]
    free_pages = 0
    for z in zones:
        m = mem.get((z.node, z.zone))
        if m is not None:
            prot = m.prot_normal if gig else m.prot_movable
            free_pages += max(0, (m.free + m.pcp - m.wmin - prot) // n)
    # The pool's own free pages belong to any run it can hand out.
    heads = free_pool_pages(ps, node, proc_root=proc_root, sys_root=sys_root)
    pool = np.empty(0, np.int64) if heads is None else heads // n
    best_now = best_after = upper = 0
    found: tuple[str, int] | None = None
    budget = VERIFY_FRAMES
    with KPageFlags(proc_root=proc_root) as kf:
        frames = kf.max_pfn()
        for z in zones:
            lo = -(-z.start_pfn // n)
            hi = min(z.end_pfn, frames) // n
            m = mem.get((z.node, z.zone))
            if hi - lo < count or m is None:
                continue
            prot = m.prot_normal if gig else m.prot_movable
            if (m.free + m.pcp - m.wmin - prot) < count * n:
                continue
            sample = np.asarray(kf.read(np.arange(lo * n, hi * n, unit, dtype=np.int64)))
            cls = frame_classes(sample, unevictable_movable=mlocked).reshape(hi - lo, n // unit)
            movable = (cls == Frame.MOVABLE) | (cls == Frame.RECLAIMABLE)
            in_pool = np.isin(np.arange(lo, hi), pool)
            free_b = (cls == Frame.FREE).all(axis=1) | in_pool
            after_b = ((cls == Frame.FREE) | movable).all(axis=1) | in_pool
            for now in (True, False):
                if found is not None:
                    break
                cand = runs_of(free_b if now and not gig else after_b)
                cand = cand[cand[:, 1] >= count]
                for start, length in cand[np.argsort(-cand[:, 1], kind="stable")].tolist():
                    hit = _verify(kf, (lo + start) * n, length, count, n, gig, mlocked, now,
                                  budget, pool)
                    budget = hit.budget
                    best_now, best_after = max(best_now, hit.now), max(best_after, hit.after)
                    if hit.start is not None:
                        found = ("now" if now else "after-compaction", hit.start)
                        break
                    if budget <= 0:
                        break
                upper = max(upper, int(runs_of(free_b if now and not gig else after_b)[:, 1]
                                       .max(initial=0)))
            if found is not None and found[0] == "now":
                break
    if gig:
        best_after = max(best_after, best_now)
    verdict = found[0] if found is not None else "no"
    what = f"{count} adjacent {format_size(ps)} pages" + ("" if node is None
                                                            else f" on node {node}")
    if verdict == "now":
        advice = f"{what}: obtainable now"
    elif verdict == "after-compaction":
        advice = (f"{what}: obtainable after compaction: echo 1 > /proc/sys/vm/compact_memory "
                  "(physmem.hugepages.compact()) first")
    else:
        why = (f"the free memory holds {free_pages} such pages above the watermarks"
               if free_pages < count else
               f"the longest run is {max(best_now, best_after)} pages of those read, at most "
               f"{upper} by a sample of every 2 MiB")
        advice = (f"{what}: not obtainable: {why}; ask for less, or reserve at boot "
                  f"(hugepagesz={format_size(ps)} hugepages={count})")
        if budget <= 0:
            advice += f" (only the first {VERIFY_FRAMES} frames of candidate runs were read)"
    return RunAnswer(ps, count, node, verdict, best_now, best_after, free_pages,
                     found[1] if found is not None else None, advice,
                     time.monotonic() - t0)
