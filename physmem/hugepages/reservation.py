"""Growing hugepage pools on purpose, checking what the kernel actually gave, and giving it back.

Writing ``nr_hugepages`` is a request, not a promise: the kernel allocates what it can and
silently stops short when memory is fragmented. :func:`reserve` reads the pool back and says
so, with the free-memory picture that explains why.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from .. import _sysfs, sysctl
from .._args import as_nonneg
from .._raw import poolguard as _claims
from .._sysfs import read_int
from .._syntax import format_size, parse_size
from ..errors import (
    FileMissing,
    HugePagesUnavailable,
    InvalidArgument,
    error_from_errno,
)
from ._ledger import Claim, pool_lock
from .._hugepools import default_size, supported_sizes
from .sizes import explain_size, format_size

__all__ = ["Reservation", "HugetlbfsMount", "reserve", "set_pool_size", "release_free",
           "stuck_surplus", "free_stuck_surplus", "demote", "demote_size", "compact",
           "hugetlbfs_mounts"]

def _resolve_size(size: int | str | None, proc_root: str = "/proc") -> int:
    """A page size in bytes from ``2M``/``1G``/bytes, or the kernel's default for None."""
    resolved = default_size(proc_root) if size is None else parse_size(size)
    if resolved is None:
        raise InvalidArgument("this kernel has no hugetlb support (no Hugepagesize in meminfo)")
    return resolved


def _pool_dir(size: int, node: int | None = None, *, sys_root: str = "/sys") -> str:
    """The sysfs directory of the ``size`` pool (global, or of NUMA ``node``), checked."""
    if size not in supported_sizes(sys_root):
        why = explain_size(size, sys_root=sys_root) or ""
        raise InvalidArgument(f"no {format_size(size)} hugepage pool: {why}")
    leaf = f"hugepages/hugepages-{size // 1024}kB"
    if node is None:
        return f"{sys_root}/kernel/mm/{leaf}"
    node = as_nonneg(node, "node")
    path = f"{sys_root}/devices/system/node/node{node}/{leaf}"
    if not _sysfs.is_dir(path):
        have = sorted(int(d[4:]) for d in _sysfs.listdir(f"{sys_root}/devices/system/node")
                      if re.fullmatch(r"node\d+", d))
        raise InvalidArgument(f"NUMA node {node} does not exist (nodes: {have})")
    return path


def _count(directory: str, name: str) -> int:
    value = read_int(f"{directory}/{name}")
    if value is None:
        raise FileMissing(f"{directory}/{name} is missing", path=f"{directory}/{name}")
    return value


def _persistent_pages(directory: str) -> int:
    """The pool's persistent size: ``nr_hugepages`` less its surplus pages.

    This, not ``nr_hugepages``, is what writing ``nr_hugepages`` sets: writing back a total
    read while surplus pages existed would turn them into persistent pages (a leak).
    """
    return _count(directory, "nr_hugepages") - _count(directory, "surplus_hugepages")


# reserve() refuses to grow a pool into the last _MEMORY_MARGIN_FRACTION of RAM (at least
# _MEMORY_MARGIN_MIN bytes) of MemAvailable: hugepages are taken from the page allocator at
# once and nothing can reclaim them, so the rest of the system would be pushed into OOM.
_MEMORY_MARGIN_FRACTION = 0.05
_MEMORY_MARGIN_MIN = 256 << 20


def _memory_allowance(proc_root: str) -> tuple[int, int, int] | None:
    """(bytes a pool may grow by, MemAvailable, margin), or None without MemAvailable."""
    from ..proc import meminfo

    info = meminfo(proc_root=proc_root)
    available, total = info.get("MemAvailable"), info.get("MemTotal")
    if available is None or total is None:
        return None
    margin = max(_MEMORY_MARGIN_MIN, int(total * _MEMORY_MARGIN_FRACTION))
    return max(0, available - margin), available, margin


def _check_memory(pages: int, size: int, node: int | None, proc_root: str) -> None:
    allowance = _memory_allowance(proc_root)
    if pages <= 0 or allowance is None or pages * size <= allowance[0]:
        return
    allowed, available, margin = allowance
    where = "" if node is None else f" on node {node}"
    asked, have, kept, left = (format_size(n, exact=False)
                               for n in (pages * size, available, margin, allowed))
    raise HugePagesUnavailable(
        f"refusing to grow the {format_size(size)} hugepage pool{where} by {pages} pages "
        f"({asked}): MemAvailable is {have}, and a margin of {kept} is kept for the rest of "
        f"the system, which leaves {left} ({allowed // size} pages). Ask for fewer pages, "
        "free memory, "
        "or pass force=True to take it anyway",
        obtained=0, wanted=pages, size=size, node=node)


def _write(path: str, value: int) -> None:
    _sysfs.write(path, value, "cannot resize the hugepage pool")


def _set_persistent(directory: str, target: int) -> None:
    """Make the pool's persistent size ``target`` (under the pool lock), surplus pages in
    use staying surplus: the C core writes the current total first where surplus pages
    exist (see csrc/poolguard.h for why a lone write of the target leaks)."""
    path = f"{directory}/nr_hugepages"
    ret = _claims.undo(_claims.claim_bytes(os.fsencode(path), _claims.TOTAL, _claims.PENDING,
                                           max(0, target), 0))
    if ret < 0:
        raise error_from_errno(-ret, "cannot resize the hugepage pool", path=path)


def _grow_total(directory: str, extra: int, claim: Claim | None = None) -> int:
    """Add ``extra`` persistent pages (under the pool lock); returns how many the kernel
    added. ``claim`` records the change before and after the write."""
    if extra <= 0:
        return 0
    total = _count(directory, "nr_hugepages")
    before = total - _count(directory, "surplus_hugepages")
    if claim is not None:
        claim.pending(before)
    # Relative to the total, not the persistent size: writing a total converts surplus
    # pages (other buffers' pages in use) into persistent ones first, so only what lies
    # beyond the current total is new memory.
    _write(f"{directory}/nr_hugepages", total + extra)
    after = _persistent_pages(directory)
    if claim is not None:
        claim.held(after - before)
    return max(0, _count(directory, "nr_hugepages") - total)


def set_pool_size(total: int, size: int | str | None = None, node: int | None = None, *,
                  sys_root: str = "/sys", proc_root: str = "/proc") -> int:
    """Set a pool's persistent size (no restore: for administration); returns the total
    now. Pages in use beyond it stay until freed (as surplus pages)."""
    total = as_nonneg(total, "total")
    size = _resolve_size(size, proc_root)
    directory = _pool_dir(size, node, sys_root=sys_root)
    with pool_lock():
        _set_persistent(directory, total)
    return _count(directory, "nr_hugepages")


def release_free(count: int | None, size: int | str | None = None, node: int | None = None,
                 *, sys_root: str = "/sys", proc_root: str = "/proc") -> int:
    """Give up to ``count`` (None: all) free, unreserved pages of a pool back to the system,
    relative to its size now; returns how many went."""
    size = _resolve_size(size, proc_root)
    directory = _pool_dir(size, node, sys_root=sys_root)
    with pool_lock():
        free = _count(directory, "free_hugepages")
        reserved = read_int(f"{directory}/resv_hugepages") or 0
        persistent = _persistent_pages(directory)
        give = min(max(0, free - reserved), persistent)
        if count is not None:
            give = min(give, as_nonneg(count, "count"))
        if give:
            _set_persistent(directory, persistent - give)
        return max(0, persistent - _persistent_pages(directory))


def stuck_surplus(size: int | str | None = None, node: int | None = None, *,
                  sys_root: str = "/sys", proc_root: str = "/proc") -> int:
    """Free pages the kernel counts as surplus but will never free: surplus beyond the
    pages in use and reserved. They arise when a pool is shrunk while surplus pages are in
    use and free persistent pages exist (the kernel then counts free pages as surplus);
    writing ``nr_hugepages = 0`` does not free them."""
    size = _resolve_size(size, proc_root)
    directory = _pool_dir(size, node, sys_root=sys_root)
    nr, free = _count(directory, "nr_hugepages"), _count(directory, "free_hugepages")
    surplus = _count(directory, "surplus_hugepages")
    reserved = read_int(f"{directory}/resv_hugepages") or 0
    return max(0, surplus - (nr - free) - reserved)


def free_stuck_surplus(size: int | str | None = None, node: int | None = None, *,
                       sys_root: str = "/sys", proc_root: str = "/proc") -> int:
    """Free the pages :func:`stuck_surplus` counts (the current total written, then the
    persistent size); returns how many went."""
    size = _resolve_size(size, proc_root)
    directory = _pool_dir(size, node, sys_root=sys_root)
    with pool_lock():
        stuck = stuck_surplus(size, node, sys_root=sys_root, proc_root=proc_root)
        if not stuck:
            return 0
        nr = _count(directory, "nr_hugepages")
        _set_persistent(directory, _persistent_pages(directory))
        return max(0, nr - _count(directory, "nr_hugepages"))


def _describe_free_memory(proc_root: str = "/proc") -> str:
    """buddyinfo as one line per zone: what contiguous free memory the kernel has."""
    from ..proc import buddyinfo

    try:
        rows = buddyinfo(proc_root=proc_root)
    except OSError:
        return "  (buddyinfo unreadable)"
    return "\n".join(f"  node {r.node} {r.zone:<8} free blocks by order 0..{len(r.free) - 1}: "
                     + " ".join(str(n) for n in r.free) for r in rows)


@dataclass
class Reservation:
    """A pool grown by :func:`reserve`; :meth:`release` (or leaving the ``with``) gives the
    growth back.

    ``previous`` is ``nr_hugepages`` before, ``grown`` the persistent pages this reservation
    added and has not given back: release takes exactly those away again, relative to the
    pool's size then, so reservations of several processes compose. The growth is persistent
    until then, also if this process exits (that is the point of reserving).
    """

    size: int
    node: int | None
    previous: int
    total: int
    free: int
    path: str
    grown: int = 0
    released: bool = field(default=False)

    def extend(self, extra: int, *, force: bool = False, proc_root: str = "/proc") -> int:
        """Grow the pool by up to ``extra`` more pages; returns how many the kernel added.

        Like :func:`reserve`, stays out of the memory margin unless ``force``: ``extra`` is
        cut to what MemAvailable allows (0 when nothing is)."""
        if self.released:
            raise InvalidArgument("the reservation was released")
        extra = as_nonneg(extra, "extra")
        allowance = None if force else _memory_allowance(proc_root)
        if allowance is not None:
            extra = min(extra, allowance[0] // self.size)
        if extra == 0:
            return 0
        with pool_lock():
            before = _persistent_pages(self.path)
            added = _grow_total(self.path, extra)
            self.grown += _persistent_pages(self.path) - before
            self.refresh()
        return added

    def refresh(self) -> None:
        """Re-read the pool's counts."""
        self.total = _count(self.path, "nr_hugepages")
        self.free = _count(self.path, "free_hugepages")

    def release(self) -> None:
        """Give the growth back (pages in use beyond the pool's size become surplus pages,
        freed when their users let go)."""
        if self.released:
            return
        with pool_lock():
            if self.grown:
                _set_persistent(self.path, _persistent_pages(self.path) - self.grown)
            self.grown = 0
            self.released = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def reserve(count: int, size: int | str | None = None, node: int | None = None, *,
            allow_partial: bool = False, force: bool = False, sys_root: str = "/sys",
            proc_root: str = "/proc", progress: Callable[[int, int], None] | None = None
            ) -> Reservation:
    """Make at least ``count`` free pages of ``size`` (default: the default hugepage size)
    available, in the global pool or NUMA ``node``'s.

    The pool grows by the shortfall only, under the system-wide pool lock and relative to
    its size then. If the kernel gives fewer pages than asked, the growth is given back and
    :class:`HugePagesUnavailable` raised (with the obtained count and buddyinfo), unless
    ``allow_partial``. Needs root. With ``progress(done, wanted)`` the pool grows a page at
    a time (gigantic pages can take seconds each) and reports.

    Growth that would eat into the last 5% of MemTotal (at least 256 MiB) of MemAvailable
    is refused with the numbers, unless ``force``. The pool stays
    grown until :meth:`Reservation.release`, also after this process exits.
    """
    count = as_nonneg(count, "count")
    size = _resolve_size(size, proc_root)
    directory = _pool_dir(size, node, sys_root=sys_root)
    with pool_lock():
        previous = _count(directory, "nr_hugepages")
        free = _count(directory, "free_hugepages") - (read_int(f"{directory}/resv_hugepages") or 0)
        shortfall = max(0, count - max(0, free))
        if not force and shortfall:
            _check_memory(shortfall, size, node, proc_root)
        res = Reservation(size=size, node=node, previous=previous, total=previous,
                          free=free, path=directory)
        try:
            if progress is not None:
                for step in range(1, shortfall + 1):
                    if res.extend(1, force=True, proc_root=proc_root) == 0:
                        break  # the kernel found no more: the check below reports it
                    progress(step, shortfall)
            elif shortfall:
                res.extend(shortfall, force=True, proc_root=proc_root)
            res.refresh()
        except BaseException:
            res.release()
            raise
        if res.free < count and not allow_partial:
            res.release()
            where = "" if node is None else f" on node {node}"
            boot = f"hugepagesz={format_size(size)} hugepages={count}"
            advice = ("gigantic pages need contiguous 1 GiB blocks, which a running system "
                      f"rarely has: reserve them at boot with `{boot}`"
                      if size >= 1 << 30 else
                      "compact memory and retry (physmem.hugepages.compact(), or "
                      f"`echo 1 > /proc/sys/vm/compact_memory`), or reserve at boot with `{boot}`")
            raise HugePagesUnavailable(
                f"asked for {count} free {format_size(size)} hugepages{where}, the kernel gave "
                f"{res.free} (pool total {res.total}, was {previous}); {advice}.\n"
                f"free memory by order:\n{_describe_free_memory(proc_root)}",
                obtained=res.free, wanted=count, size=size, node=node)
    return res


def demote(count: int, size: int | str, node: int | None = None, *,
           sys_root: str = "/sys") -> int:
    """Split up to ``count`` free pages of ``size`` into pages of its ``demote_size``
    (Linux 5.16+; a 1 GiB page becomes 512 physically adjacent 2 MiB pages).

    Returns how many pages of ``size`` were demoted. Needs root.
    """
    size = parse_size(size)
    directory = _pool_dir(size, node, sys_root=sys_root)
    path = f"{directory}/demote"
    if not _sysfs.exists(path):
        from ..errors import FeatureUnavailable

        raise FeatureUnavailable(f"hugepage demotion is not available for {format_size(size)} "
                                 "pages (added in Linux 5.16)", path=path)
    with pool_lock():
        before = _count(directory, "nr_hugepages")
        _sysfs.write(path, count, "cannot demote hugepages")
        return max(0, before - _count(directory, "nr_hugepages"))


def demote_size(size: int | str, node: int | None = None, *, sys_root: str = "/sys") -> int | None:
    """The page size ``size`` pages demote to, or None where the kernel cannot demote them."""
    directory = _pool_dir(parse_size(size), node, sys_root=sys_root)
    try:
        data = _sysfs.read_optional(f"{directory}/demote_size")
    except OSError:
        return None
    return None if data is None else parse_size(data.strip().decode())


def compact(node: int | None = None, *, sys_root: str = "/sys", proc_root: str = "/proc") -> None:
    """Ask the kernel to compact memory (all nodes, or one), making large free blocks."""
    if node is None:
        sysctl.write("vm.compact_memory", 1, proc_root=proc_root)
        return
    node = as_nonneg(node, "node")
    path = f"{sys_root}/devices/system/node/node{node}/compact"
    if not _sysfs.exists(path):
        raise InvalidArgument(f"NUMA node {node} does not exist or cannot be compacted ({path})")
    _sysfs.write(path, 1, "cannot compact memory")


class HugetlbfsMount(NamedTuple):
    """A mounted hugetlbfs: where, its page size in bytes, and its mount options."""

    path: str
    page_size: int
    options: tuple[str, ...]


def hugetlbfs_mounts(proc_root: str = "/proc") -> list[HugetlbfsMount]:
    """hugetlbfs mount points of this process's mount namespace."""
    from ..proc import mounts as all_mounts

    out = []
    default = None
    for mnt in all_mounts(proc_root):
        if mnt.fstype != "hugetlbfs":
            continue
        size = next((parse_size(o[9:]) for o in mnt.options if o.startswith("pagesize=")), None)
        if size is None:
            default = default if default is not None else default_size(proc_root)
            size = default or 0
        out.append(HugetlbfsMount(mnt.path, size, mnt.options))
    return out
