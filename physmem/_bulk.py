"""Fresh result arrays of 2 MiB and more: huge-page backed, and their memory reused.

A new array's memory costs a page fault per 4 KiB page on first write: 512 faults for the
2 MiB of pagemap entries of 1 GiB, about 0.6 ms on a VM, a fifth of what the kernel takes
to produce those entries. So these arrays live in mappings advised for transparent huge
pages (one fault per 2 MiB; numpy does the same, but only from 4 MiB on), and a mapping
whose last array is gone is kept for the next one of its size, as malloc keeps freed
memory, instead of being unmapped and zeroed afresh. What is kept is bounded (``_KEEP``
bytes, none above ``_KEEP_ONE``) and marked MADV_FREE, so under memory pressure the kernel
takes it back without swapping; a reused mapping then faults in zeroed pages, which is
still correct, as the arrays are uninitialised (like ``np.empty``).
"""
from __future__ import annotations

import numpy as np

from ._raw import mapping as _map

_HUGE = 1 << 21  # the PMD size of x86-64 and arm64 (4 KiB pages); elsewhere merely a threshold
_KEEP = 32 << 20
_KEEP_ONE = 16 << 20

# Free mappings by length. Only atomic list operations touch it: the release callback runs
# from the garbage collector, which may interrupt empty() in this very thread.
_free: dict[int, list[int]] = {}


def empty(count: int, dtype: np.dtype | type = np.uint64) -> np.ndarray:
    """A writeable, uninitialised 1-D array of ``count`` items (as ``np.empty``)."""
    dt = np.dtype(dtype)
    nbytes = count * dt.itemsize
    if nbytes < _HUGE:
        return np.empty(count, dtype=dt)
    length = -(-nbytes // _HUGE) * _HUGE
    try:
        address = _free[length].pop()
    except (KeyError, IndexError):
        address = _new_mapping(length, nbytes)
        if address < 0:
            return np.empty(count, dtype=dt)  # raises MemoryError if memory is really short
    return np.frombuffer(_map.owned_memory(address, length, _release), dtype=dt, count=count)


def _new_mapping(length: int, nbytes: int) -> int:
    address: int = _map.mmap(0, length, _map.PROT_READ | _map.PROT_WRITE,
                             _map.MAP_PRIVATE | _map.MAP_ANONYMOUS, -1, 0)
    if address >= 0:
        # A length in whole huge pages makes the kernel align the mapping to one (Linux
        # 6.7+). Only the part the first array covers in whole huge pages is advised, so a
        # tail costs no more memory than it uses. Without THP the advice fails: plain pages.
        _map.madvise(address, nbytes // _HUGE * _HUGE, _map.MADV_HUGEPAGE)
    return address


def _release(address: int, length: int) -> None:
    try:
        kept = sum(len(v) * k for k, v in list(_free.items()))
        if length <= _KEEP_ONE and kept + length <= _KEEP and _map.madvise(
                address, length, _map.MADV_FREE) == 0:
            _free.setdefault(length, []).append(address)
            return
        _map.munmap(address, length)
    except Exception:  # noqa: BLE001 - at interpreter exit the module may be half torn down
        pass
