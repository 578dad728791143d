"""Which pages were written since a moment: exact dirty-page tracking.

:class:`DirtyTracker` reports the pages of some memory written since its last ``reset()``,
as ``(start, end)`` ranges or a page bitmap. It rests on two kernel interfaces of Linux 6.7:
a userfaultfd registered for asynchronous write protection (``UFFD_FEATURE_WP_ASYNC``: the
kernel lifts a page's protection itself at its first write, no fault handler runs) and the
``PAGEMAP_SCAN`` ioctl, which lists the pages whose protection was lifted and protects them
again in the same call (``PM_SCAN_WP_MATCHING``). The tracked process pays about one minor
fault per page at its first write in each interval; reading costs about what the kernel's
page-table walk costs.

What counts as written: every store through the tracking process's page tables, its own
or the kernel's on its behalf (``read(2)`` into the buffer), since the last reset. Pages
swapped out after being written count (their swap entries keep the mark). An anonymous
page dropped with ``MADV_DONTNEED`` counts too: its contents are gone (it reads as zeros
now). Writes by other processes to memory they share with the tracked one, and writes by
devices (DMA), do not go through these page tables and are not seen. The unit is the page
the kernel maps: 4 KiB for anonymous memory and shmem (also inside transparent huge pages,
which the kernel splits at the first write), the huge page size for hugetlb memory
(``granularity``).

Another process: the process that owns the memory calls :func:`enable` (and keeps the
returned :class:`Tracking` open); a monitor with ``DirtyTracker(pid=P, ranges=...)`` then
reads and resets the marks through ``/proc/P/pagemap``. Memory P did not enable tracking for
raises :class:`~physmem.errors.NotTracked`, never a silent "every page was written"; so does
memory unmapped since (for another process, each collect reads ``/proc/P/maps`` to tell it
from memory not written: about 0.4 ms for a Python process).

Where the kernel lacks these, ``method="soft-dirty"`` (the default falls back to it) uses
the soft-dirty bits of kernels built with ``CONFIG_MEM_SOFT_DIRTY``; they over-report
(whole mappings read as written after the kernel merges or moves them) and a reset clears
the bits of the whole process, so ``exact`` is False then.
"""
from __future__ import annotations

import errno as _errno
import functools
import os
import sys
import threading
import warnings
from typing import Any, Literal

import numpy as np

from ._args import as_bool, as_choice, as_nonneg, as_pid, as_positive, is_int
from ._features import unavailable
from ._raw import SINCE, check
from ._raw import mapping as _rmap
from ._raw import pageio as _pio
from ._raw import uffd as _ruffd
from ._runs import runs_of
from .errors import FeatureUnavailable, InvalidArgument, NotTracked, PhysmemError
from .mapping import PAGE_SIZE, Mapping
from .pagemap import PM, RANGE_DTYPE, PageMap, _coalesce
from .proc._maps import maps
from .proc._read import pid_path, write_bytes
from .proc._smaps import smaps
from .userfaultfd import Feature, Mode, UserFaultFd

__all__ = ["DirtyTracker", "Tracking", "enable", "soft_dirty_supported", "TRACKED_DTYPE",
           "RANGE_DTYPE"]

# The tracked ranges: where, and the page size the kernel maps there (the unit of a write).
TRACKED_DTYPE = np.dtype([("start", np.uint64), ("end", np.uint64), ("page_size", np.uint64)])

Method = Literal["auto", "userfaultfd", "soft-dirty"]

_WRITTEN = _pio.PAGE_IS_WRITTEN
_RESET = _pio.PM_SCAN_WP_MATCHING
_CHECK = _pio.PM_SCAN_CHECK_WPASYNC
# The result buffer's first size, in regions; it doubles whenever the kernel fills it.
_FIRST_CAPACITY = 4096
_NO_REGIONS = np.empty((0, 3), dtype=np.uint64)
_SOFT_DIRTY = int(PM.SOFT_DIRTY)


# ---- which memory ------------------------------------------------------------------------

def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_int, value))


def _dma_buffer_type() -> type | None:
    module = sys.modules.get("physmem.dma.buffer")  # no DmaBuffer exists unless it is loaded
    return None if module is None else getattr(module, "DmaBuffer", None)


def _one(item: Any) -> tuple[int, int, int, bool]:
    """(start, end, page size or 0 if unknown, exact) of one range asked for. ``exact``:
    the bounds must already be page aligned; otherwise (a buffer) they are rounded out."""
    dma = _dma_buffer_type()
    if isinstance(item, Mapping) or (dma is not None and isinstance(item, dma)):
        memory: Any = item  # a Mapping or a DmaBuffer: both say where and in what pages
        if memory.closed:
            raise InvalidArgument(f"ranges: the {type(item).__name__} at "
                                  f"{memory.address:#x} is closed")
        ps = memory.page_size
        return memory.address, memory.address + -(-memory.size // ps) * ps, ps, True
    if _is_pair(item):
        start = as_nonneg(item[0], "address")
        return start, start + as_positive(item[1], "length"), 0, True
    try:  # an int, a str or a dict is no buffer either
        pinned = _ruffd.Pinned(item)
    except (TypeError, ValueError, BufferError):
        raise InvalidArgument(_WHAT_RANGES.format(kind=type(item).__name__)) from None
    try:
        if not pinned.length:
            raise InvalidArgument("ranges: an empty buffer has no pages to track")
        return pinned.address, pinned.address + pinned.length, 0, False
    finally:
        pinned.release()


_WHAT_RANGES = (
    "ranges: {kind} is not memory to track: give a Mapping, a DmaBuffer, a contiguous "
    "buffer (numpy array, bytearray, mmap...), an (address, length) pair, an array with "
    "'start' and 'end' fields, or a list of these")


def _requested(ranges: Any) -> list[tuple[int, int, int, bool]]:
    names = ranges.dtype.names if isinstance(ranges, np.ndarray) else None
    if names and {"start", "end"} <= set(names):
        if ranges.ndim != 1 or not len(ranges):
            raise InvalidArgument("ranges: the array of ranges must be 1-D and not empty")
        return [(s, s + as_positive(e - s, "end - start"), 0, True)
                for s, e in zip(ranges["start"].tolist(), ranges["end"].tolist())]
    if isinstance(ranges, (list, tuple)) and not _is_pair(ranges):
        if not ranges:
            raise InvalidArgument("ranges: the list of ranges is empty")
        return [_one(item) for item in ranges]
    return [_one(ranges)]


def _covering(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> list[int]:
    """Indexes of the mappings (sorted ``starts``/``ends``) that cover [lo, hi) whole, in
    order; raises InvalidArgument naming the first address no mapping covers."""
    i = int(np.searchsorted(ends, np.uint64(lo), side="right"))
    out = []
    at = lo
    while at < hi:
        if i >= len(starts) or int(starts[i]) > at:
            raise InvalidArgument(f"ranges: {at:#x} (in {lo:#x}..{hi:#x}) is not mapped in "
                                  "the process; track memory that is mapped whole",
                                  address=at)
        out.append(i)
        at = int(ends[i])
        i += 1
    return out


def _spans(ranges: Any, pid: int | None, proc_root: str) -> np.ndarray:
    """The ranges asked for as TRACKED_DTYPE rows: mapped whole in the process, aligned to
    the page size mapped there, split where that size changes, sorted and merged. A Mapping
    or DmaBuffer of this process says its page size itself; anything else is looked up in
    the process's mappings."""
    pieces: list[tuple[int, int, int]] = []
    unknown: list[tuple[int, int, bool]] = []
    for start, end, ps, exact in _requested(ranges):
        if end > 1 << 64:
            raise InvalidArgument(f"ranges: {start:#x} + {end - start:#x} is past the end of "
                                  "the 64-bit address space", address=start)
        if exact and (start | end) % PAGE_SIZE:
            raise InvalidArgument(
                f"ranges: address={start:#x}, length={end - start:#x} must be aligned to the "
                f"page size {PAGE_SIZE:#x}", address=start)
        if ps and pid is None:
            pieces.append((start, end, ps))
        else:
            unknown.append((start, end, exact))
    if unknown:
        pieces += _page_sizes(unknown, pid, proc_root)
    pieces.sort()
    merged: list[list[int]] = []
    for start, end, ps in pieces:
        last = merged[-1] if merged else None
        if last is not None and (start < last[1] or (start == last[1] and ps == last[2])):
            last[1] = max(last[1], end)  # overlapping or adjacent: one page size, one span
        else:
            merged.append([start, end, ps])
    out = np.array([tuple(m) for m in merged], dtype=TRACKED_DTYPE)
    out.flags.writeable = False
    return out


def _page_sizes(unknown: list[tuple[int, int, bool]], pid: int | None,
                proc_root: str) -> list[tuple[int, int, int]]:
    """Split ranges at the mappings of the process and give each piece the page size the
    kernel maps there. Only a mapping of a file (hugetlbfs included) can hold huge pages,
    so smaps (which costs a page-table walk of every mapping) is read only when one does."""
    vmas = maps(pid, proc_root)
    starts, ends = vmas.starts, vmas.ends
    cover = []
    for start, end, exact in unknown:
        lo, hi = start - start % PAGE_SIZE, -(-end // PAGE_SIZE) * PAGE_SIZE
        cover.append((lo, hi, exact, _covering(starts, ends, lo, hi)))
    sizes = np.full(len(vmas), PAGE_SIZE, dtype=np.uint64)
    if any(vmas.inodes[i] for *_, idx in cover for i in idx):
        detailed = smaps(pid, proc_root)
        where = np.minimum(np.searchsorted(detailed.starts, starts), len(detailed) - 1)
        kernel = detailed.column("KernelPageSize")[where]
        for *_, idx in cover:
            for i in idx:
                if detailed.starts[where[i]] != starts[i] or detailed.ends[where[i]] != ends[i]:
                    raise InvalidArgument(f"ranges: the mapping at {int(starts[i]):#x} changed "
                                          "while it was looked up; try again",
                                          address=int(starts[i]))
                sizes[i] = kernel[i]
    pieces = []
    for lo, hi, exact, idx in cover:
        for i in idx:
            ps = int(sizes[i])
            a, b = max(lo, int(starts[i])), min(hi, int(ends[i]))
            if (a | b) % ps:
                if exact:
                    raise InvalidArgument(
                        f"ranges: {lo:#x}..{hi:#x} cuts a huge page of the hugetlb mapping at "
                        f"{int(starts[i]):#x} (pages of {ps >> 10} kB): align it to {ps:#x}",
                        address=a if a % ps else b)
                a, b = a - a % ps, -(-b // ps) * ps
            pieces.append((a, b, ps))
    return pieces


# ---- enabling, in the process that owns the memory ----------------------------------------

class Tracking:
    """Write tracking enabled by :func:`enable` for ``ranges`` of this process, held by a
    userfaultfd registered for asynchronous write protection. Keep it open while a monitor
    reads it; ``close()`` (or leaving a ``with`` block) stops tracking and leaves the memory
    as it was: no page protected, no page faulted in or dropped."""

    ranges: np.ndarray
    _uffd: UserFaultFd | None

    def __init__(self) -> None:
        raise TypeError("use physmem.track.enable()")

    @classmethod
    def _start(cls, spans: np.ndarray) -> Tracking:
        self = object.__new__(cls)
        self.ranges = spans
        self._uffd = None
        # User-mode-only: what an unprivileged process may open (vm.unprivileged_userfaultfd
        # 0); kernel-mode writes are tracked all the same, as asynchronous protection is
        # lifted without a fault ever reaching the userfaultfd.
        uffd = UserFaultFd(features=Feature.WP_ASYNC | Feature.WP_HUGETLBFS_SHMEM,
                           user_mode_only=True)
        try:
            for start, end, ps in spans.tolist():
                uffd.register(start, end - start, Mode.WP, page_size=ps)
        except BaseException:
            uffd.close()
            raise
        self._uffd = uffd
        return self

    @property
    def closed(self) -> bool:
        return self._uffd is None

    def close(self) -> None:
        """Unregister every range still mapped (the kernel then drops its protection marks),
        then close the userfaultfd. Closing twice is fine."""
        uffd, self._uffd = self._uffd, None
        if uffd is None:
            return
        try:
            for start, end, _ in self.ranges.tolist():
                if _rmap.msync(start, end - start, _rmap.MS_ASYNC) == 0:
                    uffd.unregister(start, end - start)
        finally:
            uffd.close()

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.ranges)} range(s)"
        return f"<Tracking {state} pid={os.getpid()}>"


def enable(ranges: Any) -> Tracking:
    """Enable write tracking of ``ranges`` of this process and write-protect them now, so
    that a monitor (``DirtyTracker(pid=os.getpid(), ranges=...)`` in another process) can
    read which pages are written. ``ranges``: a Mapping, DmaBuffer, contiguous buffer
    (rounded out to whole pages), ``(address, length)`` pair, or a list of these.

    Raises FeatureUnavailable on kernels before 6.7, InvalidArgument for memory that is
    not mapped whole or cannot be tracked (a file mapping), PhysmemOSError (EBUSY) for
    memory another userfaultfd already tracks."""
    spans = _spans(ranges, None, "/proc")
    tracking = Tracking._start(spans)
    try:
        with PageMap() as pm:
            _Scanner(pm, spans).protect()
    except BaseException:
        tracking.close()
        raise
    return tracking


# ---- reading ---------------------------------------------------------------------------

class _Scanner:
    """PAGEMAP_SCAN over tracked spans of one pagemap: what was written, re-protected."""

    def __init__(self, pm: PageMap, spans: np.ndarray) -> None:
        self.pm = pm
        self.bounds: list[tuple[int, int]] = [(s, e) for s, e, _ in spans.tolist()]
        self.regions = np.empty((_FIRST_CAPACITY, 3), dtype=np.uint64)

    def _fail(self, got: int, start: int, end: int) -> None:
        pid = self.pm.pid
        if got == -_errno.EPERM:
            if pid is None:
                raise NotTracked(
                    f"{start:#x}..{end:#x} is no longer tracked: the memory was unmapped and "
                    "mapped again since the tracker began; track the new memory with a new "
                    "DirtyTracker", address=start)
            raise NotTracked(
                f"process {pid} has not enabled write tracking for {start:#x}..{end:#x}: call "
                "physmem.track.enable() on that memory in it, and keep the returned Tracking "
                "open (untracked, every page it has would read as written)",
                pid=pid, address=start)
        check(got, f"PAGEMAP_SCAN of {start:#x}..{end:#x}", since="ioctl PAGEMAP_SCAN",
              path=self.pm.path, pid=pid, address=start)

    def protect(self) -> None:
        """Write-protect every page of the spans (start an interval), reporting nothing."""
        fd = self.pm.fileno()
        for start, end in self.bounds:
            got, _ = _pio.pagemap_scan(fd, start, end, 0, _WRITTEN, 0, _WRITTEN, 0,
                                       _NO_REGIONS, _RESET | _CHECK)
            if got < 0:
                self._fail(got, start, end)

    def written(self, reset: bool) -> np.ndarray:
        """The (start, end) ranges written since the last protect, protected again if
        ``reset``. The kernel stops when the regions run out and says where (walk_end),
        having protected only what it reported: the scan resumes there, into a larger
        buffer, until the span's end, so no range is lost however many there are."""
        fd = self.pm.fileno()
        flags = _CHECK | (_RESET if reset else 0)
        regions = self.regions
        n = 0
        for start, end in self.bounds:
            at = start
            while at < end:
                if n == len(regions):
                    grown = np.empty((2 * len(regions), 3), dtype=np.uint64)
                    grown[:n] = regions
                    self.regions = regions = grown
                got, walk_end = _pio.pagemap_scan(fd, at, end, 0, _WRITTEN, 0, _WRITTEN, 0,
                                                  regions[n:], flags)
                if got < 0:
                    self._fail(got, at, end)
                if got and n and regions[n, 0] == regions[n - 1, 1]:
                    # A range cut where one call ended (or where two spans touch): rejoin it.
                    regions[n - 1, 1] = regions[n, 1]
                    regions[n:n + got - 1] = regions[n + 1:n + got].copy()
                    got -= 1
                n += got
                if walk_end <= at and n < len(regions):
                    raise PhysmemError(f"PAGEMAP_SCAN made no progress at {at:#x} with room "
                                       "left in its buffer", address=at)
                at = max(at, walk_end)
        out = np.empty(n, dtype=RANGE_DTYPE)
        out["start"] = regions[:n, 0]
        out["end"] = regions[:n, 1]
        return out


def _vmas_missing(pid: int | None, proc_root: str, bounds: list[tuple[int, int]]) -> int | None:
    """The first tracked address no longer mapped in the process, or None."""
    if pid is None:
        for start, end in bounds:
            if _rmap.msync(start, end - start, _rmap.MS_ASYNC) == -_errno.ENOMEM:
                return start
        return None
    vmas = maps(pid, proc_root)
    for start, end in bounds:
        try:
            _covering(vmas.starts, vmas.ends, start, end)
        except InvalidArgument as exc:
            return exc.address if exc.address is not None else start
    return None


@functools.lru_cache(maxsize=1)
def soft_dirty_supported() -> bool:
    """Whether the running kernel keeps soft-dirty bits (``CONFIG_MEM_SOFT_DIRTY``): a page
    this process has just written carries one in its pagemap entry."""
    with Mapping.anonymous(PAGE_SIZE) as m:
        m.touch(write=True)
        with PageMap() as pm:
            return bool(pm.read(m.address, PAGE_SIZE).soft_dirty[0])


def _soft_dirty_missing() -> FeatureUnavailable:
    return FeatureUnavailable(
        f"soft-dirty bits are not kept by the running kernel ({os.uname().release}): it is "
        "built without CONFIG_MEM_SOFT_DIRTY", errno=_errno.EOPNOTSUPP)


class DirtyTracker:
    """The pages of ``ranges`` written since the last :meth:`reset` (or since the tracker
    was made), read with :meth:`collect`.

    ``ranges``: memory of this process (``pid=None``) - a Mapping, DmaBuffer, contiguous
    buffer (rounded out to whole pages), ``(address, length)`` pair, an array with ``start``
    and ``end`` fields, or a list of these; of process ``pid``, pairs or arrays of memory
    that process passed to :func:`enable`. ``method``: ``"userfaultfd"`` (exact, Linux
    6.7+), ``"soft-dirty"`` (over-reports; kernels with ``CONFIG_MEM_SOFT_DIRTY``) or
    ``"auto"``, the first the kernel has (FeatureUnavailable if neither).

    ``ranges`` (TRACKED_DTYPE: start, end, page_size) is the memory tracked; ``granularity``
    the largest page size in it, the unit in which writes are reported; ``exact`` is False
    for soft-dirty. Close it (or use it in a ``with`` block) to stop tracking: memory of
    this process is left as it was. Thread safe.
    """

    def __init__(self, ranges: Any, *, pid: int | None = None, method: Method = "auto",
                 proc_root: str = "/proc") -> None:
        self._pm: PageMap | None = None
        self._tracking: Tracking | None = None
        self._lock = threading.Lock()
        as_choice(method, "method", ("auto", "userfaultfd", "soft-dirty"))
        self.pid = None if pid is None else as_pid(pid)
        self.proc_root = proc_root
        self.ranges = _spans(ranges, self.pid, proc_root)
        self._bounds = [(s, e) for s, e, _ in self.ranges.tolist()]
        self.granularity = int(self.ranges["page_size"].max())
        self.method = ""
        self._pm = PageMap(self.pid, proc_root=proc_root)
        try:
            self.method = self._choose(method)
            self.exact = self.method == "userfaultfd"
            self._scanner = _Scanner(self._pm, self.ranges)
            if not self.exact:
                warnings.warn("soft-dirty tracking over-reports (whole mappings read as "
                              "written after the kernel merges or moves them) and its reset "
                              "clears the bits of the whole process", stacklevel=2)
            self.reset()
        except BaseException:
            self.close()
            raise

    def _choose(self, method: Method) -> str:
        assert self._pm is not None
        if method == "soft-dirty":
            if not soft_dirty_supported():
                raise _soft_dirty_missing()
            huge = self.ranges["page_size"] != PAGE_SIZE
            if huge.any():
                raise InvalidArgument(
                    f"method='soft-dirty' cannot track the hugetlb memory at "
                    f"{int(self.ranges['start'][huge][0]):#x}: the kernel does not clear "
                    "soft-dirty bits of hugetlb pages")
            return method
        try:
            if not self._pm.scan_supported():
                raise unavailable("ioctl PAGEMAP_SCAN", SINCE["ioctl PAGEMAP_SCAN"],
                                  err=_errno.ENOTTY)
            if self.pid is None:
                self._tracking = Tracking._start(self.ranges)
        except FeatureUnavailable as exc:
            if method == "userfaultfd":
                raise
            if not soft_dirty_supported():
                raise FeatureUnavailable(
                    f"dirty-page tracking needs userfaultfd write protection "
                    f"(UFFD_FEATURE_WP_ASYNC) with PAGEMAP_SCAN, added in Linux "
                    f"{SINCE['userfaultfd feature UFFD_FEATURE_WP_ASYNC']}, or soft-dirty bits "
                    f"(CONFIG_MEM_SOFT_DIRTY); the running kernel ({os.uname().release}) has "
                    f"neither ({exc})", errno=exc.errno) from exc
            return self._choose("soft-dirty")
        return "userfaultfd"

    # ---- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._pm is None

    def _open_pm(self) -> PageMap:
        if self._pm is None:
            raise InvalidArgument("the DirtyTracker is closed")
        return self._pm

    def __repr__(self) -> str:
        who = "this process" if self.pid is None else f"pid {self.pid}"
        state = "closed" if self.closed else f"{len(self.ranges)} range(s)"
        return f"<DirtyTracker {self.method or '?'} {who} {state}>"

    def close(self) -> None:
        """Stop tracking: unregister this process's memory (leaving it as it was) and close
        the pagemap. Closing twice is fine."""
        with self._lock:
            tracking, self._tracking = self._tracking, None
            pm, self._pm = self._pm, None
        try:
            if tracking is not None:
                tracking.close()
        finally:
            if pm is not None:
                pm.close()

    def __enter__(self) -> DirtyTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the interval ----------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new interval now: every page of the ranges counts as unwritten."""
        with self._lock:
            pm = self._open_pm()
            if self.exact:
                self._scanner.protect()
            else:
                self._clear_soft_dirty(pm)
            self._check_mapped()

    def collect(self, reset: bool = True, *, bitmap: bool = False) -> np.ndarray:
        """The pages written since the last reset: RANGE_DTYPE ``(start, end)`` ranges in
        address order, merged where adjacent; with ``bitmap=True`` a bool array instead, one
        entry per base page of the tracked ranges (in order, as if they were one run).
        ``reset`` (default) starts the next interval in the same step, so a write is
        reported by the collect whose interval it fell in. A write racing the call is
        reported by it or the next, or by both: the kernel lifts a page's protection in the
        fault before the store lands, and if this call protects the page again in between,
        the store faults once more. No write is ever missed."""
        reset = as_bool(reset, "reset")
        bitmap = as_bool(bitmap, "bitmap")
        with self._lock:
            pm = self._open_pm()
            if self.exact:
                out = self._scanner.written(reset)
            else:
                out = self._soft_dirty(pm, reset)
            self._check_mapped()
        return self._bitmap(out) if bitmap else out

    def _check_mapped(self) -> None:
        where = _vmas_missing(self.pid, self.proc_root, self._bounds)
        if where is not None:
            who = "this process" if self.pid is None else f"process {self.pid}"
            raise NotTracked(f"{where:#x} of the tracked memory is no longer mapped in {who}: "
                             "its writes cannot be known; close this tracker", pid=self.pid,
                             address=where)

    def _bitmap(self, ranges: np.ndarray) -> np.ndarray:
        pages = (self.ranges["end"] - self.ranges["start"]) // np.uint64(PAGE_SIZE)
        base = np.concatenate(([0], np.cumsum(pages)[:-1])).astype(np.uint64)
        marks = np.zeros(int(pages.sum()) + 1, dtype=np.int8)
        if len(ranges):
            span = np.searchsorted(self.ranges["start"], ranges["start"], side="right") - 1
            first = (ranges["start"] - self.ranges["start"][span]) // np.uint64(PAGE_SIZE) \
                + base[span]
            count = (ranges["end"] - ranges["start"]) // np.uint64(PAGE_SIZE)
            marks[first.astype(np.intp)] += 1
            marks[(first + count).astype(np.intp)] -= 1
        out: np.ndarray = np.cumsum(marks[:-1], dtype=np.int64) > 0
        return out

    # ---- soft-dirty ----------------------------------------------------------------------

    def _clear_soft_dirty(self, pm: PageMap) -> None:
        # "4" clears the soft-dirty bits of every mapping of the process (there is no
        # narrower command): Documentation/admin-guide/mm/soft-dirty.rst.
        write_bytes(pid_path(self.proc_root, self.pid, "clear_refs"), b"4",
                    "clear soft-dirty bits", pid=self.pid)

    def _soft_dirty(self, pm: PageMap, reset: bool) -> np.ndarray:
        parts = []
        shift = PAGE_SIZE.bit_length() - 1
        for start, end in self._bounds:
            raw = pm.read(start, end - start).raw
            runs = runs_of((raw & np.uint64(_SOFT_DIRTY)) != 0)
            part = np.empty(len(runs), dtype=RANGE_DTYPE)
            part["start"] = (runs[:, 0].astype(np.uint64) << np.uint64(shift)) + np.uint64(start)
            part["end"] = part["start"] + (runs[:, 1].astype(np.uint64) << np.uint64(shift))
            parts.append(part)
        if reset:
            # Writes between the read above and this are lost: soft-dirty cannot read and
            # clear in one step, one more reason it is not exact.
            self._clear_soft_dirty(pm)
        return _coalesce(np.concatenate(parts))
