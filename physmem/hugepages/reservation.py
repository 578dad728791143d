"""Growing hugepage pools on purpose, checking what the kernel actually gave, and giving it back.

Writing ``nr_hugepages`` is a request, not a promise: the kernel allocates what it can and
silently stops short when memory is fragmented. :func:`reserve` reads the pool back and says
so, with the free-memory picture that explains why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple

from .. import _sysfs, sysctl
from .._args import as_nonneg
from .._sysfs import read_int
from .._syntax import parse_size
from ..errors import (
    FileMissing,
    HugePagesUnavailable,
    InvalidArgument,
)
from ._pools import default_size, supported_sizes
from .sizes import explain_size, format_size

if TYPE_CHECKING:
    from .guard import PoolGuard

__all__ = ["Reservation", "HugetlbfsMount", "reserve", "set_pool_size", "demote", "demote_size",
           "compact", "mounts", "pool_dir", "parse_size", "resolve_size", "describe_free_memory",
           "persistent_pages", "MEMORY_MARGIN_FRACTION", "MEMORY_MARGIN_MIN"]

def resolve_size(size: int | str | None, proc_root: str = "/proc") -> int:
    """A page size in bytes from ``2M``/``1G``/bytes, or the kernel's default for None."""
    resolved = default_size(proc_root) if size is None else parse_size(size)
    if resolved is None:
        raise InvalidArgument("this kernel has no hugetlb support (no Hugepagesize in meminfo)")
    return resolved


def pool_dir(size: int, node: int | None = None, *, sys_root: str = "/sys") -> str:
    """The sysfs directory of the ``size`` pool (global, or of NUMA ``node``), checked."""
    if size not in supported_sizes(sys_root):
        why = explain_size(size, sys_root=sys_root) or ""
        raise InvalidArgument(f"no {format_size(size)} hugepage pool: {why}")
    leaf = f"hugepages/hugepages-{size // 1024}kB"
    if node is None:
        return f"{sys_root}/kernel/mm/{leaf}"
    if isinstance(node, bool) or not isinstance(node, int) or node < 0:
        raise InvalidArgument(f"node {node!r} must be a non-negative integer")
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


def persistent_pages(directory: str) -> int:
    """The pool's persistent size: ``nr_hugepages`` less its surplus pages.

    This, not ``nr_hugepages``, is what writing ``nr_hugepages`` sets: writing back a total
    read while surplus pages existed would turn them into persistent pages (a leak).
    """
    return _count(directory, "nr_hugepages") - _count(directory, "surplus_hugepages")


# reserve() refuses to grow a pool into the last MEMORY_MARGIN_FRACTION of RAM (at least
# MEMORY_MARGIN_MIN bytes) of MemAvailable: hugepages are taken from the page allocator at
# once and nothing can reclaim them, so the rest of the system would be pushed into OOM.
MEMORY_MARGIN_FRACTION = 0.05
MEMORY_MARGIN_MIN = 256 << 20


def _memory_allowance(proc_root: str) -> tuple[int, int, int] | None:
    """(bytes a pool may grow by, MemAvailable, margin), or None without MemAvailable."""
    from ..proc import meminfo

    info = meminfo(proc_root=proc_root)
    available, total = info.get("MemAvailable"), info.get("MemTotal")
    if available is None or total is None:
        return None
    margin = max(MEMORY_MARGIN_MIN, int(total * MEMORY_MARGIN_FRACTION))
    return max(0, available - margin), available, margin


def _check_memory(pages: int, size: int, node: int | None, proc_root: str) -> None:
    allowance = _memory_allowance(proc_root)
    if pages <= 0 or allowance is None or pages * size <= allowance[0]:
        return
    allowed, available, margin = allowance
    where = "" if node is None else f" on node {node}"
    raise HugePagesUnavailable(
        f"refusing to grow the {format_size(size)} hugepage pool{where} by {pages} pages "
        f"({_human(pages * size)}): MemAvailable is {_human(available)}, and a margin of "
        f"{_human(margin)} is kept for the rest of the system, which leaves "
        f"{_human(allowed)} ({allowed // size} pages). Ask for fewer pages, free memory, "
        "or pass force=True to take it anyway",
        obtained=0, wanted=pages, size=size, node=node)


def _human(nbytes: int) -> str:
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if nbytes >= unit:
            return f"{nbytes / unit:.1f} {name}"
    return f"{nbytes} bytes"


def set_pool_size(total: int, size: int | str | None = None, node: int | None = None, *,
                  sys_root: str = "/sys", proc_root: str = "/proc") -> int:
    """Set a pool's page count (no restore: for administration); returns the count now."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise InvalidArgument(f"total {total!r} must be a non-negative integer")
    size = resolve_size(size, proc_root)
    directory = pool_dir(size, node, sys_root=sys_root)
    _write_total(directory, total)
    return _count(directory, "nr_hugepages")


def _write_total(directory: str, total: int) -> None:
    _sysfs.write(f"{directory}/nr_hugepages", total, "cannot resize the hugepage pool")


def describe_free_memory(proc_root: str = "/proc") -> str:
    """buddyinfo as one line per zone: what contiguous free memory the kernel has."""
    from ..proc import buddyinfo

    try:
        rows = buddyinfo(proc_root=proc_root)
    except OSError:
        return "  (buddyinfo unreadable)"
    return "\n".join(f"  node {r.node} {r.zone:<8} free blocks by order 0..{len(r.free) - 1}: "
                     + " ".join(str(n) for n in r.free) for r in rows)


# False only in tests: Reservation.to_surplus() then writes the pool down to its pages in use
# and no further, which is what a kernel that will not turn them into surplus pages leaves
# behind, so that the restore-on-close fallback runs, for real, against this kernel.
_surplus_conversion = True


@dataclass
class Reservation:
    """A pool grown by :func:`reserve`; :meth:`release` (or leaving the ``with``) restores it.

    ``previous`` is ``nr_hugepages`` before, ``previous_surplus`` the surplus pages it
    included; release restores the persistent size, ``previous - previous_surplus``. The
    growth is persistent until then: a process killed before it releases leaves the pool
    grown, unless a :class:`~physmem.hugepages.guard.PoolGuard` was armed for it; ``guard``
    is one this reservation owns, disarmed once the pool is restored.
    """

    size: int
    node: int | None
    previous: int
    total: int
    free: int
    path: str
    released: bool = field(default=False)
    previous_surplus: int = 0
    guard: PoolGuard | None = field(default=None, repr=False)

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
        before = _count(self.path, "nr_hugepages")
        _write_total(self.path, before + extra)
        self.total = _count(self.path, "nr_hugepages")
        self.free = _count(self.path, "free_hugepages")
        return max(0, self.total - before)

    def refresh(self) -> None:
        """Re-read the pool's counts (after something else, such as demotion, changed it)."""
        self.total = _count(self.path, "nr_hugepages")
        self.free = _count(self.path, "free_hugepages")

    @property
    def persistent(self) -> int:
        """The pool's persistent size before the reservation: what :meth:`release` restores."""
        return self.previous - self.previous_surplus

    def release(self) -> None:
        """Put the pool back to its previous size (pages in use become surplus, freed later)."""
        if not self.released:
            _write_total(self.path, self.persistent)
            self.released = True
        if self.guard is not None:
            self.guard.disarm()

    def to_surplus(self) -> bool:
        """Give the growth back now, leaving the pages still in use as surplus pages.

        The kernel frees a surplus page to the page allocator as soon as its last user lets
        go, so from here on nothing is left to restore: not on close, not after SIGKILL.
        Free pages beyond the previous size leave the pool at once. Returns False, the pool
        still grown and the reservation unreleased, where the kernel kept the pages
        persistent instead (then only :meth:`release` restores the pool).
        """
        if self.released:
            return True
        target = self.persistent
        if not _surplus_conversion:
            # Acting as a kernel that keeps pages in use persistent: the free pages go, the
            # rest stays in the pool, as such a kernel would leave it.
            target = max(target, _count(self.path, "nr_hugepages")
                         - _count(self.path, "free_hugepages"))
        _write_total(self.path, target)
        if persistent_pages(self.path) > self.persistent:
            return False  # release() writes it again once the pages are free
        self.released = True
        self.refresh()
        if self.guard is not None:
            self.guard.disarm()
        return True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def reserve(count: int, size: int | str | None = None, node: int | None = None, *,
            allow_partial: bool = False, force: bool = False, sys_root: str = "/sys",
            proc_root: str = "/proc", progress: Callable[[int, int], None] | None = None,
            guard: PoolGuard | None = None) -> Reservation:
    """Make at least ``count`` free pages of ``size`` (default: the default hugepage size)
    available, in the global pool or NUMA ``node``'s.

    The pool grows by the shortfall only. If the kernel gives fewer pages than asked, the
    pool is put back and :class:`HugePagesUnavailable` raised (with the obtained count and
    buddyinfo), unless ``allow_partial``. Needs root. With ``progress(done, wanted)``
    the pool grows a page at a time (gigantic pages can take seconds each) and reports.

    Growth that would eat into the last few percent of MemAvailable (see
    ``MEMORY_MARGIN_FRACTION``) is refused with the numbers, unless ``force``. The pool stays
    grown until :meth:`Reservation.release`, also if this process is killed, unless
    ``guard`` (a :class:`~physmem.hugepages.guard.PoolGuard`) is given: it is armed with the
    pool's previous persistent size before the pool is written. The caller disarms it.
    """
    count = as_nonneg(count, "count")
    size = resolve_size(size, proc_root)
    directory = pool_dir(size, node, sys_root=sys_root)
    previous = _count(directory, "nr_hugepages")
    surplus = _count(directory, "surplus_hugepages")
    free = _count(directory, "free_hugepages")
    target = previous + max(0, count - free)
    if not force and target != previous:
        _check_memory(target - previous, size, node, proc_root)
    if guard is not None:  # also when nothing is written now: demotion may grow it later
        guard.arm(f"{directory}/nr_hugepages", previous - surplus)
    if progress is not None:
        for step in range(previous + 1, target + 1):
            _write_total(directory, step)
            if _count(directory, "nr_hugepages") < step:
                break  # the kernel found no more: the check below reports it
            progress(step - previous, target - previous)
    elif target != previous:
        _write_total(directory, target)
    if progress is None and target == previous:
        total, free_now = previous, free  # nothing written: the counts read above stand
    else:
        total = _count(directory, "nr_hugepages")
        free_now = _count(directory, "free_hugepages")
    res = Reservation(size=size, node=node, previous=previous, total=total, free=free_now,
                      path=directory, previous_surplus=surplus)
    if free_now < count and not allow_partial:
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
            f"{free_now} (pool total {total}, was {previous}); {advice}.\n"
            f"free memory by order:\n{describe_free_memory(proc_root)}",
            obtained=free_now, wanted=count, size=size, node=node)
    return res


def demote(count: int, size: int | str, node: int | None = None, *,
           sys_root: str = "/sys") -> int:
    """Split up to ``count`` free pages of ``size`` into pages of its ``demote_size``
    (Linux 5.16+; a 1 GiB page becomes 512 physically adjacent 2 MiB pages).

    Returns how many pages of ``size`` were demoted. Needs root.
    """
    size = parse_size(size)
    directory = pool_dir(size, node, sys_root=sys_root)
    path = f"{directory}/demote"
    if not _sysfs.exists(path):
        from ..errors import FeatureUnavailable

        raise FeatureUnavailable(f"hugepage demotion is not available for {format_size(size)} "
                                 "pages (added in Linux 5.16)", path=path)
    before = _count(directory, "nr_hugepages")
    _sysfs.write(path, count, "cannot demote hugepages")
    return max(0, before - _count(directory, "nr_hugepages"))


def demote_size(size: int | str, node: int | None = None, *, sys_root: str = "/sys") -> int | None:
    """The page size ``size`` pages demote to, or None where the kernel cannot demote them."""
    directory = pool_dir(parse_size(size), node, sys_root=sys_root)
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
    if isinstance(node, bool) or not isinstance(node, int) or node < 0:
        raise InvalidArgument(f"node {node!r} must be a non-negative integer")
    path = f"{sys_root}/devices/system/node/node{node}/compact"
    if not _sysfs.exists(path):
        raise InvalidArgument(f"NUMA node {node} does not exist or cannot be compacted ({path})")
    _sysfs.write(path, 1, "cannot compact memory")


class HugetlbfsMount(NamedTuple):
    """A mounted hugetlbfs: where, its page size in bytes, and its mount options."""

    path: str
    page_size: int
    options: tuple[str, ...]


def mounts(proc_root: str = "/proc") -> list[HugetlbfsMount]:
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
