"""Raw page-table and page-flag I/O (csrc/pageio.h, translate.h, pagemap_scan.h, runs.h,
kpageflags.h): bulk reads of 64-bit entry files, translation, PAGEMAP_SCAN, run finding and
counting. Arrays are C-contiguous uint64 unless said otherwise; ``-errno`` on failure."""
from __future__ import annotations

from typing import Any, Final

import numpy as np

from . import ffi, lib, u64_buffer


def _opt(array: np.ndarray | None) -> Any:
    return ffi.NULL if array is None else u64_buffer(array)


def pread_u64(fd: int, index: int, count: int, buf: np.ndarray) -> int:
    """Read ``count`` entries from entry ``index`` into ``buf``: entries read (fewer at EOF)."""
    got: int = lib.pm_pread_u64(fd, index, count, u64_buffer(buf))
    return got


def gather_u64(fd: int, index: np.ndarray, count: np.ndarray, buf: np.ndarray) -> int:
    """Read the runs (``index[i]``, ``count[i]``) one after another into ``buf``."""
    got: int = lib.pm_gather_u64(fd, u64_buffer(index), u64_buffer(count), len(index),
                                 u64_buffer(buf))
    return got


def translate(vaddr: np.ndarray | None, n: int, raw: np.ndarray, base_vpn: int, mode: int,
              page_shift: int, present_bit: int, pfn_mask: int, paddr: np.ndarray,
              status: np.ndarray | None) -> tuple[int, int]:
    """Translate ``n`` addresses from pagemap entries ``raw`` (TRANSLATE_SPAN or _DIRECT;
    ``vaddr`` None: the pages from base_vpn on) into ``paddr``; ``status`` (uint8) gets a
    code per address. (failures, first failing index or -1)."""
    first_bad = ffi.new("int64_t *")
    bad: int = lib.pm_translate(
        _opt(vaddr), n, u64_buffer(raw), base_vpn, len(raw), mode, page_shift, present_bit,
        pfn_mask, u64_buffer(paddr),
        ffi.NULL if status is None else ffi.from_buffer("uint8_t[]", status), first_bad)
    return bad, int(first_bad[0])


def read_translate(fd: int, vaddr: np.ndarray, base_vpn: int, page_shift: int,
                   present_bit: int, pfn_mask: int, paddr: np.ndarray) -> tuple[int, int]:
    """Read and translate in place the entries of ``vaddr``, one per page from base_vpn:
    (failures or -errno, entries read)."""
    nread = ffi.new("uint64_t *")
    bad: int = lib.pm_read_translate(fd, u64_buffer(vaddr), len(vaddr), base_vpn, page_shift,
                                     present_bit, pfn_mask, u64_buffer(paddr), nread)
    return bad, int(nread[0])


def pagemap_scan(fd: int, start: int, end: int, category_inverted: int, category_mask: int,
                 category_anyof_mask: int, return_mask: int, max_pages: int,
                 regions: np.ndarray, flags: int = 0) -> tuple[int, int]:
    """PAGEMAP_SCAN into ``regions`` (n x 3: start, end, categories; n may be 0), with
    ``flags`` (PM_SCAN_*): (regions filled or -errno, where the walk ended)."""
    walk_end = ffi.new("uint64_t *")
    got: int = lib.pm_pagemap_scan(fd, flags, start, end, category_inverted, category_mask,
                                   category_anyof_mask, return_mask, max_pages,
                                   u64_buffer(regions.reshape(-1)), len(regions), walk_end)
    return got, int(walk_end[0])


def find_runs(values: np.ndarray, mask: int, step: int, require: int, run_start: np.ndarray,
              run_len: np.ndarray) -> int:
    """Runs of entries whose ``values & mask`` advance by ``step`` (csrc/runs.c); an entry
    without all ``require`` bits ends a run: the number found."""
    nruns: int = lib.pm_find_runs(u64_buffer(values), mask, step, len(values), require,
                                  u64_buffer(run_start), u64_buffer(run_len))
    return nruns


def find_mask_runs(mask: np.ndarray, run_start: np.ndarray, run_len: np.ndarray) -> int:
    """Runs of non-zero bytes of the uint8 ``mask``: the number found."""
    nruns: int = lib.pm_find_mask_runs(ffi.from_buffer("uint8_t[]", mask), len(mask),
                                       u64_buffer(run_start), u64_buffer(run_len))
    return nruns


def extend_free_heads(flags: np.ndarray, first_pfn: int, buddy: int, max_order: int,
                      out: np.ndarray) -> None:
    """Mark in the uint8 ``out`` the flag-0 frames after each free head (csrc/runs.c)."""
    lib.pm_extend_free_heads(u64_buffer(flags), len(flags), first_pfn, buddy, max_order,
                             ffi.from_buffer("uint8_t[]", out))


EMPTY_KEY: Final[int] = lib.PM_EMPTY_KEY
BATCH_ENTRIES: Final[int] = lib.PM_BATCH_ENTRIES
TRANSLATE_SPAN: Final[int] = lib.PM_TRANSLATE_SPAN
TRANSLATE_DIRECT: Final[int] = lib.PM_TRANSLATE_DIRECT
PAGE_IS_WPALLOWED: Final[int] = lib.PAGE_IS_WPALLOWED
PAGE_IS_WRITTEN: Final[int] = lib.PAGE_IS_WRITTEN
PAGE_IS_FILE: Final[int] = lib.PAGE_IS_FILE
PAGE_IS_PRESENT: Final[int] = lib.PAGE_IS_PRESENT
PAGE_IS_SWAPPED: Final[int] = lib.PAGE_IS_SWAPPED
PAGE_IS_PFNZERO: Final[int] = lib.PAGE_IS_PFNZERO
PAGE_IS_HUGE: Final[int] = lib.PAGE_IS_HUGE
PAGE_IS_SOFT_DIRTY: Final[int] = lib.PAGE_IS_SOFT_DIRTY
PAGE_IS_GUARD: Final[int] = lib.PAGE_IS_GUARD
PM_SCAN_WP_MATCHING: Final[int] = lib.PM_SCAN_WP_MATCHING
PM_SCAN_CHECK_WPASYNC: Final[int] = lib.PM_SCAN_CHECK_WPASYNC
# /proc/kpageflags bit numbers (linux/kernel-page-flags.h).
KPF: Final[dict[str, int]] = {name[4:]: getattr(lib, name) for name in dir(lib)
                              if name.startswith("KPF_")}
