"""Raw kpageflags counting without numpy (csrc/pageio.h, runs.h): what the page-types style
summary needs, so ``physmem kpageflags --summary`` starts without numpy's import."""
from __future__ import annotations

import errno as _errno
from typing import Any, Final

from . import NULL, ffi, lib

# /proc/kpageflags bit numbers (linux/kernel-page-flags.h).
KPF: Final[dict[str, int]] = {name[4:]: getattr(lib, name) for name in dir(lib)
                              if name.startswith("KPF_")}
EMPTY_KEY: Final[int] = lib.PM_EMPTY_KEY


def probe_u64(fd: int, index: int) -> int:
    """Entries (0 or 1) a pread of entry ``index`` returns, or -errno."""
    got: int = lib.pm_pread_u64(fd, index, 1, ffi.new("uint64_t[1]"))
    return got


class CountTable:
    """The one distinct-value counter (pm_count_add): an open-addressing table of values and
    their counts, filled in C (a numpy sort would dominate a scan). numpy-free, so the CLI's
    kpageflags summary runs without numpy; numpy arrays come in by the buffer protocol."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.capacity = capacity
        self.keys: Any = ffi.new("uint64_t[]", capacity)
        ffi.memmove(self.keys, b"\xff" * (8 * capacity), 8 * capacity)  # all PM_EMPTY_KEY
        self.counts: Any = ffi.new("uint64_t[]", capacity)
        self.used: Any = ffi.new("uint64_t *", 0)
        self._consumed: Any = ffi.new("uint64_t *")
        self._taken: Any = ffi.new("size_t *")
        self._stop: Any = ffi.new("int *")

    def items(self) -> dict[int, int]:
        keys = ffi.unpack(self.keys, self.capacity)
        counts = ffi.unpack(self.counts, self.capacity)
        return {k: c for k, c in zip(keys, counts) if k != EMPTY_KEY}

    def add_some(self, values: Any, weights: Any, n: int) -> tuple[int, int]:
        """Count the first ``n`` uint64 ``values`` (each ``weights`` times, or once; both
        buffers): (slots used, or -ENOSPC: the table is full, or -EINVAL: an EMPTY_KEY value
        met; values consumed)."""
        ret: int = lib.pm_count_add(
            self.keys, self.counts, self.capacity, self.used,
            ffi.from_buffer("uint64_t[]", values),
            NULL if weights is None else ffi.from_buffer("uint64_t[]", weights), n, self._taken)
        return ret, int(self._taken[0])

    def add(self, values: Any, weights: Any, n: int) -> int | None:
        """Count all ``n`` values, growing the table as it fills; ``None``, or the index of
        an EMPTY_KEY value, which cannot be counted (nothing from it on is)."""
        done = 0
        item = 8
        while done < n:
            rest = memoryview(values).cast("B")[done * item:]
            wrest = None if weights is None else memoryview(weights).cast("B")[done * item:]
            ret, taken = self.add_some(rest, wrest, n - done)
            done += taken
            if ret == -_errno.EINVAL:
                return done
            if ret == -_errno.ENOSPC:
                self.grow()
        return None

    def grow(self) -> None:
        """Four times the room, the counts kept (re-added through the same C counter)."""
        items = self.items()
        self.__init__(self.capacity * 4)  # type: ignore[misc]
        keys = ffi.new("uint64_t[]", list(items))
        weights = ffi.new("uint64_t[]", list(items.values()))
        if items:
            self.add_some(ffi.buffer(keys), ffi.buffer(weights), len(items))

    def count_pread(self, fd: int, index: int, count: int) -> tuple[int, int, int]:
        """Read up to ``count`` entries from ``index`` and count them here: (0 or -errno of
        the read, entries consumed, stop: 0 done, -ENOSPC table full (grow and go on),
        -EINVAL an EMPTY_KEY entry met)."""
        ret: int = lib.pm_count_pread_u64(fd, index, count, self.keys, self.counts,
                                          self.capacity, self.used, self._consumed, self._stop)
        return ret, int(self._consumed[0]), int(self._stop[0])
