"""Raw NUMA memory policy syscalls (csrc/mempolicy.h): each returns ``-errno`` on failure.

Node masks are uint64 arrays holding ``nbits`` bits; None passes NULL (no nodes)."""
from __future__ import annotations

from typing import Any, Final

import numpy as np

from . import ffi, lib


def _u64(array: np.ndarray | None) -> Any:
    return ffi.NULL if array is None else ffi.from_buffer("uint64_t[]", array)


def _int(array: np.ndarray | None) -> Any:
    return ffi.NULL if array is None else ffi.from_buffer("int[]", array)


def mbind(addr: int, length: int, mode: int, mask: np.ndarray | None, nbits: int,
          flags: int) -> int:
    ret: int = lib.pm_mbind(addr, length, mode, _u64(mask), nbits, flags)
    return ret


def set_mempolicy(mode: int, mask: np.ndarray | None, nbits: int) -> int:
    ret: int = lib.pm_set_mempolicy(mode, _u64(mask), nbits)
    return ret


def get_mempolicy(mask: np.ndarray, nbits: int, addr: int, flags: int) -> tuple[int, int]:
    """(0 or -errno, the mode word); ``mask`` (uint64) receives the nodes."""
    mode = ffi.new("int *")
    ret: int = lib.pm_get_mempolicy(mode, _u64(mask), nbits, addr, flags)
    return ret, int(mode[0])


def _pointers(pages: np.ndarray) -> Any:
    """The uint64 addresses as the array of user pointers (``void *[]``) move_pages reads:
    the array itself where pointers are 64-bit, as on every ABI physmem builds for."""
    words = np.ascontiguousarray(pages, dtype=np.uintp)
    if words.dtype.itemsize < pages.dtype.itemsize and not np.array_equal(words, pages):
        raise OverflowError("internal: an address wider than this ABI's pointers")
    return ffi.from_buffer("void *[]", words)


def move_pages(pid: int, pages: np.ndarray, nodes: np.ndarray | None, status: np.ndarray,
               flags: int) -> int:
    """``pages`` uint64 addresses; ``nodes`` (int32, None: query only) and ``status`` (int32)
    one per page."""
    ret: int = lib.pm_move_pages(pid, len(pages), _pointers(pages), _int(nodes), _int(status),
                                 flags)
    return ret


MPOL_DEFAULT: Final[int] = lib.MPOL_DEFAULT
MPOL_PREFERRED: Final[int] = lib.MPOL_PREFERRED
MPOL_BIND: Final[int] = lib.MPOL_BIND
MPOL_INTERLEAVE: Final[int] = lib.MPOL_INTERLEAVE
MPOL_LOCAL: Final[int] = lib.MPOL_LOCAL
MPOL_PREFERRED_MANY: Final[int] = lib.MPOL_PREFERRED_MANY
MPOL_WEIGHTED_INTERLEAVE: Final[int] = lib.PM_MPOL_WEIGHTED_INTERLEAVE
MPOL_F_STATIC_NODES: Final[int] = lib.MPOL_F_STATIC_NODES
MPOL_F_RELATIVE_NODES: Final[int] = lib.MPOL_F_RELATIVE_NODES
MPOL_F_NUMA_BALANCING: Final[int] = lib.MPOL_F_NUMA_BALANCING
MPOL_F_ADDR: Final[int] = lib.MPOL_F_ADDR
MPOL_MF_STRICT: Final[int] = lib.MPOL_MF_STRICT
MPOL_MF_MOVE: Final[int] = lib.MPOL_MF_MOVE
MPOL_MF_MOVE_ALL: Final[int] = lib.MPOL_MF_MOVE_ALL
