"""Runs of adjacent pages, found once: every run in physmem comes from the C run finder.

A run, in the kernel's page-types sense, is a stretch of consecutive entries in which the
physical address advances with the virtual one (a pagemap range, a buffer's pages in virtual
order), or in which sorted numbers advance by one step (page numbers to read, free pages by
physical address); for a boolean mask, a stretch of True. Runs come back as (first index,
length) pairs; :data:`RUN_DTYPE` is the one table of runs of memory the API hands out.
"""
from __future__ import annotations

import numpy as np

from ._raw import pageio as _pio

__all__ = ["RUN_DTYPE", "find_runs", "runs_of", "run_table", "extend_free_heads"]

RUN_DTYPE = np.dtype([("vaddr", np.uint64), ("paddr", np.uint64), ("nbytes", np.uint64)])

_ALL = (1 << 64) - 1


def find_runs(values: np.ndarray, *, step: int = 1, mask: int = _ALL,
              require: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of each maximal run of entries whose ``values & mask`` advance
    by ``step`` from one entry to the next; an entry without all ``require`` bits takes no
    part and ends the run. Both arrays are intp, in entry order.

    ``step=1`` over page numbers in virtual order gives page-types' runs; ``mask=0, step=0``
    gives the runs of entries carrying ``require`` whatever their value.
    """
    v = np.ascontiguousarray(values, dtype=np.uint64)
    n = len(v)
    # Worst case one run per entry; untouched pages of these buffers are never faulted in.
    starts = np.empty(n, dtype=np.uint64)
    lens = np.empty(n, dtype=np.uint64)
    k = _pio.find_runs(v, mask, step, require, starts, lens)
    return starts[:k].astype(np.intp), lens[:k].astype(np.intp)


def runs_of(mask: np.ndarray, first: int = 0) -> np.ndarray:
    """Maximal runs of True in ``mask`` as (start, length) int64 rows; starts offset by
    ``first``."""
    m = np.ascontiguousarray(mask, dtype=bool)
    n = len(m)
    starts = np.empty((n + 1) // 2, dtype=np.uint64)
    lens = np.empty((n + 1) // 2, dtype=np.uint64)
    k = _pio.find_mask_runs(m.view(np.uint8), starts, lens)
    out = np.empty((k, 2), dtype=np.int64)
    out[:, 0] = starts[:k].view(np.int64) + first
    out[:, 1] = lens[:k].view(np.int64)
    return out


def run_table(vaddr: np.ndarray | int, paddr: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """A :data:`RUN_DTYPE` array from its three columns."""
    out = np.empty(len(paddr), dtype=RUN_DTYPE)
    out["vaddr"], out["paddr"], out["nbytes"] = vaddr, paddr, nbytes
    return out


def extend_free_heads(flags: np.ndarray, first_pfn: int, buddy: int, max_order: int) -> np.ndarray:
    """Free frames on a kernel that flags only a free block's head ``buddy``: each head with
    the flag-0 pages after it, up to the largest naturally aligned block (at most
    ``2**max_order`` pages) they fill. ``flags`` are kpageflags from ``first_pfn`` on."""
    u = np.ascontiguousarray(flags).view(np.uint64)
    out: np.ndarray = (u & np.uint64(buddy)) != 0
    _pio.extend_free_heads(u, first_pfn, buddy, max_order, out.view(np.uint8))
    return out
