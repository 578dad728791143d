"""The part of :mod:`physmem.kpageflags` that needs no numpy: flag names, the page-types
style summary and the threads that split a whole-machine scan.

``physmem kpageflags --summary`` runs on this module alone, so the command starts without
numpy's ~80 ms import; :mod:`physmem.kpageflags` re-exports everything public from here.
"""
from __future__ import annotations

import enum
import errno as _errno
import os
import threading
from typing import Callable, ClassVar, NamedTuple

from ._args import as_callable, as_nonneg, as_positive
from ._fdfile import FdFile
from ._raw import check
from ._raw import kpf as _raw
from .errors import InvalidArgument


class KPF(enum.IntFlag):
    """Bits of /proc/kpageflags.

    Bits 0-26 are the stable ABI (values taken from <linux/kernel-page-flags.h> at build
    time). Bits 32-42 expose kernel-internal page flags; they are not ABI and the kernel's
    page-types tool reads them only in raw mode.
    """

    LOCKED = 1 << _raw.KPF["LOCKED"]
    ERROR = 1 << _raw.KPF["ERROR"]
    REFERENCED = 1 << _raw.KPF["REFERENCED"]
    UPTODATE = 1 << _raw.KPF["UPTODATE"]
    DIRTY = 1 << _raw.KPF["DIRTY"]
    LRU = 1 << _raw.KPF["LRU"]
    ACTIVE = 1 << _raw.KPF["ACTIVE"]
    SLAB = 1 << _raw.KPF["SLAB"]
    WRITEBACK = 1 << _raw.KPF["WRITEBACK"]
    RECLAIM = 1 << _raw.KPF["RECLAIM"]
    BUDDY = 1 << _raw.KPF["BUDDY"]
    MMAP = 1 << _raw.KPF["MMAP"]
    ANON = 1 << _raw.KPF["ANON"]
    SWAPCACHE = 1 << _raw.KPF["SWAPCACHE"]
    SWAPBACKED = 1 << _raw.KPF["SWAPBACKED"]
    COMPOUND_HEAD = 1 << _raw.KPF["COMPOUND_HEAD"]
    COMPOUND_TAIL = 1 << _raw.KPF["COMPOUND_TAIL"]
    HUGE = 1 << _raw.KPF["HUGE"]
    UNEVICTABLE = 1 << _raw.KPF["UNEVICTABLE"]
    HWPOISON = 1 << _raw.KPF["HWPOISON"]
    NOPAGE = 1 << _raw.KPF["NOPAGE"]
    KSM = 1 << _raw.KPF["KSM"]
    THP = 1 << _raw.KPF["THP"]
    OFFLINE = 1 << _raw.KPF["OFFLINE"]
    ZERO_PAGE = 1 << _raw.KPF["ZERO_PAGE"]
    IDLE = 1 << _raw.KPF["IDLE"]
    PGTABLE = 1 << _raw.KPF["PGTABLE"]
    # Kernel-internal bits (include/linux/kernel-page-flags.h, not exported to uapi).
    RESERVED = 1 << 32
    MLOCKED = 1 << 33
    MAPPEDTODISK = 1 << 34
    PRIVATE = 1 << 35
    PRIVATE_2 = 1 << 36
    OWNER_PRIVATE = 1 << 37
    ARCH = 1 << 38
    UNCACHED = 1 << 39
    SOFTDIRTY = 1 << 40
    ARCH_2 = 1 << 41
    ARCH_3 = 1 << 42


# Iterating a Flag yields only named single-bit members; typeshed allows None for composites.
_BIT_NAMES = {m.value.bit_length() - 1: m.name for m in KPF if m.name is not None}


def describe(flags: int) -> tuple[str, ...]:
    """Names of the bits set in one kpageflags value, lowest bit first (unknown: ``BITn``)."""
    value = as_nonneg(flags, "flags")
    names = []
    while value:
        low = value & -value
        bit = low.bit_length() - 1
        names.append(_BIT_NAMES.get(bit, f"BIT{bit}"))
        value ^= low
    return tuple(names)


class FlagSummary(NamedTuple):
    """One row of a page-types style table: a distinct flags value and how many frames have it."""

    flags: int
    pages: int
    bytes: int
    names: tuple[str, ...]


def summary_table(counts: dict[int, int]) -> list[FlagSummary]:
    """Rows for ``{flags: pages}``: most pages first, equal counts by flags value."""
    ps = os.sysconf("SC_PAGE_SIZE")
    return [FlagSummary(k, c, c * ps, describe(k))
            for k, c in sorted(counts.items(), key=lambda kc: (-kc[1], kc[0]))]


def empty_key_error(value: int) -> InvalidArgument:
    return InvalidArgument(f"flags value {value:#x} cannot be counted "
                           "(all 64 bits set is not a kpageflags value)")


# A PFN has 55 bits in a pagemap entry; larger ones cannot exist (and their file offsets
# would not fit an off_t, which the C reader refuses with EOVERFLOW).
_PFN_LIMIT = (1 << 55) - 1


class _PfnBase(FdFile):
    """A /proc file of one u64 per page frame: opening, bounds and the PFN range checks."""

    filename: ClassVar[str]

    def __init__(self, *, proc_root: str = "/proc") -> None:
        self._open(os.path.join(proc_root, self.filename), f"cannot open {self.filename}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, closed={self.closed})"

    @staticmethod
    def _check_span(start: object, count: object) -> tuple[int, int | None]:
        return (as_nonneg(start, "start"),
                None if count is None else as_nonneg(count, "count"))

    def _beyond_end(self, start: int) -> None:
        """Raise for a ``start`` PFN past the end of the file (the last PFN is named)."""
        end = self.max_pfn()
        raise InvalidArgument(
            f"start={start:#x} is beyond the last PFN ({end - 1:#x}): {self.path} covers "
            f"page frames 0 to {end - 1:#x}", path=self.path)

    def max_pfn(self) -> int:
        """One past the highest PFN the file covers (its size in entries)."""
        # procfs reports size 0; find the end by reading.
        lo, hi = 0, 1
        fd = self._checked_fd()
        while _raw.probe_u64(fd, hi) == 1:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if check(_raw.probe_u64(fd, mid), "probe", path=self.path):
                lo = mid
            else:
                hi = mid
        return hi


class FlagsFile(_PfnBase):
    """/proc/kpageflags opened for :func:`summary` only (what the CLI's summary needs)."""

    filename = "kpageflags"


# --- Parallel whole-range reads -------------------------------------------------------------
# A kpageflags read is the kernel walking struct pages for each entry: CPU-bound work done in
# the reading thread. cffi drops the GIL around every C call, so threads reading disjoint PFN
# ranges run on separate CPUs and a whole-machine scan takes about 1/threads of the time.

_PART_ALIGN = 1 << 16   # entries: split points fall on scan-chunk boundaries
_MAX_THREADS = 1024


def default_threads() -> int:
    """Threads for a whole-machine scan: one per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: object) -> int:
    return default_threads() if threads is None else as_positive(threads, "threads",
                                                                 hi=_MAX_THREADS)


def _parts(start: int, end: int, threads: int) -> list[tuple[int, int]]:
    """[start, end) cut into at most ``threads`` pieces of nearly equal size."""
    total = end - start
    if total <= 0:
        return []
    step = max(_PART_ALIGN, -(-total // threads + _PART_ALIGN - 1) // _PART_ALIGN * _PART_ALIGN)
    return [(lo, min(end, lo + step)) for lo in range(start, end, step)]


def _range_end(f: _PfnBase, start: int, count: int | None) -> int:
    """End of [start, start + count) clipped to the file; a start past the file is an error
    (naming the last PFN), as for the sequential scans."""
    last = f.max_pfn()
    if start >= last and count != 0:
        f._beyond_end(start)
    return last if count is None else min(start + count, last)


def _run_parts(work: Callable[[int], None], parts: int, threads: int,
               poll: Callable[[], None] | None = None) -> None:
    """``work(i)`` for every part, on up to ``threads`` threads; ``poll()`` every 0.1 s
    and once at the end. The first failing part's error (in part order) is raised here."""
    if parts <= 1 or threads <= 1:
        for i in range(parts):
            work(i)
            if poll is not None:
                poll()
        return
    # Plain threads rather than concurrent.futures: its import costs the CLI 7 ms.
    errors: list[BaseException | None] = [None] * parts
    queue = list(range(parts - 1, -1, -1))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop()
            try:
                work(i)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors[i] = exc

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(min(threads, parts))]
    for t in pool:
        t.start()
    for t in pool:
        while t.is_alive():
            t.join(0.1)
            if poll is not None and t.is_alive():
                poll()
    if poll is not None:
        poll()
    for exc in errors:
        if exc is not None:
            raise exc


_STEP = 1 << 18  # entries per C call: progress is reported between calls


def summary(f: _PfnBase, start: object = 0, count: object = None, *,
            progress: Callable[[int, int], None] | None = None,
            threads: int | None = None) -> list[FlagSummary]:
    """:meth:`KPageFlags.summary` on an open kpageflags file (see there)."""
    start, count = f._check_span(start, count)
    if progress is not None:
        as_callable(progress, "progress (a callable(done, total))")
    n = _threads(threads)
    end = _range_end(f, start, count)
    parts = _parts(start, end, n)
    tables = [_raw.CountTable() for _ in parts]
    done = [0] * len(parts)
    fd = f._checked_fd()
    total = max(0, end - start)
    inline = n <= 1 or len(parts) <= 1

    def work(i: int) -> None:
        lo, hi = parts[i]
        table = tables[i]
        pfn = lo
        while pfn < hi:
            want = min(_STEP, hi - pfn)
            ret, consumed, stop = table.count_pread(fd, pfn, want)
            check(ret, f"cannot read {f.filename}", path=f.path)
            pfn += consumed
            done[i] = pfn - lo  # one int store: the polling thread reads it without a lock
            if stop == -_errno.ENOSPC:
                table.grow()
                continue
            if stop == -_errno.EINVAL:
                raise empty_key_error(_raw.EMPTY_KEY)
            if inline and progress is not None:
                progress(sum(done), total)
            if consumed < want:
                break  # the file ended

    def poll() -> None:
        if progress is not None and not inline:
            progress(sum(done), total)

    _run_parts(work, len(parts), n, poll)
    merged: dict[int, int] = {}
    for table in tables:
        for k, c in table.items().items():
            merged[k] = merged.get(k, 0) + c
    return summary_table(merged)
