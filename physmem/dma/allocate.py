"""Physically contiguous (or few-segment) memory from hugetlb pages, chosen on purpose.

The pages live in a hugetlb memfd, so they return to the pool when the last mapping goes,
however the process dies. Candidate pages are allocated with fallocate (errors come back
as errno, never as SIGBUS), located with pagemap, sorted by physical address; the chosen
pages are then mapped in physical order into one virtual range and the rest punched back.
"""
from __future__ import annotations

import contextlib
import errno as _errno
import os
from typing import Any, Iterator

import numpy as np

from .. import _sysfs
from ..addressing import page_size as _base_page
from .._args import as_bool, as_int, as_positive, as_power_of_two, is_int
from .._raw import mapping as _map
from .._runs import find_runs, runs_of
from ..errors import (
    ContiguityUnavailable,
    HugePagesUnavailable,
    InvalidArgument,
    error_from_errno,
)
from ..hugepages.growth import Growth
from .._syntax import parse_size
from ..hugepages.reservation import _describe_free_memory, _pool_dir, _resolve_size
from ..hugepages.sizes import format_size
from ..mapping import Mapping, Prot
from ..memfd import MemFd
from ..pagemap import PageMap
from ..proc import buddyinfo, meminfo
from .buffer import DmaBuffer
from .pin import PinMode, check_mode, needs_settling, settle

__all__ = ["allocate_contiguous", "allocate_scatter", "longest_contiguous", "virtual_alignment"]


def _page_size(page_size: int | str | None) -> int:
    size = _resolve_size(page_size)
    _pool_dir(size)  # raises with the reason if the kernel lacks this size
    return size


def _check_size(size: object, name: str = "size") -> int:
    # An int has no upper bound here: the machine's memory is the bound, below.
    size = as_int(size, name, lo=1) if is_int(size) else parse_size(
        size, name, positive=True)  # type: ignore[arg-type]
    # No pool, reservation or advice can give more than the machine has: a usage error, not
    # a shortage to be told how many pages to reserve.
    memory = meminfo()["MemTotal"]
    if size > memory:
        raise InvalidArgument(f"{name} {size} bytes ({format_size(size, exact=False)}) is more "
                              f"than this machine's memory ({format_size(memory, exact=False)}): "
                              "ask for less")
    return size


def _free_pages(size: int, node: int | None) -> int:
    path = os.path.join(_pool_dir(size, node), "free_hugepages")
    return _sysfs.parse_int(_sysfs.read(path), path)


@contextlib.contextmanager
def _on_node(node: int | None) -> Iterator[None]:
    """Bind this thread's allocations to ``node`` for the block, then restore the policy."""
    if node is None:
        yield
        return
    from ..numa import MemPolicyMode, get_mempolicy, set_mempolicy

    before = get_mempolicy()
    set_mempolicy(MemPolicyMode.BIND, {node})
    try:
        yield
    finally:
        set_mempolicy(before.mode, before.nodes, static_nodes=before.static_nodes,
                   relative_nodes=before.relative_nodes)


class _Candidates:
    """Hugetlb pages held in one memfd, with the physical address of each file page.

    With a :class:`Growth`, pages are first reserved into the file (the pool growing for what
    it lacks and shrinking back at once); ``settle`` moves them out of ZONE_MOVABLE and CMA
    before they are located, as pinning them would later (a run found before that would
    not survive the pin)."""

    def __init__(self, page_size: int, node: int | None, growth: Growth | None = None,
                 settle: bool = False) -> None:
        self.page_size = page_size
        self.node = node
        self.growth = growth
        self.settle = settle
        self.memfd = MemFd("physmem-dma", page_size=page_size, sealing=False)
        self.paddr = np.empty(0, dtype=np.uint64)
        self.reserved_end = 0  # file pages up to here may hold reservations

    def __len__(self) -> int:
        return len(self.paddr)

    def grow(self, count: int) -> int:
        """Allocate up to ``count`` more pages; returns how many the pool gave."""
        if count <= 0:
            return 0  # fallocate() of length 0 is EINVAL
        start = len(self.paddr)
        if self.growth is None:
            return self._take(start, count)
        # Faulted in under the pool lock too: a reservation is a count, not a set of pages,
        # so another allocator's pages on the free list meanwhile would be mixed into ours
        # and the adjacent ones the growth just made would be split between the two.
        with self.growth.locked():
            with _on_node(self.node):
                count = self.growth.reserve_into(self.memfd.fd, start, count)
            self.reserved_end = max(self.reserved_end, start + count)
            return self._take(start, count)

    def demote(self, count: int) -> int:
        """As :meth:`grow`, the pages coming from demoted gigantic pages (adjacent by
        construction); 0 where the kernel cannot, or without a Growth."""
        if self.growth is None:
            return 0
        start = len(self.paddr)
        with self.growth.locked():
            with _on_node(self.node):
                try:
                    count = self.growth.demote_into(self.memfd.fd, start, count)
                except (OSError, InvalidArgument):
                    return 0
            self.reserved_end = max(self.reserved_end, start + count)
            return self._take(start, count)

    def drop(self) -> None:
        """Give every page held back to the pool, and its growth back to the cap."""
        held = max(len(self.paddr), self.reserved_end)
        if held:
            self.memfd.punch_hole(0, held * self.page_size)
        if self.growth is not None:
            self.growth.given_back(held)
        self.paddr = np.empty(0, dtype=np.uint64)
        self.reserved_end = 0

    def _take(self, start: int, count: int) -> int:
        """Fault in file pages [start, start + count) (the reserved ones, or from the free
        pool); returns how many."""
        if count <= 0:
            return 0
        ps = self.page_size
        got = 0
        with _on_node(self.node):
            # Page by page only where the pool may run dry; one call otherwise.
            ret = _map.fallocate(self.memfd.fd, 0, start * ps, count * ps)
            if ret == 0:
                got = count
            elif ret in (-_errno.ENOSPC, -_errno.ENOMEM):
                for i in range(count):
                    if _map.fallocate(self.memfd.fd, 0, (start + i) * ps, ps) != 0:
                        break
                    got += 1
            else:
                raise error_from_errno(-ret, f"cannot allocate {format_size(ps)} hugepages")
        if got:
            self.paddr = np.concatenate((self.paddr, self._locate(start, got)))
        return got

    def _locate(self, start: int, count: int) -> np.ndarray:
        """Physical address of file pages [start, start + count), fallocated just before.

        The pages are in the file already, so populating a view of them only fills in
        page-table entries (no page is allocated or zeroed again); a raw mmap, since the
        view lives for one pagemap read (and a pin, when settling)."""
        ps = self.page_size
        prot = _map.PROT_READ | (_map.PROT_WRITE if self.settle else 0)
        addr = _map.mmap(0, count * ps, prot, _map.MAP_SHARED | _map.MAP_POPULATE,
                         self.memfd.fd, start * ps)
        if addr < 0:
            raise error_from_errno(-addr, f"cannot map {count} hugetlb pages to locate them")
        try:
            if self.settle:
                settle(addr, count * ps)
            with PageMap() as pm:
                paddr = pm.page_heads(addr, count, ps)
        finally:
            _map.munmap(addr, count * ps)
        if not paddr.all():
            raise error_from_errno(_errno.EFAULT, "a fallocated hugetlb page is not mapped")
        return paddr

    def close(self) -> None:
        self.memfd.close()


def _runs(paddr: np.ndarray, page_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort pages by physical address; return (order, run starts, run lengths) over it."""
    order = np.argsort(paddr, kind="stable")
    starts, lengths = find_runs(paddr[order], step=page_size)
    return order, starts, lengths


def _best_fit(paddr: np.ndarray, page_size: int, n: int, align: int) -> tuple[np.ndarray | None, int]:
    """File pages (in physical order) of the best-fitting run of ``n`` adjacent pages whose
    first physical address is a multiple of ``align``; also the longest usable run found."""
    if len(paddr) == 0:
        return None, 0
    order, starts, lengths = _runs(paddr, page_size)
    sorted_p = paddr[order]
    best = None
    longest = 0
    for s, length in sorted(zip(starts.tolist(), lengths.tolist()), key=lambda r: (r[1], r[0])):
        # First page in this run at which an aligned window starts.
        first = int(sorted_p[s])
        skip = (-first % align) // page_size if align > page_size else 0
        usable = length - skip
        longest = max(longest, usable)
        if best is None and usable >= n:
            best = order[s + skip: s + skip + n]
    return best, longest


def _pick_segments(paddr: np.ndarray, page_size: int, n: int) -> np.ndarray:
    """File pages for a scatter buffer: the longest runs first, so segments are fewest."""
    order, starts, lengths = _runs(paddr, page_size)
    chosen = []
    need = n
    for idx in np.argsort(-lengths, kind="stable"):
        take = min(need, int(lengths[idx]))
        s = int(starts[idx])
        chosen.append(order[s:s + take])
        need -= take
        if need == 0:
            break
    picked = np.concatenate(chosen)
    # Map in physical order so that physically adjacent pages are virtually adjacent too.
    return picked[np.argsort(paddr[picked], kind="stable")]


def virtual_alignment(phys: int, size: int, page_size: int) -> int:
    """The virtual alignment that matches a contiguous range's physical one: the largest
    power of two dividing ``phys``, at most the largest power of two <= ``size``, at least
    ``page_size``. With it, an offset aligned to 2**k is aligned to 2**k both ways."""
    low = phys & -phys if phys else 1 << 63
    return max(page_size, min(low, 1 << (size.bit_length() - 1)))


def _map_in_order(memfd: MemFd, pages: np.ndarray, page_size: int,
                  valign: int | None = None) -> Mapping:
    """One virtual range whose i-th page is file page ``pages[i]``, starting at a multiple
    of ``valign`` (default: the page size)."""
    total = len(pages) * page_size
    valign = page_size if valign is None else valign
    # Reserve an aligned stretch of address space first, then place the file pages in it.
    raw = _map.mmap(0, total + valign, _map.PROT_NONE,
                      _map.MAP_PRIVATE | _map.MAP_ANONYMOUS | _map.MAP_NORESERVE, -1, 0)
    if raw < 0:
        raise error_from_errno(-raw, f"cannot reserve {total} bytes of address space")
    base = (raw + valign - 1) // valign * valign
    if base > raw:
        _map.munmap(raw, base - raw)
    tail = raw + total + valign - (base + total)
    if tail:
        _map.munmap(base + total, tail)
    try:
        # One mmap call per run of consecutive file pages.
        for i, n in zip(*(r.tolist() for r in find_runs(pages))):
            ret = _map.mmap(base + i * page_size, n * page_size,
                            _map.PROT_READ | _map.PROT_WRITE,
                            _map.MAP_SHARED | _map.MAP_FIXED | _map.MAP_POPULATE, memfd.fd,
                              int(pages[i]) * page_size)
            if ret < 0:
                raise error_from_errno(-ret, "cannot map hugetlb pages in physical order")
    except BaseException:
        _map.munmap(base, total)
        raise
    # Mapped just above, whole and read-write: the public constructor's /proc/self/maps
    # check (about 1 ms, a sixth of faulting a 64 MiB buffer) would prove nothing new.
    return Mapping._wrap(base, total, page_size, Prot.READ | Prot.WRITE, True)


def _release_unused(memfd: MemFd, used: np.ndarray, count: int, page_size: int) -> None:
    """Punch every file page below ``count`` not in ``used`` back to the pool (and with it
    any reservation the file holds there)."""
    keep = np.zeros(count, dtype=bool)
    keep[used] = True
    for s, n in runs_of(~keep).tolist():
        memfd.punch_hole(s * page_size, n * page_size)


def _allocate(size: int | str, *, page_size: int | str | None, node: int | None, align: int | None,
              reserve_pages: bool, scatter: bool, max_segments: int | None,
              force: bool = False, pin: object = "auto",
              max_growth: int | str | None = None) -> DmaBuffer:
    reserve_pages = as_bool(reserve_pages, "reserve")
    force = as_bool(force, "force")
    nbytes = _check_size(size)
    ps = _page_size(page_size)
    _pool_dir(ps, node)  # validates node
    if align is None:
        align = ps
    align = as_power_of_two(align, "align")
    if max_segments is not None:
        max_segments = as_positive(max_segments, "max_segments")
    mode = check_mode(pin)
    n = -(-nbytes // ps)
    # Pages the buffer will hold pinned must first leave ZONE_MOVABLE and CMA, where a pin
    # would move them (and break the run they were chosen for).
    settle_first = mode is not False and needs_settling()
    growth = None
    if reserve_pages:
        growth = Growth(ps, node, force=force, max_pages=_growth_cap(max_growth, n, ps))
        if not scatter:
            _ask_first(n, ps, node, growth)
    elif max_growth is not None:
        raise InvalidArgument("max_growth applies with reserve=True only")
    try:
        return _allocate_from_pool(nbytes, ps, node, align, n, scatter, max_segments, growth,
                                   mode, settle_first)
    except BaseException:
        if growth is not None:
            growth.close()
        raise


def _allocate_from_pool(nbytes: int, ps: int, node: int | None, align: int, n: int,
                        scatter: bool, max_segments: int | None, growth: Growth | None,
                        pin: PinMode, settle_first: bool) -> DmaBuffer:
    cands = _Candidates(ps, node, growth, settle_first)
    # A growing search holds the pool lock from its first page to its last given back. The
    # kernel allocates a gigantic page (to demote) only in a 1 GiB range with no hugetlb page
    # in it, and a second allocator holding hundreds of scattered pages between two growths
    # leaves no such range; the growths themselves were serialised anyway.
    with growth.locked() if growth is not None else contextlib.nullcontext():
        try:
            chosen = _search(cands, nbytes, ps, node, align, n, scatter, max_segments, growth)
            paddr = cands.paddr[chosen]
            valign = None if scatter else virtual_alignment(int(paddr[0]), n * ps, ps)
            mapping = _map_in_order(cands.memfd, chosen, ps, valign)
            try:
                _release_unused(cands.memfd, chosen, max(len(cands), cands.reserved_end), ps)
            except BaseException:
                mapping.close()
                raise
        finally:
            cands.close()  # the mapping keeps the chosen pages; the file has no other pages
    try:
        return DmaBuffer._create(mapping, paddr, node=node, growth=growth, pin=pin,
                                 contiguous=not scatter)
    except BaseException:
        mapping.close()
        raise


def _search(cands: _Candidates, nbytes: int, ps: int, node: int | None, align: int, n: int,
            scatter: bool, max_segments: int | None, growth: Growth | None) -> np.ndarray:
    """Indices into ``cands`` of the pages to use (growing the pool where ``growth``);
    ContiguityUnavailable where none are found."""
    want = n + (align // ps - 1 if align > ps else 0)
    cap = _reserve_cap(n)

    def room() -> int:
        # What may still be taken: growth is capped, but pages the pool already holds
        # free cost only their zeroing, and a large pool of scattered free pages must be
        # got past before the adjacent pages a growth makes come out.
        if growth is None:
            return cap - len(cands)
        return growth.max_pages - growth.grown + growth.available()
    chosen = None
    longest = 0
    demoted = False
    growing = False
    regrowths = 0
    # A growing pool gives the buddy allocator's scattered single blocks first: grow
    # past them at once (see _overgrowth).
    more = want + (_overgrowth(want, ps, node) if growth is not None and not scatter else 0)
    while True:
        if growth is None:
            more = min(_free_pages(ps, node), more)
        try:
            got = cands.grow(more) if more > 0 else 0
        except HugePagesUnavailable:
            # Growth beyond the buffer's own pages is an optimisation, never the reason
            # to refuse it: where the memory margin refuses it, grow by what is missing.
            needed = max(0, min(more, want - len(cands)))
            if growth is None or needed == more:
                raise
            got = cands.grow(needed)
        if scatter:
            if len(cands) >= n:
                chosen = _pick_segments(cands.paddr, ps, n)
                segs = len(find_runs(cands.paddr[chosen], step=ps)[0])
                if max_segments is None or segs <= max_segments:
                    break
                longest = segs
                chosen = None
        else:
            chosen, longest = _best_fit(cands.paddr, ps, n, align)
            if chosen is not None:
                break
        if growth is None:
            # Ask for what is needed, then double: a fragmented pool costs a few rounds,
            # a tidy one (the usual case) faults in no page beyond the buffer.
            if got == 0:
                break
            more = max(want - len(cands), len(cands))
            continue
        # Growing: what else may make a run appear, cheapest first. Past the buddy
        # allocator's scattered free blocks (pages freed a moment ago reach it late);
        # then demoting gigantic pages, adjacent by construction but several times
        # dearer; then more pages, which come in no particular order but make a run
        # likelier, up to a cap.
        more = 0
        if not scatter and regrowths < 3:
            regrowths += 1
            extra = _overgrowth(n, ps, node)
            if extra and extra <= room():
                more = extra
                continue
        if not demoted:
            demoted = True
            # The pages held are scattered (no run among them): give them back first, so
            # that the cap, which bounds the pool at every moment, leaves room for the
            # gigantic page (overgrowth past hundreds of singles had used it up).
            if not scatter:
                cands.drop()
            if cands.demote(want):
                continue
        if room() <= 0 or (growing and got == 0):
            break
        growing = True
        more = min(max(n, len(cands)), room())
    if chosen is None:
        raise _unavailable(nbytes, ps, node, n, cands, longest, scatter, max_segments)
    return chosen


def _overgrowth(n: int, ps: int, node: int | None) -> int:
    """Pages to grow the pool by beyond ``n`` so that the growth ends in ``n`` adjacent ones.

    A growing pool takes the buddy allocator's free blocks of exactly ``ps`` first (each
    with a busy neighbour, scattered over memory), and only then splits larger blocks, whose
    pages come out adjacent. So the pool grows past those singles (two more for any the
    per-CPU lists hold), costing the zeroing of a few pages it gives straight back, where
    missing the run would cost the allocation of a gigantic page (3-5x the whole buffer's
    zeroing). 0 when the pool already holds ``n`` free pages, ``ps`` is no buddy order
    (gigantic pages), or the singles are so many (over ``_OVERGROW_MAX`` pages, and over
    3n) that zeroing them would cost more than demoting a gigantic page.
    """
    if _free_pages(ps, node) >= n:
        return 0
    order, high = _buddy_rows(ps, node)
    singles = sum(b.free[order] for b in high if order < len(b.free))
    return singles + 2 if 0 < singles <= max(3 * n, _OVERGROW_MAX) else 0


def _buddy_rows(ps: int, node: int | None) -> tuple[int, list[Any]]:
    """The buddy order of ``ps`` and the /proc/buddyinfo rows of the zones that serve
    hugepages first (Movable and Normal: hugepages are movable allocations)."""
    order = (ps // _base_page()).bit_length() - 1
    zones = [b for b in buddyinfo() if node is None or b.node == node]
    return order, [b for b in zones if b.zone in ("Movable", "Normal")] or zones


def _ask_first(n: int, ps: int, node: int | None, growth: Growth) -> None:
    """Before growing a pool for ``n`` adjacent pages, ask the forecast whether the kernel can
    give them: "no" fails now with its numbers and advice, in the forecast's time, where
    growing the pool to find out took up to a minute and most of memory; "after compaction"
    compacts first; and growth is capped at the free memory the forecast counts.

    Small growths on a machine whose free blocks of the page's order could hold them twice
    over go straight ahead: asking costs more (tens of ms) than such a growth, and a miss
    there is bounded by ``max_growth``. Without /proc/kpageflags (not root) there is no
    forecast, and the growth is bounded by ``max_growth`` alone."""
    short = n - growth.available()
    if short <= 0:
        return
    growth.check_memory(short)  # beyond the memory margin: that refusal names --force
    if n * ps < _ASK_FROM:
        order, high = _buddy_rows(ps, node)
        blocks = sum(count << (o - order) for b in high
                     for o, count in enumerate(b.free) if o >= order)
        if blocks >= 2 * short:
            return
    from ..analysis.runcheck import run_obtainable
    from ..errors import PermissionDenied
    from ..hugepages.reservation import compact

    try:
        answer = run_obtainable(n, ps, node, drain=False)
    except PermissionDenied:
        return
    if answer.verdict == "no":
        raise ContiguityUnavailable(
            f"cannot allocate {format_size(n * ps)} of physically contiguous memory: "
            f"{answer.advice} (forecast in {answer.seconds:.2f} s; the pool was not grown)",
            longest=answer.longest_after_compaction * ps, wanted=n * ps)
    growth.limit(answer.free_pages)
    if answer.verdict == "after-compaction":
        compact(node)


_ASK_FROM = 128 << 20  # buffers from this size on always ask the forecast first


_OVERGROW_MAX = 128  # 2 MiB pages zeroed in about the time a 1 GiB page takes to allocate


def _growth_cap(max_growth: int | str | None, n: int, ps: int) -> int:
    """``max_growth`` (bytes, or a size such as "1G"; None: 8 times the buffer and 1 GiB
    more) in pages of ``ps``, at least the buffer's own pages. The default leaves room for one
    demoted gigantic page, the last way to a run on a machine whose free pages are scattered."""
    if max_growth is None:
        return 8 * n + max(1, (1 << 30) // ps)
    limit = _check_size(max_growth, "max_growth")
    if limit < n * ps:
        raise InvalidArgument(f"max_growth {format_size(limit)} is less than the buffer "
                              f"({format_size(n * ps)}): the pool must grow by at least that")
    return limit // ps


def _reserve_cap(n: int) -> int:
    """Most pages reserve=True will hold while looking for a run of ``n``."""
    return 8 * n + 256


def _unavailable(size: int, ps: int, node: int | None, n: int, cands: _Candidates,
                 longest: int, scatter: bool, max_segments: int | None) -> ContiguityUnavailable:
    where = "" if node is None else f" on node {node}"
    # Counts as "label: N", right for 1 as for any other number.
    pool = f"free pages in the {format_size(ps)} pool{where}: {len(cands)}"
    if scatter and len(cands) >= n:
        return ContiguityUnavailable(
            f"{format_size(size)} needs more segments of {format_size(ps)} pages than "
            f"max_segments={max_segments} (segments needed: {longest}); {pool}",
            longest=0, wanted=size)
    if len(cands) < n:
        what = "scatter" if scatter else "contiguous"
        return ContiguityUnavailable(
            f"cannot allocate a {format_size(size)} {what} buffer of {format_size(ps)} "
            f"pages: pages needed: {n}, {pool}. Reserve more "
            f"(physmem.hugepages.reserve({n}, {ps}) or "
            f"`physmem hugepages reserve {n} --size {format_size(ps)}`), or pass reserve=True.\n"
            f"free memory by order:\n{_describe_free_memory()}",
            longest=longest * ps, wanted=size)
    return ContiguityUnavailable(
        f"no {format_size(size)} physically contiguous run: the longest run of adjacent "
        f"{format_size(ps)} pages is {format_size(longest * ps)} ({longest} x "
        f"{format_size(ps)}); {pool}. "
        "Compact memory and grow the pool (physmem.hugepages.compact(), then reserve), use "
        "larger pages, or accept a scatter buffer (allocate_scatter).\n"
        f"free memory by order:\n{_describe_free_memory()}",
        longest=longest * ps, wanted=size)


def allocate_contiguous(size: int | str, *, page_size: int | str | None = None,
                        node: int | None = None, align: int | None = None,
                        reserve: bool = False, force: bool = False,
                        pin: PinMode = "auto",
                        max_growth: int | str | None = None) -> DmaBuffer:
    """A buffer whose virtual and physical addresses are both contiguous.

    ``size`` is rounded up to whole hugepages of ``page_size`` (default: the default hugepage
    size, 2 MiB on x86-64; ``"1G"`` for gigantic pages). ``node`` takes pages from that NUMA
    node; ``align`` makes the physical start a multiple of it. The virtual start is aligned
    like the physical one (see :func:`virtual_alignment`). Raises
    :class:`ContiguityUnavailable` with the longest run found if no run is long enough.

    ``pin`` keeps the kernel from moving the pages (see :mod:`physmem.dma.pin`): ``"auto"``
    pins where the kernel allows and otherwise says why in ``buf.pin_error``; ``True``
    requires it (:class:`~physmem.errors.PinUnavailable` names the cause and the fix);
    ``False`` leaves the pages mlocked only, which memory offline, compaction and NUMA
    migration do not respect.

    ``reserve=True`` (root) grows the pool by what is needed, demoting a gigantic page into
    adjacent pages if that is what it takes, and gives the growth back before returning:
    the buffer's pages are surplus pages, which the kernel frees when they are unmapped, so
    the pools are as they were after close(), a normal exit, SIGKILL or the OOM killer
    alike, and concurrent allocations in other processes compose (see
    :mod:`physmem.hugepages.growth`). Growth into the last few percent of MemAvailable is
    refused unless ``force`` (see :func:`physmem.hugepages.reserve`). Before growing, it asks
    the contiguity forecast whether the run can be had at all, and fails at once (with the
    forecast's numbers and advice) where it cannot; ``max_growth`` (bytes or "1G"; default
    8 times the buffer and 1 GiB more) caps the pages the pool may grow by for it, at every
    moment.
    """
    return _allocate(size, page_size=page_size, node=node, align=align, reserve_pages=reserve,
                     scatter=False, max_segments=None, force=force, pin=pin,
                     max_growth=max_growth)


def allocate_scatter(size: int | str, *, page_size: int | str | None = None,
                     node: int | None = None, max_segments: int | None = None,
                     reserve: bool = False, force: bool = False,
                     pin: PinMode = "auto",
                     max_growth: int | str | None = None) -> DmaBuffer:
    """A buffer of hugepages in as few physically contiguous segments as the pool allows.

    ``reserve``, ``force``, ``pin`` and ``max_growth`` as for :func:`allocate_contiguous`."""
    return _allocate(size, page_size=page_size, node=node, align=None, reserve_pages=reserve,
                     scatter=True, max_segments=max_segments, force=force, pin=pin,
                     max_growth=max_growth)


def longest_contiguous(page_size: int | str | None = None, node: int | None = None) -> int:
    """Bytes of the longest physically contiguous run the pool's free pages hold right now.

    The free pages are found in /proc/kpageflags and /proc/kpagecount (root), without
    taking or zeroing them. Where that cannot tell free pages from ones held unmapped in a
    hugetlbfs file, or without root, it takes every free page for a moment to look (then
    gives them all back). Either way the answer holds at that instant only.
    """
    ps = _page_size(page_size)
    _pool_dir(ps, node)
    from ..analysis.contiguity import longest_pool_run
    from ..errors import PermissionDenied

    try:
        found = longest_pool_run(ps, node)
    except PermissionDenied:
        found = None
    if found is not None:
        return found
    cands = _Candidates(ps, node)
    try:
        cands.grow(_free_pages(ps, node))
        if not len(cands):
            return 0
        _, _, lengths = _runs(cands.paddr, ps)
        return int(lengths.max()) * ps
    finally:
        cands.close()

