"""Per-frame kernel data indexed by PFN: /proc/kpageflags, /proc/kpagecount, /proc/kpagecgroup.

All three files hold one 64-bit entry per page frame. Reading them needs root
(CAP_SYS_ADMIN); they exist when the kernel has CONFIG_PROC_PAGE_MONITOR.
"""
from __future__ import annotations

import enum
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, ClassVar, Iterable, Iterator, NamedTuple, overload

import numpy as np

from . import addressing
from ._args import as_nonneg, as_positive
from ._fdfile import FdFile
from ._raw import check
from ._raw import pageio as _pio
from .errors import InvalidArgument

__all__ = [
    "KPF",
    "KPageFlags",
    "KPageCount",
    "KPageCgroup",
    "FlagSummary",
    "describe",
    "summarize",
    "default_threads",
]


class KPF(enum.IntFlag):
    """Bits of /proc/kpageflags.

    Bits 0-26 are the stable ABI (values taken from <linux/kernel-page-flags.h> at build
    time). Bits 32-42 expose kernel-internal page flags; they are not ABI and the kernel's
    page-types tool reads them only in raw mode.
    """

    LOCKED = 1 << _pio.KPF["LOCKED"]
    ERROR = 1 << _pio.KPF["ERROR"]
    REFERENCED = 1 << _pio.KPF["REFERENCED"]
    UPTODATE = 1 << _pio.KPF["UPTODATE"]
    DIRTY = 1 << _pio.KPF["DIRTY"]
    LRU = 1 << _pio.KPF["LRU"]
    ACTIVE = 1 << _pio.KPF["ACTIVE"]
    SLAB = 1 << _pio.KPF["SLAB"]
    WRITEBACK = 1 << _pio.KPF["WRITEBACK"]
    RECLAIM = 1 << _pio.KPF["RECLAIM"]
    BUDDY = 1 << _pio.KPF["BUDDY"]
    MMAP = 1 << _pio.KPF["MMAP"]
    ANON = 1 << _pio.KPF["ANON"]
    SWAPCACHE = 1 << _pio.KPF["SWAPCACHE"]
    SWAPBACKED = 1 << _pio.KPF["SWAPBACKED"]
    COMPOUND_HEAD = 1 << _pio.KPF["COMPOUND_HEAD"]
    COMPOUND_TAIL = 1 << _pio.KPF["COMPOUND_TAIL"]
    HUGE = 1 << _pio.KPF["HUGE"]
    UNEVICTABLE = 1 << _pio.KPF["UNEVICTABLE"]
    HWPOISON = 1 << _pio.KPF["HWPOISON"]
    NOPAGE = 1 << _pio.KPF["NOPAGE"]
    KSM = 1 << _pio.KPF["KSM"]
    THP = 1 << _pio.KPF["THP"]
    OFFLINE = 1 << _pio.KPF["OFFLINE"]
    ZERO_PAGE = 1 << _pio.KPF["ZERO_PAGE"]
    IDLE = 1 << _pio.KPF["IDLE"]
    PGTABLE = 1 << _pio.KPF["PGTABLE"]
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


class _Counter:
    """Distinct-value counter over uint64 chunks, in C (a numpy sort would dominate a scan)."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._c = _pio.Counter(capacity)
        self.keys, self.counts = self._c.keys, self._c.counts

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        values = np.ascontiguousarray(values)
        values = values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.uint64, copy=False)
        if weights is not None:
            weights = np.ascontiguousarray(weights, dtype=np.uint64)
        while len(values):
            ret, done = self._c.add(values, weights)
            if ret == -2:
                raise InvalidArgument(f"flags value {int(values[done]):#x} cannot be counted "
                                      "(all 64 bits set is not a kpageflags value)")
            values = values[done:]
            if weights is not None:
                weights = weights[done:]
            if ret == -1:
                self._grow()

    def _grow(self) -> None:
        keys, counts = self.items()
        self.__init__(len(self.keys) * 4)  # type: ignore[misc]
        self.add(keys, counts)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        used = self.keys != np.uint64(_pio.EMPTY_KEY)
        return self.keys[used], self.counts[used]

    def table(self) -> list[FlagSummary]:
        keys, counts = self.items()
        order = np.lexsort((keys, -counts.astype(np.int64)))
        ps = addressing.page_size()
        return [FlagSummary(int(keys[i]), int(counts[i]), int(counts[i]) * ps, describe(int(keys[i])))
                for i in order]


def summarize(flags: np.ndarray | Iterable[np.ndarray]) -> list[FlagSummary]:
    """Page-types style table: each distinct flags value with its page and byte counts.

    Takes one array of flags or an iterable of arrays (such as ``KPageFlags.scan()`` chunks,
    or ``(start, array)`` pairs from it). Rows are sorted by page count, largest first.
    """
    counter = _Counter()
    if isinstance(flags, np.ndarray):
        counter.add(_flag_words(flags))
    else:
        for chunk in flags:
            counter.add(_flag_words(chunk[1] if isinstance(chunk, tuple) else chunk))
    return counter.table()


def _flag_words(values: object) -> np.ndarray:
    """An integer array of flag words; floats would be truncated into other flags."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise InvalidArgument(
            f"flags must be an integer array (such as KPageFlags.read() returns), got {arr.dtype}")
    return arr.reshape(-1)


_GAP = 16  # frames: bridge gaps up to this wide instead of issuing another pread
# A PFN has 55 bits in a pagemap entry; larger ones cannot exist (and their file offsets
# would not fit an off_t, which the C reader refuses with EOVERFLOW).
_PFN_LIMIT = (1 << 55) - 1
_CHUNK_MAX = 1 << 27  # entries per scan chunk (1 GiB): larger buffers gain nothing


class _PfnFile(FdFile):
    """A /proc file of one u64 per page frame, open for bulk reads."""

    filename: ClassVar[str]
    dtype: ClassVar[type] = np.uint64
    CHUNK: ClassVar[int] = 1 << 16  # entries per scan chunk: 512 KiB of memory at a time

    def __init__(self, *, proc_root: str = "/proc") -> None:
        self._open(os.path.join(proc_root, self.filename), f"cannot open {self.filename}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, closed={self.closed})"

    @overload
    def read(self, pfns: int) -> int: ...
    @overload
    def read(self, pfns: Iterable[int] | np.ndarray) -> np.ndarray: ...

    def read(self, pfns: int | Iterable[int] | np.ndarray) -> np.ndarray | int:
        """Entries for the given PFNs, in the caller's order (an int for a single PFN).

        PFNs are sorted and grouped into runs of nearby frames, one pread per run.
        """
        scalar = np.ndim(pfns) == 0  # type: ignore[arg-type]
        arr = _as_pfn_array(pfns)
        flat = arr.reshape(-1)
        if flat.size == 0:
            return np.empty(arr.shape, dtype=self.dtype)
        # Sort (unless already sorted); duplicates simply share a span.
        order = None if bool(np.all(flat[1:] >= flat[:-1])) else np.argsort(flat, kind="stable")
        srt = flat if order is None else flat[order]
        # Frames closer than _GAP are read as one span: a pread costs about as much as
        # reading a few dozen entries, so bridging short gaps saves syscalls.
        breaks = np.flatnonzero(np.diff(srt) > _GAP) + 1
        first = np.concatenate(([0], breaks))
        last = np.concatenate((breaks, [len(srt)])) - 1
        starts = np.ascontiguousarray(srt[first])
        counts = (srt[last] - starts + np.uint64(1)).astype(np.uint64)
        span_base = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.uint64)
        buf = np.empty(int(counts.sum()), dtype=np.uint64)
        got = check(_pio.gather_u64(self._checked_fd(), starts, counts, buf),
                    f"cannot read {self.filename}", path=self.path)
        span_of = np.repeat(np.arange(len(starts)), np.diff(np.concatenate((first, [len(srt)]))))
        where = span_base[span_of] + (srt - starts[span_of])
        if got < len(buf):
            missing = int(srt[np.argmax(where >= np.uint64(got))])
            raise InvalidArgument(
                f"PFN {missing:#x} is beyond the end of physical memory "
                f"({self.path} ends before it)", path=self.path)
        values = buf[where.astype(np.intp)]
        if order is None:
            out = values.view(self.dtype)
        else:
            out = np.empty_like(values).view(self.dtype)
            out[order] = values.view(self.dtype)
        return int(out[0]) if scalar else out.reshape(arr.shape)

    def scan(self, start: int = 0, count: int | None = None, *,
             chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_pfn, entries)`` chunks over [start, start + count) frames.

        ``count=None`` runs to the end of physical memory, and so does a count that reaches
        past it; a ``start`` beyond the last PFN is :class:`InvalidArgument`. Memory stays
        bounded by ``chunk`` entries (default 64 Ki, 512 KiB); each chunk is a fresh array
        the caller may keep.
        """
        for first, view in self._scan_views(start, count, chunk):
            yield first, view.view(self.dtype).copy()

    def _scan_views(self, start: int = 0, count: int | None = None,
                    chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        start, count = self._check_span(start, count)
        # Entries, not bytes: bounded so the buffer below is a sane allocation.
        size = self.CHUNK if chunk is None else as_positive(chunk, "chunk", hi=_CHUNK_MAX)
        # One reused buffer: callers that only reduce each chunk pay no allocation.
        buf = np.empty(size, dtype=np.uint64)
        fd = self._checked_fd()
        pfn = start
        end = None if count is None else start + count
        while end is None or pfn < end:
            n = size if end is None else min(size, end - pfn)
            got = (check(_pio.pread_u64(fd, pfn, n, buf),
                         f"cannot read {self.filename}", path=self.path)
                   if pfn <= _PFN_LIMIT else 0)
            if got == 0 and pfn == start:
                self._beyond_end(start)
            if got:
                yield pfn, buf[:got]
            pfn += got
            if got < n:
                break

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
        probe = np.empty(1, dtype=np.uint64)
        fd = self._checked_fd()
        while _pio.pread_u64(fd, hi, 1, probe) == 1:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if check(_pio.pread_u64(fd, mid, 1, probe), "probe", path=self.path):
                lo = mid
            else:
                hi = mid
        return hi


class KPageFlags(_PfnFile):
    """/proc/kpageflags: a :class:`KPF` bit mask per page frame.

    Arrays come back as int64 (no flag reaches bit 63) so that ``flags & KPF.HUGE`` works
    with numpy, which refuses to mix uint64 arrays with Python int subclasses.
    """

    filename = "kpageflags"
    dtype = np.int64

    def summary(self, start: int = 0, count: int | None = None, *,
                progress: Callable[[int, int], None] | None = None,
                threads: int | None = None) -> list[FlagSummary]:
        """Scan frames and count each distinct flags value (page-types' default table).

        ``progress(frames_done, frames_total)`` is called after each chunk if given.
        ``threads`` splits the frames into that many PFN ranges scanned at once (default:
        one per CPU this process may run on, see :func:`default_threads`); 1 scans in order.
        """
        start, count = self._check_span(start, count)
        if progress is not None and not callable(progress):
            raise InvalidArgument(f"progress must be a callable(done, total), got {progress!r:.60}")
        if _threads(threads) > 1:
            return _parallel_summary(self, start, count, threads, progress)
        counter = _Counter()
        total = 0
        if progress is not None:
            end = self.max_pfn()
            if start >= end and count != 0:
                self._beyond_end(start)
            total = min(count, end - start) if count is not None else end - start
        done = 0
        for _, view in self._scan_views(start, count):
            counter.add(view)
            if progress is not None:
                done += len(view)
                progress(done, total)
        return counter.table()


class KPageCount(_PfnFile):
    """/proc/kpagecount: how many times each page frame is mapped."""

    filename = "kpagecount"


class KPageCgroup(_PfnFile):
    """/proc/kpagecgroup: inode number of the memory cgroup each page frame is charged to."""

    filename = "kpagecgroup"


def _as_pfn_array(pfns: object) -> np.ndarray:
    return addressing.as_uint64_array(pfns, "PFN", _PFN_LIMIT + 1)


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
    from ._args import as_positive

    return default_threads() if threads is None else as_positive(threads, "threads",
                                                                 hi=_MAX_THREADS)


def _parts(start: int, end: int, threads: int) -> list[tuple[int, int]]:
    """[start, end) cut into at most ``threads`` pieces of nearly equal size."""
    total = end - start
    if total <= 0:
        return []
    step = max(_PART_ALIGN, -(-total // threads + _PART_ALIGN - 1) // _PART_ALIGN * _PART_ALIGN)
    return [(lo, min(end, lo + step)) for lo in range(start, end, step)]


def _range_end(f: _PfnFile, start: int, count: int | None) -> int:
    """End of [start, start + count) clipped to the file; a start past the file is an error
    (naming the last PFN), as for the sequential scans."""
    last = f.max_pfn()
    if start >= last and count != 0:
        f._beyond_end(start)
    return last if count is None else min(start + count, last)


def read_range(f: _PfnFile, start: int = 0, count: int | None = None, *,
               threads: int | None = None,
               each: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Entries for PFNs [start, start + count) (``None``: to the end) as one array, read by
    ``threads`` threads at once (default :func:`default_threads`).

    The array is as long as what the file held (shorter only if it ended early); int64 for
    kpageflags, uint64 for the others, like :meth:`_PfnFile.read`. ``each(first_pfn,
    entries)`` runs in the reading thread on every piece as soon as it is read, so per-frame
    work done there with numpy (which drops the GIL too) runs in parallel as well.
    """
    start = as_nonneg(start, "start")
    if count is not None:
        count = as_nonneg(count, "count")
    n = _threads(threads)
    end = _range_end(f, start, count)
    out = np.empty(max(0, end - start), dtype=np.uint64)
    fd = f._checked_fd()
    parts = _parts(start, end, n)
    got = [0] * len(parts)

    def work(i: int) -> None:
        lo, hi = parts[i]
        view = out[lo - start:hi - start]
        got[i] = check(_pio.pread_u64(fd, lo, hi - lo, view),
                       f"cannot read {f.filename}", path=f.path)
        if each is not None and got[i]:
            each(lo, view[:got[i]].view(f.dtype))

    _run_parts(work, len(parts), n)
    # A part cut short means the file ended there: keep what lies before the first gap.
    length = 0
    for (lo, hi), g in zip(parts, got):
        length = lo - start + g
        if g < hi - lo:
            break
    return out[:length].view(f.dtype)


def _run_parts(work: Callable[[int], None], parts: int, threads: int,
               poll: Callable[[], None] | None = None) -> None:
    if parts <= 1 or threads <= 1:
        for i in range(parts):
            work(i)
            if poll is not None:
                poll()
        return
    with ThreadPoolExecutor(max_workers=min(threads, parts)) as pool:
        futures = [pool.submit(work, i) for i in range(parts)]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.1)
            if poll is not None:
                poll()
        for fut in futures:
            fut.result()  # re-raise the first worker error here, in the caller's thread


def _parallel_summary(kf: KPageFlags, start: int, count: int | None, threads: int | None,
                      progress: Callable[[int, int], None] | None) -> list[FlagSummary]:
    start = as_nonneg(start, "start")
    if count is not None:
        count = as_nonneg(count, "count")
    n = _threads(threads)
    end = _range_end(kf, start, count)
    parts = _parts(start, end, n)
    counters = [_Counter() for _ in parts]
    done = [0] * len(parts)
    fd = kf._checked_fd()
    lock = threading.Lock()
    total = max(0, end - start)

    def work(i: int) -> None:
        lo, hi = parts[i]
        buf = np.empty(kf.CHUNK, dtype=np.uint64)
        pfn = lo
        while pfn < hi:
            want = min(kf.CHUNK, hi - pfn)
            got = check(_pio.pread_u64(fd, pfn, want, buf),
                        f"cannot read {kf.filename}", path=kf.path)
            if got:
                counters[i].add(buf[:got])
            pfn += got
            with lock:
                done[i] = pfn - lo
            if got < want:
                break

    def poll() -> None:
        if progress is not None:
            progress(sum(done), total)

    _run_parts(work, len(parts), n, poll)
    merged = _Counter()
    for c in counters:
        keys, counts = c.items()
        merged.add(keys, counts)
    return merged.table()
