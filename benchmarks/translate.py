"""Benchmark: translating 1 GiB of 4 KiB pages, against a raw read, per-page C loops and the
kernel's own page-types; kpageflags reads against one pread per frame.

Run as root: ``python benchmarks/translate.py`` (peers from ``benchmarks/peers/setup.sh``).
Every contender runs the same number of rounds, interleaved in shuffled order (see _bench).
Targets: translate <= 1.2x raw preadv; >= 20x the C per-page pread loop;
>= 20x page-types -L on the same range.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure, need_root, peer_path  # noqa: E402

import physmem  # noqa: E402
from physmem import KPageFlags, PageMap  # noqa: E402

PAGE = mmap.PAGESIZE
SIZE = 1 << 30
ROUNDS = 15
CORE_ROUNDS = 61


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("translate: 1 GiB of 4 KiB pages")
    buf = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages, as the target is stated
    view = np.frombuffer(buf, dtype=np.uint8)
    view[::PAGE] = 1  # touch every page
    addr = view.ctypes.data
    npages = SIZE // PAGE
    vaddrs = np.arange(addr, addr + SIZE, PAGE, dtype=np.uint64)
    print(f"physmem {physmem.__version__}, kernel {os.uname().release}, {npages} pages")

    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    raw = np.empty(npages, dtype=np.uint64)
    raw[:] = 0  # the ready buffer: faulted in before any timing
    out = np.empty(npages, dtype=np.uint64)
    out[:] = 0
    pm = PageMap()

    def raw_preadv() -> None:
        os.preadv(fd, [raw], addr // PAGE * 8)

    # The in-process contenders take a few ms a round, so they get rounds enough for a
    # stable median of their own; the peers below (whole commands, up to 0.5 s a round) are
    # measured in a second interleaved set that includes translate again.
    core = {
        "raw: os.preadv into a ready buffer": raw_preadv,
        "physmem: PageMap.translate(addresses)": lambda: pm.translate(vaddrs),
        "physmem: PageMap.read(range).paddr()": lambda: pm.read(addr, SIZE).paddr(),
    }
    contenders = {"physmem: PageMap.translate(addresses)": core[
        "physmem: PageMap.translate(addresses)"]}
    lib_path = peer_path("libvirt2phy.so")
    if lib_path:
        lib = ctypes.CDLL(lib_path)
        lib.v2p_pread_loop.restype = ctypes.c_long
        lib.v2p_pread_loop.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_uint64, ctypes.c_void_p]
        lib.v2p_dpdk_style.restype = ctypes.c_long
        lib.v2p_dpdk_style.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_void_p]
        outp = out.ctypes.data
        contenders["C loop: one pread per page"] = (
            lambda: lib.v2p_pread_loop(fd, addr, npages, PAGE, outp))
        contenders["C loop: open+pread+close per page (rte_mem_virt2phy)"] = (
            lambda: lib.v2p_dpdk_style(addr, npages, PAGE, outp))
    page_types = peer_path("page-types")
    if page_types:
        cmd = [page_types, "-p", str(os.getpid()), "-L", "-N", "-a",
               f"{addr // PAGE}+{npages}"]
        contenders["page-types -p PID -L (command)"] = (
            lambda: subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True))
        cmd_l = [page_types, "-p", str(os.getpid()), "-l", "-N", "-a",
                 f"{addr // PAGE}+{npages}"]
        contenders["page-types -p PID -l (command)"] = (
            lambda: subprocess.run(cmd_l, stdout=subprocess.DEVNULL, check=True))
        physmem_cmd = [sys.executable, "-m", "physmem.cli", "v2p", "--pid", str(os.getpid()),
                       hex(addr)]
        contenders["physmem v2p one address (command start-up)"] = (
            lambda: subprocess.run(physmem_cmd, stdout=subprocess.DEVNULL, check=True))

    # Same answer before any timing: the C loop (not physmem code) against physmem.
    expect = pm.translate(vaddrs)
    if lib_path:
        lib.v2p_pread_loop(fd, addr, npages, PAGE, out.ctypes.data)
        assert np.array_equal(out, expect), "per-page C loop and physmem disagree"
    c = measure(core, CORE_ROUNDS)
    v.ratio("translate / raw preadv", c["physmem: PageMap.translate(addresses)"],
            c["raw: os.preadv into a ready buffer"], at_most=1.2)
    v.ratio("read(range).paddr() / raw preadv", c["physmem: PageMap.read(range).paddr()"],
            c["raw: os.preadv into a ready buffer"], at_most=1.2)
    s = measure(contenders, ROUNDS)
    t = s["physmem: PageMap.translate(addresses)"]
    if lib_path:
        v.ratio("C one-pread-per-page loop / translate", s["C loop: one pread per page"], t,
                at_least=20)
        info("rte_mem_virt2phy-style loop / translate",
             f"{s['C loop: open+pread+close per page (rte_mem_virt2phy)'].median / t.median:.1f}x")
    else:
        v.skip("C per-page pread loop", "libvirt2phy.so not built")
    if page_types:
        v.ratio("page-types -L / translate", s["page-types -p PID -L (command)"], t, at_least=20)
        info("page-types -l (runs) / translate",
             f"{s['page-types -p PID -l (command)'].median / t.median:.1f}x")
    else:
        v.skip("page-types -L", "page-types not built")

    # kpageflags for the PFNs just found: one pread per frame vs one bulk read.
    pfns = expect // np.uint64(PAGE)
    kfd = os.open("/proc/kpageflags", os.O_RDONLY)
    kf = KPageFlags()
    pfn_list = pfns.tolist()

    def per_pfn() -> None:
        for p in pfn_list:
            os.pread(kfd, 8, p * 8)

    k = measure({"python: one pread per PFN": per_pfn,
                 "physmem: KPageFlags.read(pfns)": lambda: kf.read(pfns)}, 5)
    v.ratio("one pread per PFN / KPageFlags.read", k["python: one pread per PFN"],
            k["physmem: KPageFlags.read(pfns)"], at_least=3)
    os.close(kfd)
    os.close(fd)
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
