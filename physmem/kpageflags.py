"""Per-frame kernel data indexed by PFN: /proc/kpageflags, /proc/kpagecount, /proc/kpagecgroup.

All three files hold one 64-bit entry per page frame. Reading them needs root
(CAP_SYS_ADMIN); they exist when the kernel has CONFIG_PROC_PAGE_MONITOR.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterable, Iterator, overload

import numpy as np

from ._args import as_int_array, as_iterable, as_nonneg, as_positive, as_uint64_array
# "X as X": re-exported for cli.contig, which imports it from here.
from ._kpfcore import _MAX_THREADS as _MAX_THREADS
from ._kpfcore import (_PFN_LIMIT, KPF, FlagSummary, _parts, _PfnBase, _range_end, _run_parts,
                       _threads, default_threads, describe, empty_key_error, summary_table)
from ._kpfcore import summary as _summary
from ._raw import check
from ._raw import pageio as _pio
from ._raw.kpf import CountTable
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


# Defined in the numpy-free core (the CLI summary runs on it alone); documented here.
for _cls in (KPF, FlagSummary):
    _cls.__module__ = __name__


def summarize(flags: np.ndarray | Iterable[np.ndarray]) -> list[FlagSummary]:
    """Page-types style table: each distinct flags value with its page and byte counts.

    Takes one array of flags or an iterable of arrays (such as ``KPageFlags.scan()`` chunks,
    or ``(start, array)`` pairs from it). Rows are sorted by page count, largest first.
    """
    table = CountTable()
    if isinstance(flags, np.ndarray):
        _count(table, flags)
        return summary_table(table.items())
    # Text iterates too: b"1" would count flag words 0x31, "" nothing at all.
    chunks = as_iterable(flags, "flags", "an integer array or an iterable of them (such as "
                         "KPageFlags.scan())")
    for chunk in chunks:
        _count(table, chunk[1] if isinstance(chunk, tuple) else chunk)
    return summary_table(table.items())


def _count(table: CountTable, values: object) -> None:
    words = _flag_words(values)
    words = np.ascontiguousarray(
        words.view(np.uint64) if words.dtype == np.int64 else words.astype(np.uint64, copy=False))
    stopped = table.add(words, None, len(words))
    if stopped is not None:
        raise empty_key_error(int(words[stopped]))


def _flag_words(values: object) -> np.ndarray:
    """An integer array of flag words; floats would be truncated into other flags."""
    return as_int_array(values, "flags", "an integer array (such as KPageFlags.read() returns)")


_GAP = 16  # frames: bridge gaps up to this wide instead of issuing another pread
_CHUNK_MAX = 1 << 27  # entries per scan chunk (1 GiB): larger buffers gain nothing


class _PfnFile(_PfnBase):
    """A /proc file of one u64 per page frame, open for bulk reads."""

    dtype: ClassVar[type] = np.uint64
    CHUNK: ClassVar[int] = 1 << 16  # entries per scan chunk: 512 KiB of memory at a time

    @overload
    def read(self, pfns: int) -> int: ...
    @overload
    def read(self, pfns: Iterable[int] | np.ndarray) -> np.ndarray: ...

    def read(self, pfns: int | Iterable[int] | np.ndarray) -> np.ndarray | int:
        """Entries for the given PFNs, in the caller's order (an int for a single PFN).

        PFNs are sorted and grouped into runs of nearby frames, one pread per run.
        """
        arr = _as_pfn_array(pfns)   # first: it refuses what np.ndim cannot take (ragged lists)
        scalar = np.ndim(pfns) == 0  # type: ignore[arg-type]
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
        return _summary(self, start, count, progress=progress, threads=threads)


class KPageCount(_PfnFile):
    """/proc/kpagecount: how many times each page frame is mapped."""

    filename = "kpagecount"


class KPageCgroup(_PfnFile):
    """/proc/kpagecgroup: inode number of the memory cgroup each page frame is charged to."""

    filename = "kpagecgroup"


def _as_pfn_array(pfns: object) -> np.ndarray:
    return as_uint64_array(pfns, "PFN", _PFN_LIMIT + 1)


# --- Parallel whole-range reads: the helpers live in _kpfcore -------------------------------


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
