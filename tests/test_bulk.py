"""physmem._bulk: big result arrays in huge-page mappings, reused only once nothing holds them.

Checked against the kernel's own account of this process: /proc/self/smaps (read here with
plain open(), not physmem) for the mapping behind an array.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import mmap
import os
import re

import numpy as np
import pytest

from physmem import PageMap, _bulk

MIB = 1 << 20


def _vma(address: int) -> dict[str, str] | None:
    """The smaps block of the mapping holding ``address``, as field -> value text."""
    with open("/proc/self/smaps") as f:
        text = f.read()
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        lo, hi = (int(x, 16) for x in block.split(" ", 1)[0].split("-"))
        if lo <= address < hi:
            fields = dict(line.split(":", 1) for line in block.splitlines()[1:] if ":" in line)
            fields["range"] = f"{lo:x}-{hi:x}"
            return {k: v.strip() for k, v in fields.items()}
    return None


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_MAP_FIXED_NOREPLACE = 0x100000


def _mapped(address: int) -> bool:
    """Whether the kernel has a mapping at ``address``: a probe mapping placed there with
    MAP_FIXED_NOREPLACE fails with EEXIST exactly when it does."""
    got = _libc.mmap(address, mmap.PAGESIZE, 0,  # PROT_NONE
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED_NOREPLACE, -1, 0)
    if got == address:
        _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(mmap.PAGESIZE))
        return False
    assert ctypes.get_errno() == errno.EEXIST
    return True


def _thp_mode() -> str:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        return re.search(r"\[(\w+)\]", f.read()).group(1)  # type: ignore[union-attr]


def test_small_arrays_are_plain_numpy() -> None:
    a = _bulk.empty(1000)
    assert a.flags.owndata and a.dtype == np.uint64 and a.shape == (1000,)


def test_big_array_is_backed_by_huge_pages() -> None:
    if _thp_mode() == "never":
        pytest.skip("transparent huge pages are disabled on this machine")
    a = _bulk.empty(2 * MIB // 8)
    a[:] = 7
    vma = _vma(a.ctypes.data)
    assert vma is not None
    assert vma["AnonHugePages"] == "2048 kB", vma
    assert a.flags.writeable and int(a.sum()) == 7 * len(a)


def test_memory_is_reused_only_when_no_array_or_view_holds_it() -> None:
    n = 4 * MIB // 8
    a = _bulk.empty(n)
    a[:] = 1
    view = a[10:20]
    addr = a.ctypes.data
    del a
    gc.collect()
    b = _bulk.empty(n)  # the view still holds the first mapping
    assert b.ctypes.data != addr
    b[:] = 2
    assert view.tolist() == [1] * 10
    del view
    gc.collect()
    c = _bulk.empty(n)
    assert c.ctypes.data == addr  # now free: reused, not mapped afresh
    del b, c


def test_what_is_kept_is_bounded_and_the_rest_unmapped() -> None:
    size = 8 * MIB
    arrays = [_bulk.empty(size // 8) for _ in range(_bulk._KEEP // size + 3)]
    addrs = [a.ctypes.data for a in arrays]
    for a in arrays:
        a[::512] = 1
    del arrays, a
    gc.collect()
    kept = [x for x in addrs if _mapped(x)]
    assert len(kept) <= _bulk._KEEP // size
    assert len(kept) < len(addrs)  # the others were unmapped
    big = _bulk.empty((_bulk._KEEP_ONE + 2 * MIB) // 8)
    addr = big.ctypes.data
    del big
    gc.collect()
    assert not _mapped(addr)  # above _KEEP_ONE: never kept


def test_translate_results_stay_correct_across_reuse(is_root: None) -> None:
    """Entries written into reused memory: every result matches a plain pread of pagemap."""
    size = 2 << 30 >> 1  # 1 GiB of 4 KiB pages: 2 MiB of entries, a bulk array
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    page = mmap.PAGESIZE
    view = np.frombuffer(m, dtype=np.uint8)
    view[::page] = 1
    base = view.ctypes.data
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        raw = np.frombuffer(os.pread(fd, size // page * 8, base // page * 8), dtype=np.uint64)
        with PageMap() as pm:
            for _ in range(3):
                entries = pm.read(base, size)
                assert np.array_equal(entries.raw, raw)
                got = pm.read(base, size).paddr()
                assert np.array_equal(got, (raw & np.uint64((1 << 55) - 1)) * np.uint64(page))
                del entries, got
                gc.collect()
    finally:
        os.close(fd)
        del view
        m.close()
