"""Bulk reads of /proc/<pid>/pagemap and virtual-to-physical translation as array operations.

One pagemap entry (64 bits) describes one virtual page; see the kernel's
Documentation/admin-guide/mm/pagemap.rst. Entries are read in batches straight into numpy
arrays by the C core (physmem._native), with the GIL released.
"""
from __future__ import annotations

import enum
import errno as _errno
import os
import threading
from dataclasses import dataclass
from typing import Literal, cast, overload

import numpy as np

from . import _bulk, addressing
from ._args import as_bool, as_choice, as_flags, as_multiple, as_nonneg, as_pid
from ._fdfile import FdFile
from ._raw import check
from ._raw import pageio as _pio
from ._runs import RUN_DTYPE, find_runs, run_table
from .errors import (
    FeatureUnavailable,
    InvalidArgument,
    OutOfMemory,
    PageNotPresent,
    PermissionDenied,
    PfnUnavailable,
    PhysmemError,
    ProcessGone,
)
from .proc.pidstat import stat as _proc_stat

__all__ = [
    "PM",
    "PFN_MASK",
    "PageMap",
    "PagemapEntries",
    "ScanCategory",
    "RUN_DTYPE",
    "RANGE_DTYPE",
    "SCAN_DTYPE",
    "virt_to_phys",
]

PFN_MASK = (1 << 55) - 1
SWAP_TYPE_MASK = (1 << 5) - 1
SWAP_OFFSET_SHIFT = 5


class PM(enum.IntFlag):
    """Flag bits of a pagemap entry (bits 0-54 hold the PFN or swap entry)."""

    SOFT_DIRTY = 1 << 55
    EXCLUSIVE = 1 << 56  # since 4.2
    UFFD_WP = 1 << 57  # since 5.13
    GUARD = 1 << 58  # guard region, since 6.15
    FILE_SHARED = 1 << 61  # file page or shared anonymous, since 3.5
    SWAPPED = 1 << 62
    PRESENT = 1 << 63


class ScanCategory(enum.IntFlag):
    """PAGEMAP_SCAN page categories (values from the kernel headers at build time)."""

    WPALLOWED = _pio.PAGE_IS_WPALLOWED
    WRITTEN = _pio.PAGE_IS_WRITTEN
    FILE = _pio.PAGE_IS_FILE
    PRESENT = _pio.PAGE_IS_PRESENT
    SWAPPED = _pio.PAGE_IS_SWAPPED
    PFNZERO = _pio.PAGE_IS_PFNZERO
    HUGE = _pio.PAGE_IS_HUGE
    SOFT_DIRTY = _pio.PAGE_IS_SOFT_DIRTY
    GUARD = _pio.PAGE_IS_GUARD  # since 6.15


RANGE_DTYPE = np.dtype([("start", np.uint64), ("end", np.uint64)])
SCAN_DTYPE = np.dtype([("start", np.uint64), ("end", np.uint64), ("categories", np.int64)])

_PRESENT = int(PM.PRESENT)
_STATUS_NOT_PRESENT = 1
_STATUS_PFN_HIDDEN = 2
_CAP_HINT = (
    "page frame numbers read as 0 without CAP_SYS_ADMIN (the kernel hides them since 4.2); "
    "run as root or give the process CAP_SYS_ADMIN"
)
_PF_KTHREAD = 0x00200000  # task flag of kernel threads (include/linux/sched.h), in stat field 9
_SCAN_REGIONS = 4096  # regions fetched per PAGEMAP_SCAN call
_SCRATCH_MAX = 1 << 21  # entries (16 MiB) kept for reuse per PageMap; larger spans are one-off


def _bit(raw: np.ndarray, flag: PM) -> np.ndarray:
    bits: np.ndarray = (raw & np.uint64(int(flag))) != 0
    return bits


@dataclass(frozen=True, eq=False)
class PagemapEntries:
    """Pagemap entries of consecutive virtual pages starting at ``address``.

    ``raw`` holds the 64-bit entries; the other attributes decode them as numpy arrays.
    ``pfn``, ``swap_type`` and ``swap_offset`` are meaningful only where ``present`` /
    ``swapped`` is true (0 elsewhere).
    """

    address: int
    page_size: int
    raw: np.ndarray

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def vaddr(self) -> np.ndarray:
        return np.uint64(self.address) + np.arange(len(self.raw), dtype=np.uint64) * np.uint64(self.page_size)

    @property
    def present(self) -> np.ndarray:
        return _bit(self.raw, PM.PRESENT)

    @property
    def swapped(self) -> np.ndarray:
        return _bit(self.raw, PM.SWAPPED)

    @property
    def file_shared(self) -> np.ndarray:
        return _bit(self.raw, PM.FILE_SHARED)

    @property
    def exclusive(self) -> np.ndarray:
        return _bit(self.raw, PM.EXCLUSIVE)

    @property
    def soft_dirty(self) -> np.ndarray:
        return _bit(self.raw, PM.SOFT_DIRTY)

    @property
    def uffd_wp(self) -> np.ndarray:
        return _bit(self.raw, PM.UFFD_WP)

    @property
    def guard(self) -> np.ndarray:
        return _bit(self.raw, PM.GUARD)

    @property
    def pfns_hidden(self) -> bool:
        """True when present pages report PFN 0: the reader lacks CAP_SYS_ADMIN."""
        present = self.present
        return bool(np.any((self.raw[present] & np.uint64(PFN_MASK)) == 0))

    @property
    def pfn(self) -> np.ndarray:
        """Page frame numbers (0 where not present). Raises PfnUnavailable if hidden."""
        if self.pfns_hidden:
            raise PfnUnavailable(f"cannot read PFNs at {self.address:#x}: {_CAP_HINT}",
                                 address=self.address)
        return np.where(self.present, self.raw & np.uint64(PFN_MASK), np.uint64(0))

    @property
    def swap_type(self) -> np.ndarray:
        return np.where(self.swapped, self.raw & np.uint64(SWAP_TYPE_MASK), np.uint64(0))

    @property
    def swap_offset(self) -> np.ndarray:
        return np.where(self.swapped, (self.raw & np.uint64(PFN_MASK)) >> np.uint64(SWAP_OFFSET_SHIFT),
                        np.uint64(0))

    def paddr(self, *, strict: bool = True) -> np.ndarray:
        """Physical address of each page (see :meth:`PageMap.translate` for ``strict``)."""
        return _translate_entries(None, self.raw, mode=_pio.TRANSLATE_DIRECT,
                                  base_vpn=self.address >> addressing.page_shift(),
                                  strict=as_bool(strict, "strict"))


class PageMap(FdFile):
    """An open ``/proc/<pid>/pagemap`` (``pid=None``: this process). Use as a context manager.

    Every address of the 64-bit space can be read: pages the kernel has no entry for (above
    the end of user space, such as x86's ``[vsyscall]``) read as not present. A process that
    has exited, even one not yet reaped, raises :class:`ProcessGone`; a kernel thread, which
    has no user address space, :class:`InvalidArgument`.
    """

    def __init__(self, pid: int | None = None, *, proc_root: str = "/proc") -> None:
        if pid is not None:
            pid = as_pid(pid)
        self.pid = pid
        self.proc_root = proc_root
        path = os.path.join(proc_root, "self" if pid is None else str(pid), "pagemap")
        self.page_size = addressing.page_size()
        self._shift = addressing.page_shift()
        self._scratch_buf: np.ndarray | None = None
        self._scratch_owner: int | None = None
        try:
            self._open(path, "cannot open pagemap", pid=pid)
        except (ProcessGone, PermissionDenied):
            # The kernel refuses (ESRCH) a task without an mm: exited or a kernel thread. A
            # kernel thread refused to a user (EACCES) is the same wrong pid, said the same
            # way whoever asks.
            if pid is not None:
                kthread = _kernel_thread_name(proc_root, pid)
                if kthread is not None:
                    raise InvalidArgument(
                        f"process {pid} ({kthread}) is a kernel thread: it has no user "
                        "address space, so it has no pagemap; give the pid of a user process",
                        path=path, pid=pid) from None
            raise

    def __repr__(self) -> str:
        return f"PageMap(pid={self.pid!r}, path={self.path!r}, closed={self.closed})"

    # -- raw reading --------------------------------------------------------------------
    def _read_some(self, first_vpn: int, buf: np.ndarray) -> int:
        """Read entries from page ``first_vpn`` on; returns how many there were (fewer than
        ``len(buf)`` only where the end of user space cuts the range)."""
        self._checked_fd()
        got = check(_pio.pread_u64(self._fd, first_vpn, len(buf), buf),
                    "cannot read pagemap", path=self.path, pid=self.pid,
                    address=first_vpn << self._shift)
        if got < len(buf):
            self._at_end(first_vpn + got)
        return got

    def _read_into(self, first_vpn: int, buf: np.ndarray) -> None:
        got = self._read_some(first_vpn, buf)
        buf[got:] = 0  # past the end of user space: no entry, so not present

    def _at_end(self, vpn: int) -> None:
        """The pagemap ended at page ``vpn``: return if that is the end of the process's user
        space, raise ProcessGone if the process has lost its memory.

        The kernel answers end of file both beyond ``mm->task_size`` and, at every address,
        once the process has exited (a zombie's mm is gone before its /proc entry is). Page 0
        lies below every task size, so whether it still reads tells the two apart exactly, on
        every architecture and for 32-bit processes too.
        """
        probe = np.empty(1, dtype=np.uint64)
        if check(_pio.pread_u64(self._fd, 0, 1, probe), "cannot read pagemap",
                 path=self.path, pid=self.pid) == 1:
            return
        who = "this process" if self.pid is None else f"process {self.pid}"
        raise ProcessGone(f"{who} exited while its pagemap was read (it has no memory left)",
                          path=self.path, pid=self.pid, address=vpn << self._shift)

    def read(self, address: int, length: int) -> PagemapEntries:
        """Entries for the page-aligned range [address, address + length).

        Pages beyond the end of user space (the kernel has no entry for them) read as 0,
        not present.
        """
        addr, size = addressing.check_range(address, length)
        try:
            buf = _bulk.empty(size >> self._shift)
        except MemoryError:
            raise OutOfMemory(
                f"length={size:#x} needs {size >> self._shift << 3} bytes of pagemap entries, "
                "more than this process can allocate; read the range in pieces, or use "
                "present_ranges() or scan(), which skip unpopulated space", address=addr,
                errno=_errno.ENOMEM) from None
        if len(buf):
            self._read_into(addr >> self._shift, buf)
        buf.flags.writeable = False
        return PagemapEntries(addr, self.page_size, buf)

    # -- translation --------------------------------------------------------------------
    @overload
    def translate(self, address: int, *, strict: Literal[True] = True, out: None = None) -> int: ...
    @overload
    def translate(self, address: int, *, strict: bool, out: None = None) -> int | None: ...
    @overload
    def translate(self, address: np.ndarray | list[int], *, strict: Literal[True] = True,
                  out: np.ndarray | None = None) -> np.ndarray: ...
    @overload
    def translate(self, address: np.ndarray | list[int], *, strict: Literal[False],
                  out: np.ndarray | None = None) -> np.ma.MaskedArray: ...
    @overload
    def translate(self, address: np.ndarray | list[int], *, strict: bool,
                  out: np.ndarray | None = None) -> np.ndarray | np.ma.MaskedArray: ...

    def translate(self, address, *, strict=True, out=None):  # type: ignore[no-untyped-def]
        """Physical address(es) of virtual address(es): ``pfn * page_size + offset``.

        An int gives an int; an array gives a uint64 array of the same shape (written into
        ``out`` if given, a C-contiguous uint64 array of that size, as numpy ufuncs do). A
        page that is not present raises :class:`PageNotPresent`; with ``strict=False`` an
        array of addresses always comes back as a ``numpy.ma.MaskedArray`` (its mask all
        False when every page is present), and a single address that is not present as
        ``None``. Any 64-bit address may be given: one the kernel has no entry for (beyond
        user space) is not present.
        Hidden PFNs always raise :class:`PfnUnavailable`: physmem never reports 0 as a
        physical address.
        """
        strict = as_bool(strict, "strict")
        va = addressing.as_address_array(address)   # first: it refuses what np.ndim cannot take
        scalar = np.ndim(address) == 0
        flat = va.reshape(-1)
        n = flat.size
        if out is None:
            result = _bulk.empty(n)
        else:
            if not (isinstance(out, np.ndarray) and out.dtype == np.uint64
                    and out.flags.c_contiguous and out.flags.writeable and out.size == n):
                raise InvalidArgument(
                    f"out must be a writeable C-contiguous uint64 array of {n} elements")
            result = out.reshape(-1)
        if n == 0:
            return result.reshape(va.shape)
        shift = self._shift
        res = None
        first = int(flat[0]) >> shift
        # One address per page of one range: C checks that each lies in its page.
        if (strict and (int(flat[-1]) >> shift) - first + 1 == n
                and not np.may_share_memory(result, flat)):
            res = self._translate_pages_in_place(flat, first, result)
        if res is None:
            top = int(flat.max())
            vmin = int(flat.min()) >> shift
            span = (top >> shift) - vmin + 1
        if res is None and span <= 4 * n + (1 << 16):
            # A dense span read once beats gathering: unmapped holes cost the kernel little.
            raw = self._scratch(span)
            self._read_into(vmin, raw)
            res = _translate_entries(flat, raw, mode=_pio.TRANSLATE_SPAN, base_vpn=vmin,
                                     strict=strict, out=result)
        elif res is None:
            uniq, inverse = np.unique(flat >> np.uint64(shift), return_inverse=True)
            raw_u = self._gather(uniq)
            res = _translate_entries(flat, raw_u[inverse], mode=_pio.TRANSLATE_DIRECT,
                                     strict=strict, out=result)
        if scalar:
            if np.ma.isMaskedArray(res):
                return None if cast(np.ndarray, res.mask)[0] else int(res.data[0])
            return int(res[0])
        return res.reshape(va.shape)

    def _translate_pages_in_place(self, flat: np.ndarray, vmin: int,
                                  result: np.ndarray) -> np.ndarray | None:
        """One address per page of one range (the common case): read the entries into the
        result itself and translate in place, touching no other memory. None on any failure
        (the addresses were not one per page, a page is missing, or the range runs past the
        end of user space): the entries are then partly consumed, and the general path
        re-reads and explains."""
        self._checked_fd()
        bad, nread = _pio.read_translate(self._fd, flat, vmin, self._shift, _PRESENT, PFN_MASK,
                                         result)
        check(bad, "cannot read pagemap", path=self.path, pid=self.pid,
              address=vmin << self._shift)
        if nread < len(flat):
            self._at_end(vmin + nread)
            return None
        return result if bad == 0 else None

    def _scratch(self, entries: int) -> np.ndarray:
        """A reusable entry buffer, so repeated translations do not fault in fresh memory."""
        buf = self._scratch_buf
        if buf is None or len(buf) < entries or threading.get_ident() != self._scratch_owner:
            if entries > _SCRATCH_MAX:
                return np.empty(entries, dtype=np.uint64)
            buf = np.empty(max(entries, 1 << 12), dtype=np.uint64)
            # Only the first thread keeps it: a PageMap shared by threads must not share it.
            if self._scratch_owner in (None, threading.get_ident()):
                self._scratch_buf, self._scratch_owner = buf, threading.get_ident()
        return buf[:entries]

    def _gather(self, vpns: np.ndarray) -> np.ndarray:
        """Entries for sorted unique page numbers: one pread per run of consecutive pages."""
        first, counts = find_runs(vpns)
        starts = np.ascontiguousarray(vpns[first], dtype=np.uint64)
        counts = counts.astype(np.uint64)
        buf = _bulk.empty(len(vpns))
        self._checked_fd()
        got = check(_pio.gather_u64(self._fd, starts, counts, buf),
                    "cannot read pagemap", path=self.path, pid=self.pid)
        if got < len(buf):
            # Runs are in address order: the rest lie past the end of user space too.
            self._at_end(int(vpns[got]))
            buf[got:] = 0
        return buf

    def page_heads(self, address: int, count: int, page_size: int) -> np.ndarray:
        """Physical address of each of ``count`` pages of ``page_size`` from ``address``
        (their first bytes; 0 where not present), reading one entry per page.

        For hugetlb ranges: a huge page-table entry maps its whole page, so its first
        entry says where the page is, and :meth:`translate` over the range would read all
        512 entries of each 2 MiB page. Hidden PFNs raise :class:`PfnUnavailable`."""
        count = as_nonneg(count, "count")
        page_size = as_multiple(page_size, "page_size", self.page_size, lo=1,
                                what="the base page size")
        addr, _ = addressing.check_range(address, count * page_size)
        heads = np.arange(count, dtype=np.uint64) * np.uint64(page_size) + np.uint64(addr)
        if not count:
            return heads
        shift = np.uint64(self._shift)
        raw = self._gather(heads >> shift)
        res = _translate_entries(heads, raw, mode=_pio.TRANSLATE_DIRECT, strict=False)
        return cast(np.ma.MaskedArray, res).filled(0)

    def physical_runs(self, address: int, length: int) -> np.ndarray:
        """Maximal runs of present pages where virtual and physical addresses advance together.

        Returns a structured array with fields ``vaddr``, ``paddr`` and ``nbytes``.
        """
        entries = self.read(address, length)
        raw = entries.raw
        if entries.pfns_hidden:
            raise PfnUnavailable(f"cannot read PFNs at {entries.address:#x}: {_CAP_HINT}",
                                 address=entries.address)
        first, lens = find_runs(raw, mask=PFN_MASK, require=_PRESENT)
        ps = np.uint64(self.page_size)
        return run_table(np.uint64(entries.address) + first.astype(np.uint64) * ps,
                         (raw[first] & np.uint64(PFN_MASK)) * ps, lens.astype(np.uint64) * ps)

    # -- present ranges -----------------------------------------------------------------
    def present_ranges(self, address: int, length: int, *,
                       method: Literal["auto", "scan", "pagemap"] = "auto") -> np.ndarray:
        """Ranges of present pages in [address, address + length) as (start, end) pairs.

        ``method="auto"`` uses the PAGEMAP_SCAN ioctl where the kernel has it (6.7+), which
        skips unpopulated space without reading it, and reads pagemap entries otherwise.
        """
        addr, size = addressing.check_range(address, length)
        as_choice(method, "method", ("auto", "scan", "pagemap"))
        if method == "pagemap" or (method == "auto" and not self.scan_supported()):
            return self._present_ranges_pagemap(addr, size)
        return self.scan(addr, size, require=ScanCategory.PRESENT,
                         report=ScanCategory.PRESENT)[["start", "end"]].copy()

    def _present_ranges_pagemap(self, addr: int, size: int) -> np.ndarray:
        batch = _pio.BATCH_ENTRIES
        buf = np.empty(batch, dtype=np.uint64)
        first = addr >> self._shift
        total = size >> self._shift
        parts = []
        for off in range(0, total, batch):
            n = min(batch, total - off)
            got = self._read_some(first + off, buf[:n])
            # mask=0, step=0: runs of present entries, whatever their PFNs.
            head, length = find_runs(buf[:got], mask=0, step=0, require=_PRESENT)
            part = np.empty(len(head), dtype=RANGE_DTYPE)
            part["start"] = (head + (first + off)).astype(np.uint64) << np.uint64(self._shift)
            part["end"] = part["start"] + (length.astype(np.uint64) << np.uint64(self._shift))
            parts.append(part)
            if got < n:
                break  # the end of user space: nothing above it is present
        # Runs meet across batch boundaries: join those.
        return _coalesce(np.concatenate(parts) if parts else np.empty(0, dtype=RANGE_DTYPE))

    def scan(self, address: int, length: int, *, require: ScanCategory = ScanCategory(0),
             exclude: ScanCategory = ScanCategory(0), any_of: ScanCategory = ScanCategory(0),
             report: ScanCategory | None = None) -> np.ndarray:
        """Run PAGEMAP_SCAN: ranges whose pages have all of ``require``, none of ``exclude``
        and (if given) one of ``any_of``. Returns a structured array (start, end, categories)
        with categories limited to ``report`` (default: all the kernel knows). Each category
        argument is a :class:`ScanCategory` combination (an int without unknown bits).
        The part of the range above the end of user space (:func:`addressing.task_size`),
        where the kernel keeps no pages, is not scanned.
        """
        addr, size = addressing.check_range(address, length)
        known = int(_ALL_CATEGORIES)
        require_ = as_flags(require, "require", known)
        exclude_ = as_flags(exclude, "exclude", known)
        any_of_ = as_flags(any_of, "any_of", known)
        ret_mask = known if report is None else as_flags(report, "report", known)
        self._checked_fd()
        cat_mask = require_ | exclude_
        inverted = exclude_
        regions = np.empty((_SCAN_REGIONS, 3), dtype=np.uint64)
        parts: list[np.ndarray] = []
        # The ioctl fails with EFAULT on a range reaching past the end of user space.
        start, end = addr, min(addr + size, addressing.task_size())
        while start < end:
            got, walk_end = _pio.pagemap_scan(self._fd, start, end, inverted, cat_mask,
                                              any_of_, ret_mask, 0, regions)
            if got == -_errno.ENOTTY or (got == -_errno.EINVAL
                                         and ret_mask & ~_known_categories()):
                raise FeatureUnavailable(
                    "PAGEMAP_SCAN is not supported by this kernel (added in Linux 6.7)",
                    path=self.path, errno=-got)
            check(got, "PAGEMAP_SCAN failed", path=self.path, pid=self.pid, address=start)
            if got:
                parts.append(regions[:got].copy())
            if walk_end <= start:
                break
            start = walk_end
        flat = np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.uint64)
        # categories as int64 so `out["categories"] & ScanCategory.X` works in numpy
        out = np.empty(len(flat), dtype=SCAN_DTYPE)
        out["start"], out["end"], out["categories"] = flat[:, 0], flat[:, 1], flat[:, 2]
        return _coalesce(out)

    def scan_supported(self) -> bool:
        """Whether the running kernel implements PAGEMAP_SCAN (tried once per process)."""
        global _scan_supported
        if _scan_supported is None:
            self._checked_fd()
            regions = np.empty((1, 3), dtype=np.uint64)
            ps = self.page_size
            got, _ = _pio.pagemap_scan(self._fd, 0, ps, 0, 0, 0, int(ScanCategory.PRESENT), 0,
                                       regions)
            if got == -_errno.ENOTTY:
                _scan_supported = False
            else:
                # Any other failure (ESRCH: this process has exited) says nothing about the
                # kernel, so it must not be remembered for every later PageMap.
                check(got, "PAGEMAP_SCAN failed", path=self.path, pid=self.pid)
                _scan_supported = True
        return _scan_supported


_scan_supported: bool | None = None
_ALL_CATEGORIES = ScanCategory(0)
for _c in ScanCategory:
    _ALL_CATEGORIES |= _c


def _kernel_thread_name(proc_root: str, pid: int) -> str | None:
    """The name of ``pid`` if it is a kernel thread, None otherwise (or if it is gone)."""
    try:
        st = _proc_stat(pid, proc_root)
    except (PhysmemError, OSError):
        return None
    return st.comm if st.flags & _PF_KTHREAD else None


def _known_categories() -> int:
    # Kernels before 6.15 reject PAGE_IS_GUARD in return_mask with EINVAL.
    return int(_ALL_CATEGORIES) & ~int(ScanCategory.GUARD)


def _coalesce(regions: np.ndarray) -> np.ndarray:
    """Join regions that touch (split across ioctl calls or read batches) and share
    categories, where they have them."""
    if len(regions) < 2:
        return regions
    joins = regions["start"][1:] == regions["end"][:-1]
    if "categories" in (regions.dtype.names or ()):
        joins &= regions["categories"][1:] == regions["categories"][:-1]
    if not joins.any():
        return regions
    keep = np.concatenate(([True], ~joins))
    starts = np.flatnonzero(keep)
    ends = np.concatenate((starts[1:], [len(regions)])) - 1
    out = regions[starts].copy()
    out["end"] = regions["end"][ends]
    return out


def _translate_entries(vaddr: np.ndarray | None, raw: np.ndarray, *, mode: int, strict: bool,
                       base_vpn: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """Physical addresses from pagemap entries (vaddr None: the pages from base_vpn on)."""
    n = len(raw) if vaddr is None else len(vaddr)
    if out is None:
        out = _bulk.empty(n)
    first_bad = -1

    def run(status: np.ndarray | None) -> int:
        nonlocal first_bad
        bad, first_bad = _pio.translate(vaddr, n, raw, base_vpn, mode, addressing.page_shift(),
                                        _PRESENT, PFN_MASK, out, status)
        return bad

    # The common case (all present) needs no status array: one pass, no extra memory.
    status = None if strict else np.empty(n, dtype=np.uint8)
    bad = run(status)
    if bad == 0:
        # strict=False: a masked array whatever the data, so callers need no type test.
        return out if status is None else np.ma.MaskedArray(out, mask=status != 0)
    if status is None:
        status = np.empty(n, dtype=np.uint8)
        run(status)

    def address_at(i: int) -> int:
        return (base_vpn + i) << addressing.page_shift() if vaddr is None else int(vaddr[i])

    hidden = status == _STATUS_PFN_HIDDEN
    if hidden.any():
        where = address_at(int(np.argmax(hidden)))
        raise PfnUnavailable(f"cannot translate {where:#x}: {_CAP_HINT}", address=where)
    if not strict:
        return np.ma.MaskedArray(out, mask=status != 0)
    i = first_bad
    where = address_at(i)
    entry = int(raw[i] if mode == _pio.TRANSLATE_DIRECT
                else raw[(where >> addressing.page_shift()) - base_vpn])
    reason = ("it is swapped out" if entry & int(PM.SWAPPED)
              else "it was never touched or is not mapped")
    raise PageNotPresent(
        f"virtual address {where:#x} has no physical page ({reason}); "
        f"{bad} of {n} address(es) not present. Touch or mlock the memory first, "
        f"or pass strict=False for a masked result", address=where)


@overload
def virt_to_phys(address: int, pid: int | None = None, *, strict: Literal[True] = True) -> int: ...
@overload
def virt_to_phys(address: int, pid: int | None = None, *, strict: bool) -> int | None: ...
@overload
def virt_to_phys(address: np.ndarray | list[int], pid: int | None = None, *,
                 strict: Literal[True] = True) -> np.ndarray: ...
@overload
def virt_to_phys(address: np.ndarray | list[int], pid: int | None = None, *,
                 strict: Literal[False]) -> np.ma.MaskedArray: ...
@overload
def virt_to_phys(address: np.ndarray | list[int], pid: int | None = None, *,
                 strict: bool) -> np.ndarray | np.ma.MaskedArray: ...


def virt_to_phys(address: int | np.ndarray | list[int], pid: int | None = None, *,
                 strict: bool = True) -> int | None | np.ndarray | np.ma.MaskedArray:
    """Physical address(es) of ``address`` (int or array) in process ``pid`` (None: this
    one), as :meth:`PageMap.translate`: an int for an int (``None`` if absent and not
    ``strict``), a uint64 array for an array (masked if not ``strict``)."""
    with PageMap(pid) as pm:
        return pm.translate(address, strict=strict)
