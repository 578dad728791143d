"""Benchmark: bulk pagemap translation and kpageflags reads against the obvious baselines.

Run as root: ``python benchmarks/translate.py``. Baselines and physmem run side by side in
this one process; ratios are what matter (absolute times vary with the machine's noise).
"""
from __future__ import annotations

import mmap
import os
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import best_interleaved, best_of, report, show_time  # noqa: E402

import physmem  # noqa: E402
from physmem import KPageFlags, PageMap  # noqa: E402

PAGE = mmap.PAGESIZE
SIZE = 1 << 30


def main() -> int:
    if os.geteuid() != 0:
        print("needs root: physical frame numbers are hidden from unprivileged users")
        return 1
    buf = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages, as the target is stated
    np.frombuffer(buf, dtype=np.uint8)[::PAGE] = 1  # touch every page
    view = np.frombuffer(buf, dtype=np.uint8)
    addr = view.ctypes.data
    npages = SIZE // PAGE
    vaddrs = np.arange(addr, addr + SIZE, PAGE, dtype=np.uint64)
    print(f"physmem {physmem.__version__}: 1 GiB of touched {PAGE} B pages ({npages} entries), "
          f"kernel {os.uname().release}")

    # (a) naive: seek + read(8) per page on an unbuffered file
    def naive() -> list[int]:
        out = []
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            for v in range(addr, addr + SIZE, PAGE):
                f.seek(v // PAGE * 8)
                out.append(int.from_bytes(f.read(8), "little"))
        return out

    # (b) raw preadv of the whole range into a preallocated array
    raw = np.empty(npages, dtype=np.uint64)
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)

    def raw_preadv() -> None:
        os.preadv(fd, [raw], addr // PAGE * 8)

    pm = PageMap()

    t_a = best_of(naive, 1)
    t_b, t_c, t_c2 = best_interleaved(
        [raw_preadv, lambda: pm.translate(vaddrs), lambda: pm.read(addr, SIZE).paddr()], 25)
    raw_preadv()
    assert np.array_equal((raw & np.uint64((1 << 55) - 1)) * np.uint64(PAGE), pm.translate(vaddrs))

    # memory: peak allocation while translating 1 GiB, against the 2 MiB of entries read
    tracemalloc.start()
    pm.translate(vaddrs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    pfns = pm.translate(vaddrs) // np.uint64(PAGE)
    kfd = os.open("/proc/kpageflags", os.O_RDONLY)

    def per_pfn() -> None:
        for p in pfns.tolist():
            os.pread(kfd, 8, p * 8)

    kf = KPageFlags()
    t_d = best_of(per_pfn, 1)
    t_e = best_of(lambda: kf.read(pfns), 5)

    total = kf.max_pfn()
    whole = np.empty(total, dtype=np.uint64)
    whole[:] = 0  # fault the buffer in before timing

    def raw_whole() -> None:
        os.preadv(kfd, [whole], 0)

    t_f = best_of(raw_whole, 3)
    t_g = best_of(kf.summary, 3)

    print("\ntimes (best of several runs)")
    show_time("(a) python seek+read(8) per page", t_a)
    show_time("(b) os.preadv of the range into a numpy array", t_b)
    show_time("(c) PageMap.translate(array of 262144 addresses)", t_c)
    show_time("(c') PageMap.read(range).paddr()", t_c2)
    show_time("(d) one pread per PFN of /proc/kpageflags", t_d)
    show_time("(e) KPageFlags.read(pfns)", t_e)
    show_time(f"(f) raw read of all /proc/kpageflags ({total} frames)", t_f)
    show_time("(g) KPageFlags.summary() (scan + summarize)", t_g)

    print("\nratios")
    ok = [
        report("(c) / (b): translate vs raw preadv", t_c / t_b, "<= 1.2x", t_c / t_b <= 1.2),
        report("(c') / (b): read+paddr vs raw preadv", t_c2 / t_b, "<= 1.2x", t_c2 / t_b <= 1.2),
        report("(a) / (c): naive per-page vs translate", t_a / t_c, ">= 40x", t_a / t_c >= 40),
        report("(d) / (e): pread per PFN vs KPageFlags.read", t_d / t_e, ">= 3x", t_d / t_e >= 3),
        report("(g) / (f): scan+summarize vs raw read", t_g / t_f, "<= 1.2x", t_g / t_f <= 1.2),
        report("peak allocation translating 1 GiB / 2 MiB of entries", peak / (npages * 8),
               "<= 4x", peak / (npages * 8) <= 4),
    ]
    os.close(fd)
    os.close(kfd)
    print(f"\n{sum(ok)} of {len(ok)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
