"""Raw kpageflags counting without numpy (csrc/pageio.h, runs.h): what the page-types style
summary needs, so ``physmem kpageflags --summary`` starts without numpy's import."""
from __future__ import annotations

from typing import Any, Final

from . import ffi, lib

# /proc/kpageflags bit numbers (linux/kernel-page-flags.h).
KPF: Final[dict[str, int]] = {name[4:]: getattr(lib, name) for name in dir(lib)
                              if name.startswith("KPF_")}
EMPTY_KEY: Final[int] = lib.PM_EMPTY_KEY


def probe_u64(fd: int, index: int) -> int:
    """Entries (0 or 1) a pread of entry ``index`` returns, or -errno."""
    got: int = lib.pm_pread_u64(fd, index, 1, ffi.new("uint64_t[1]"))
    return got


class CountTable:
    """An open-addressing table of distinct values and their counts, filled in C."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.capacity = capacity
        self.keys: Any = ffi.new("uint64_t[]", capacity)
        ffi.memmove(self.keys, b"\xff" * (8 * capacity), 8 * capacity)  # all PM_EMPTY_KEY
        self.counts: Any = ffi.new("uint64_t[]", capacity)
        self.used: Any = ffi.new("uint64_t *", 0)
        self._consumed: Any = ffi.new("uint64_t *")
        self._stop: Any = ffi.new("int *")

    def items(self) -> dict[int, int]:
        keys = ffi.unpack(self.keys, self.capacity)
        counts = ffi.unpack(self.counts, self.capacity)
        return {k: c for k, c in zip(keys, counts) if k != EMPTY_KEY}

    def grow(self) -> None:
        """Four times the room, the counts kept (re-added through the same C counter)."""
        items = self.items()
        self.__init__(self.capacity * 4)  # type: ignore[misc]
        keys = ffi.new("uint64_t[1]")
        weights = ffi.new("uint64_t[1]")
        consumed = ffi.new("size_t *")
        for k, c in items.items():
            keys[0], weights[0] = k, c
            lib.pm_count_add(self.keys, self.counts, self.capacity, self.used, keys, weights, 1,
                             consumed)

    def count_pread(self, fd: int, index: int, count: int) -> tuple[int, int, int]:
        """Read up to ``count`` entries from ``index`` and count them here: (0 or -errno of
        the read, entries consumed, stop: 0 done, -ENOSPC table full (grow and go on),
        -EINVAL an EMPTY_KEY entry met)."""
        ret: int = lib.pm_count_pread_u64(fd, index, count, self.keys, self.counts,
                                          self.capacity, self.used, self._consumed, self._stop)
        return ret, int(self._consumed[0]), int(self._stop[0])
