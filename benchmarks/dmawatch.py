"""Benchmark: one check of the move watchdog (physmem.dma.watch) over 1 GiB of 2 MiB
hugetlb pages, against the floor (the same 512 pagemap entries read by C, one pread each,
with no comparison) and the obvious Python loop (one os.pread per page).

Run as root: ``python benchmarks/dmawatch.py``. The buffer is ``allocate_scatter("1G",
reserve=True)``: the pool grows for it and is as it was once the buffer closes. Target: one
check in under 1 ms. For information: the same over 1 GiB of 4 KiB anonymous pages, where a
check reads 262144 entries.
"""
from __future__ import annotations

import mmap
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure, need_root  # noqa: E402

import physmem  # noqa: E402
from physmem._raw import pageio  # noqa: E402
from physmem.dma import allocate_scatter, watch  # noqa: E402

CHECKS = 20     # checks per timed call
ROUNDS = 15
TARGET_MS = 1.0
HUGE = 2 << 20


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("dmawatch: one check of a move watchdog over 1 GiB")
    page = mmap.PAGESIZE
    with allocate_scatter("1G", reserve=True) as buf:
        print(f"physmem {physmem.__version__}: {buf!r}, kernel {os.uname().release}")
        heads = np.arange(buf.address, buf.address + buf.size, HUGE, dtype=np.uint64)
        vpn = heads // np.uint64(page)
        ones = np.ones(len(vpn), dtype=np.uint64)
        entries = np.empty(len(vpn), dtype=np.uint64)
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        anon = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                         | getattr(mmap, "MAP_POPULATE", 0x8000))
        anon_at = np.frombuffer(anon, dtype=np.uint8).ctypes.data
        try:
            with watch(buf) as w, watch((anon_at, len(anon))) as small:
                assert w.pages == len(heads) and w.check() == []
                # The floor reads what the watch reads: the entries of the head pages.
                pageio.gather_u64(fd, vpn, ones, entries)
                frames = (entries & np.uint64((1 << 55) - 1)) * np.uint64(page)
                assert np.array_equal(frames, buf.virt_to_phys(heads - np.uint64(buf.address)))

                def checks() -> None:
                    for _ in range(CHECKS):
                        w.check()

                def floor() -> None:
                    for _ in range(CHECKS):
                        pageio.gather_u64(fd, vpn, ones, entries)

                def naive() -> None:
                    for _ in range(CHECKS):
                        for p in vpn.tolist():
                            os.pread(fd, 8, p * 8)

                def small_pages() -> None:
                    small.check()

                span = np.empty(len(anon) // page, dtype=np.uint64)

                def small_floor() -> None:
                    pageio.pread_u64(fd, anon_at // page, len(span), span)

                s = measure({
                    f"Watch.check() x{CHECKS}, 512 x 2 MiB": checks,
                    f"C floor: one pread per page x{CHECKS}": floor,
                    f"Python loop: os.pread per page x{CHECKS}": naive,
                    "Watch.check() x1, 262144 x 4 KiB": small_pages,
                    "C floor: one pread of 262144 entries": small_floor,
                }, ROUNDS)
                per_check = s[f"Watch.check() x{CHECKS}, 512 x 2 MiB"]
                v.value("one check, 1 GiB of 2 MiB pages", per_check.median / CHECKS * 1e3,
                        "ms", at_most=TARGET_MS, fmt="{:.3f}")
                info("Watch.check() / C floor (pread per page, no comparison)",
                     f"{per_check.median / s[f'C floor: one pread per page x{CHECKS}'].median:.2f}x")
                info("Python os.pread loop / Watch.check()",
                     f"{s[f'Python loop: os.pread per page x{CHECKS}'].median / per_check.median:.2f}x")
                small_check = s["Watch.check() x1, 262144 x 4 KiB"].median
                info("one check, 1 GiB of 4 KiB anonymous pages",
                     f"{small_check * 1e3:.3f} ms, "
                     f"{small_check / s['C floor: one pread of 262144 entries'].median:.2f}x "
                     "its C floor")
        finally:
            os.close(fd)
            anon.close()
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
