"""Raw mappings and memfd (csrc/mapping.h): each returns ``-errno`` on failure."""
from __future__ import annotations

import enum
from typing import Any, Callable, Final

from . import ffi, lib

# Called with the C signature, straight into cffi (no wrapper: munmap and touch are hot).
mmap: Callable[[int, int, int, int, int, int], int] = lib.pm_mmap
munmap: Callable[[int, int], int] = lib.pm_munmap
mremap: Callable[[int, int, int, int, int], int] = lib.pm_mremap
mlock2: Callable[[int, int, int], int] = lib.pm_mlock2
munlock: Callable[[int, int], int] = lib.pm_munlock
msync: Callable[[int, int, int], int] = lib.pm_msync
madvise: Callable[[int, int, int], int] = lib.pm_madvise
mprotect: Callable[[int, int, int], int] = lib.pm_mprotect
touch: Callable[[int, int, int, int], int] = lib.pm_touch
memfd_create: Callable[[bytes, int], int] = lib.pm_memfd_create
add_seals: Callable[[int, int], int] = lib.pm_add_seals
get_seals: Callable[[int], int] = lib.pm_get_seals
ftruncate: Callable[[int, int], int] = lib.pm_ftruncate
fallocate: Callable[[int, int, int, int], int] = lib.pm_fallocate


def memory_at(address: int, size: int) -> Any:
    """A writable cffi buffer onto ``size`` bytes at ``address`` (the caller keeps them
    mapped). ``Any``: it has the buffer protocol, which typing cannot say before 3.12, and
    can be weak-referenced, unlike a memoryview."""
    return ffi.buffer(ffi.cast("char *", address), size)


def owned_memory(address: int, size: int, release: Callable[[int, int], None]) -> Any:
    """As :func:`memory_at`, and ``release(address, size)`` is called once no buffer, view
    or array made from it is left (the caller decides whether to unmap or reuse)."""
    ptr = ffi.gc(ffi.cast("char *", address), lambda _: release(address, size), size)
    return ffi.buffer(ptr, size)


PROT_NONE: Final[int] = lib.PROT_NONE
PROT_READ: Final[int] = lib.PROT_READ
PROT_WRITE: Final[int] = lib.PROT_WRITE
PROT_EXEC: Final[int] = lib.PROT_EXEC


class Prot(enum.IntFlag):
    """Access protection of a mapping (``PROT_*``), also the ``rwx`` of /proc/<pid>/maps.

    Here, below both the mapping objects and the maps parser, so each can use it."""

    NONE = PROT_NONE
    READ = PROT_READ
    WRITE = PROT_WRITE
    EXEC = PROT_EXEC


MAP_SHARED: Final[int] = lib.MAP_SHARED
MAP_PRIVATE: Final[int] = lib.MAP_PRIVATE
MAP_ANONYMOUS: Final[int] = lib.MAP_ANONYMOUS
MAP_FIXED: Final[int] = lib.MAP_FIXED
MAP_FIXED_NOREPLACE: Final[int] = lib.MAP_FIXED_NOREPLACE
MAP_POPULATE: Final[int] = lib.MAP_POPULATE
MAP_NORESERVE: Final[int] = lib.MAP_NORESERVE
MAP_HUGETLB: Final[int] = lib.MAP_HUGETLB
MAP_HUGE_SHIFT: Final[int] = lib.MAP_HUGE_SHIFT
MREMAP_MAYMOVE: Final[int] = lib.MREMAP_MAYMOVE
MREMAP_FIXED: Final[int] = lib.MREMAP_FIXED
MREMAP_DONTUNMAP: Final[int] = lib.MREMAP_DONTUNMAP
MLOCK_ONFAULT: Final[int] = lib.MLOCK_ONFAULT
MS_ASYNC: Final[int] = lib.MS_ASYNC
MS_SYNC: Final[int] = lib.MS_SYNC
MS_INVALIDATE: Final[int] = lib.MS_INVALIDATE
MADV_NORMAL: Final[int] = lib.MADV_NORMAL
MADV_RANDOM: Final[int] = lib.MADV_RANDOM
MADV_SEQUENTIAL: Final[int] = lib.MADV_SEQUENTIAL
MADV_WILLNEED: Final[int] = lib.MADV_WILLNEED
MADV_DONTNEED: Final[int] = lib.MADV_DONTNEED
MADV_FREE: Final[int] = lib.MADV_FREE
MADV_REMOVE: Final[int] = lib.MADV_REMOVE
MADV_DONTFORK: Final[int] = lib.MADV_DONTFORK
MADV_DOFORK: Final[int] = lib.MADV_DOFORK
MADV_MERGEABLE: Final[int] = lib.MADV_MERGEABLE
MADV_UNMERGEABLE: Final[int] = lib.MADV_UNMERGEABLE
MADV_HUGEPAGE: Final[int] = lib.MADV_HUGEPAGE
MADV_NOHUGEPAGE: Final[int] = lib.MADV_NOHUGEPAGE
MADV_DONTDUMP: Final[int] = lib.MADV_DONTDUMP
MADV_DODUMP: Final[int] = lib.MADV_DODUMP
MADV_WIPEONFORK: Final[int] = lib.MADV_WIPEONFORK
MADV_KEEPONFORK: Final[int] = lib.MADV_KEEPONFORK
MADV_COLD: Final[int] = lib.MADV_COLD
MADV_PAGEOUT: Final[int] = lib.MADV_PAGEOUT
MADV_POPULATE_READ: Final[int] = lib.MADV_POPULATE_READ
MADV_POPULATE_WRITE: Final[int] = lib.MADV_POPULATE_WRITE
MADV_DONTNEED_LOCKED: Final[int] = lib.MADV_DONTNEED_LOCKED
MADV_COLLAPSE: Final[int] = lib.MADV_COLLAPSE
MADV_GUARD_INSTALL: Final[int] = lib.MADV_GUARD_INSTALL
MADV_GUARD_REMOVE: Final[int] = lib.MADV_GUARD_REMOVE
MFD_CLOEXEC: Final[int] = lib.MFD_CLOEXEC
MFD_ALLOW_SEALING: Final[int] = lib.MFD_ALLOW_SEALING
MFD_HUGETLB: Final[int] = lib.MFD_HUGETLB
MFD_HUGE_SHIFT: Final[int] = lib.MFD_HUGE_SHIFT
MFD_NOEXEC_SEAL: Final[int] = lib.MFD_NOEXEC_SEAL
F_SEAL_SEAL: Final[int] = lib.F_SEAL_SEAL
F_SEAL_SHRINK: Final[int] = lib.F_SEAL_SHRINK
F_SEAL_GROW: Final[int] = lib.F_SEAL_GROW
F_SEAL_WRITE: Final[int] = lib.F_SEAL_WRITE
F_SEAL_FUTURE_WRITE: Final[int] = lib.F_SEAL_FUTURE_WRITE
F_SEAL_EXEC: Final[int] = lib.F_SEAL_EXEC
FALLOC_FL_KEEP_SIZE: Final[int] = lib.FALLOC_FL_KEEP_SIZE
FALLOC_FL_PUNCH_HOLE: Final[int] = lib.FALLOC_FL_PUNCH_HOLE
