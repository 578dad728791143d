"""Benchmark: translating 1 GiB of 4 KiB pages, against a raw read, per-page C loops and the
kernel's own page-types; kpageflags reads against one pread per frame.

Run as root: ``python benchmarks/translate.py`` (peers from ``benchmarks/peers/setup.sh``).
Every contender runs the same number of rounds, interleaved in shuffled order (see _bench).
Targets: translate <= 1.2x raw preadv; >= 20x the C per-page pread loop.
``page-types -L`` lists every page's PFN and flags (pagemap, then kpageflags per frame), so
physmem is timed producing the same data (``PageMap.read`` of the range, then
``KPageFlags.read`` of its PFNs), checked equal to page-types' list first: >= 3x.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    Verdicts, check_command_origin, info, measure, need_root, peer_path, physmem_command,
    rounds, run_command)

import physmem  # noqa: E402
from physmem import KPageFlags, PageMap  # noqa: E402

PAGE = mmap.PAGESIZE
SIZE = 1 << 30
STABLE_SPAN = 27  # kpageflags bits 0 (locked) .. 26 (pgtable)
# The bits compared with page-types' letters: all but referenced, lru, active, reclaim and
# idle, which the kernel's page ageing may change between its read and physmem's.
STABLE_BITS = [b for b in range(STABLE_SPAN) if b not in (2, 5, 6, 9, 25)]


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("translate: 1 GiB of 4 KiB pages")
    check_command_origin()
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
    kf = KPageFlags()

    def pfns_and_flags() -> tuple[np.ndarray, np.ndarray]:
        """What page-types -L lists: each page's PFN and flags (the pagemap entry's own bits
        stay in the entries, as page-types merges them into its flags)."""
        entries = pm.read(addr, SIZE)
        pfn = entries.pfn
        return pfn, kf.read(pfn)

    contenders["physmem: PageMap.read + KPageFlags.read (PFN + flags per page)"] = (
        pfns_and_flags)
    # The kernel's share of that work, whoever asks: the pagemap range, and as many
    # kpageflags entries in one read (about 110 ns each here, the dearer half).
    kfd = os.open("/proc/kpageflags", os.O_RDONLY)
    flags_buf = np.empty(npages, dtype=np.uint64)
    flags_buf[:] = 0

    def kernel_floor() -> None:
        os.preadv(fd, [raw], addr // PAGE * 8)
        os.preadv(kfd, [flags_buf], 0)

    contenders["raw floor: pagemap range + as many kpageflags entries, one read each"] = (
        kernel_floor)
    page_types = peer_path("page-types")
    if page_types:
        cmd = [page_types, "-p", str(os.getpid()), "-L", "-N", "-a",
               f"{addr // PAGE}+{npages}"]
        contenders["page-types -p PID -L (command)"] = lambda: run_command(cmd)
        cmd_l = [page_types, "-p", str(os.getpid()), "-l", "-N", "-a",
                 f"{addr // PAGE}+{npages}"]
        contenders["page-types -p PID -l (command)"] = lambda: run_command(cmd_l)
        physmem_cmd = physmem_command("v2p", "--pid", str(os.getpid()), hex(addr))
        contenders["physmem v2p one address (command start-up)"] = (
            lambda: run_command(physmem_cmd))

    # Same answer before any timing: the C loop (not physmem code) against physmem.
    expect = pm.translate(vaddrs)
    if lib_path:
        lib.v2p_pread_loop(fd, addr, npages, PAGE, out.ctypes.data)
        assert np.array_equal(out, expect), "per-page C loop and physmem disagree"
    if page_types:
        # Same data: page-types' list (voffset, PFN, flag letters per page) has the PFNs
        # physmem reads, page for page.
        listed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows = [line.split("\t") for line in listed.splitlines()[1:] if line.strip()]
        theirs = np.array([int(r[1], 16) for r in rows], dtype=np.uint64)
        ours, flags = pfns_and_flags()
        v.check("page-types -L PFNs == physmem PFNs, page for page",
                np.array_equal(theirs, ours) and len(flags) == npages,
                f"{int(np.sum(theirs == ours)) if len(theirs) == len(ours) else 0}/{npages} "
                f"equal", "all equal")
        # Its flag letters: the first STABLE_SPAN letters are kpageflags bits 0..26 in order
        # (page-types names every one of them); the aging bits may move between the reads.
        letters = np.array([[c != "_" for c in r[2][:STABLE_SPAN]] for r in rows], dtype=bool)
        raw_flags = np.asarray(flags, dtype=np.uint64)
        bits = ((raw_flags[:, None] >> np.arange(STABLE_SPAN, dtype=np.uint64))
                & np.uint64(1)).astype(bool)
        same = (letters == bits)[:, STABLE_BITS].all(axis=1) if len(letters) == npages else []
        v.check("page-types -L flags == physmem flags, page for page (stable bits)",
                len(same) == npages and bool(np.all(same)), f"{int(np.sum(same))}/{npages} equal",
                "all equal")
    c = measure(core, rounds(61))
    v.ratio("translate / raw preadv", c["physmem: PageMap.translate(addresses)"],
            c["raw: os.preadv into a ready buffer"], at_most=1.2)
    v.ratio("read(range).paddr() / raw preadv", c["physmem: PageMap.read(range).paddr()"],
            c["raw: os.preadv into a ready buffer"], at_most=1.2)
    s = measure(contenders, rounds(15))
    t = s["physmem: PageMap.translate(addresses)"]
    if lib_path:
        v.ratio("C one-pread-per-page loop / translate", s["C loop: one pread per page"], t,
                at_least=20)
        info("rte_mem_virt2phy-style loop / translate",
             f"{s['C loop: open+pread+close per page (rte_mem_virt2phy)'].median / t.median:.1f}x")
    else:
        v.skip("C per-page pread loop", "libvirt2phy.so not built")
    same = s["physmem: PageMap.read + KPageFlags.read (PFN + flags per page)"]
    floor = s["raw floor: pagemap range + as many kpageflags entries, one read each"]
    info("physmem PFN + flags / raw floor", f"{same.median / floor.median:.2f}x")
    if page_types:
        v.ratio("page-types -L / physmem, both PFN + flags per page",
                s["page-types -p PID -L (command)"], same, at_least=3)
        info("page-types -L / raw floor (the most any reader of this data can gain)",
             f"{s['page-types -p PID -L (command)'].median / floor.median:.2f}x")
        info("page-types -L / translate (PFNs only: not the same data)",
             f"{s['page-types -p PID -L (command)'].median / t.median:.1f}x")
        info("page-types -l (runs) / translate",
             f"{s['page-types -p PID -l (command)'].median / t.median:.1f}x")
    else:
        v.skip("page-types -L", "page-types not built")

    # kpageflags for the PFNs just found: one pread per frame vs one bulk read.
    pfns = expect // np.uint64(PAGE)
    pfn_list = pfns.tolist()

    def per_pfn() -> None:
        for p in pfn_list:
            os.pread(kfd, 8, p * 8)

    k = measure({"python: one pread per PFN": per_pfn,
                 "physmem: KPageFlags.read(pfns)": lambda: kf.read(pfns)}, rounds(5))
    v.ratio("one pread per PFN / KPageFlags.read", k["python: one pread per PFN"],
            k["physmem: KPageFlags.read(pfns)"], at_least=3)
    os.close(kfd)
    os.close(fd)
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
