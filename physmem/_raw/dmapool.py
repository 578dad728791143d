"""Raw buddy allocator of DMA offsets (csrc/dmapool.h): each returns ``-errno`` on failure."""
from __future__ import annotations

from typing import Callable, Final, NewType

import numpy as np

from . import ffi, lib

# An owned ``pm_dmapool *`` (csrc/dmapool.h): destroyed when the last reference goes.
Pool = NewType("Pool", object)

MIN_ORDER: Final[int] = lib.PM_DMAPOOL_MIN_ORDER

# Hot: the cffi functions themselves, typed.
alloc: Callable[[Pool, int], int] = lib.pm_dmapool_alloc
free: Callable[[Pool, int, int], int] = lib.pm_dmapool_free
close: Callable[[Pool, int], int] = lib.pm_dmapool_close


def new(size: int, max_order: int) -> tuple[int, Pool | None]:
    """A pool of ``size`` bytes, blocks of at most 2**max_order: (0, the pool) or
    (-errno, None). The pool is destroyed (pm_dmapool_destroy) once no reference is left,
    so no call on it can be running then."""
    out = ffi.new("pm_dmapool **")
    ret: int = lib.pm_dmapool_new(size, max_order, out)
    if ret < 0:
        return ret, None
    return ret, Pool(ffi.gc(out[0], lib.pm_dmapool_destroy))


def alloc_many(pool: Pool, order: int, out: np.ndarray) -> int:
    """Fill ``out`` (uint64) with offsets of len(out) blocks of 2**order, all or none."""
    ret: int = lib.pm_dmapool_alloc_many(pool, order, len(out),
                                         ffi.from_buffer("uint64_t[]", out))
    return ret


def free_many(pool: Pool, offsets: np.ndarray, nbytes: int) -> tuple[int, int]:
    """Free the blocks at ``offsets`` (uint64), all or none: (0 or -errno, the bad index)."""
    orders = np.empty(len(offsets), dtype=np.uint8)
    bad = ffi.new("uint64_t *")
    ret: int = lib.pm_dmapool_free_many(pool, ffi.from_buffer("uint64_t[]", offsets),
                                        len(offsets), nbytes,
                                        ffi.from_buffer("unsigned char[]", orders), bad)
    return ret, int(bad[0])


def stats(pool: Pool) -> tuple[int, int, int, bool]:
    """(free bytes, outstanding blocks, largest free block, closed)."""
    out = ffi.new("uint64_t[4]")
    lib.pm_dmapool_stats(pool, out)
    return int(out[0]), int(out[1]), int(out[2]), bool(out[3])
