"""physmem.pagemap against the running kernel, each answer checked by a second reading."""
from __future__ import annotations

import mmap
import os
import re
import signal
import struct
import subprocess
import time

import numpy as np
import pytest

import physmem
from physmem import KPF, KPageCount, KPageFlags, PageMap
from physmem.errors import InvalidArgument, PageNotPresent, ProcessGone
from physmem.pagemap import PFN_MASK, ScanCategory

from conftest import PAGE, address_of, anonymous, wait_until

MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_PAGEOUT = 21
MADV_GUARD_INSTALL = 102


def pread_entry(vaddr: int, pid: int | str = "self") -> int:
    """The independent reading: one 8-byte pread of pagemap per page, as DPDK does."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        return struct.unpack("<Q", os.pread(fd, 8, (vaddr // PAGE) * 8))[0]
    finally:
        os.close(fd)


def smaps_field(address: int, field: str) -> int:
    """A field (in bytes) of the smaps entry of the VMA containing ``address``."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m[1], 16) <= address < int(m[2], 16)
            elif inside and line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {address:#x}")


def kernel_major_minor() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert m
    return int(m[1]), int(m[2])


def aligned_anonymous(size: int, align: int) -> tuple[mmap.mmap, int, int]:
    """An anonymous private mapping with an ``align``-aligned window of ``size`` bytes."""
    m = mmap.mmap(-1, size + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = address_of(m)
    start = (base + align - 1) & ~(align - 1)
    return m, start, start - base


# --------------------------------------------------------------------------- translation
def test_translate_matches_per_page_pread(is_root):
    size = 16 << 20
    buf, addr = anonymous(size)
    vaddrs = np.arange(addr, addr + size, PAGE, dtype=np.uint64) + np.uint64(123)
    phys = physmem.virt_to_phys(vaddrs)
    expected = [((pread_entry(int(v)) & PFN_MASK) * PAGE) + 123 for v in vaddrs]
    assert phys.dtype == np.uint64 and phys.shape == vaddrs.shape
    assert phys.tolist() == expected
    assert all(p > 123 for p in expected)
    # The kernel's per-frame view agrees that these are our anonymous, mapped pages.
    flags = KPageFlags().read(phys // np.uint64(PAGE))
    assert np.all(flags & (KPF.ANON | KPF.MMAP) == KPF.ANON | KPF.MMAP)
    buf.close()


def test_translate_scalar_and_shapes(is_root):
    buf, addr = anonymous(4 * PAGE)
    with PageMap() as pm:
        one = pm.translate(addr + 7)
        assert isinstance(one, int)
        assert one == (pread_entry(addr) & PFN_MASK) * PAGE + 7
        grid = pm.translate(np.array([[addr, addr + PAGE], [addr + 2 * PAGE, addr + 3 * PAGE]]))
        assert grid.shape == (2, 2)
        assert grid[1, 1] == (pread_entry(addr + 3 * PAGE) & PFN_MASK) * PAGE
        assert pm.translate([]).shape == (0,)
    buf.close()


def test_translate_sparse_addresses_across_mappings(is_root):
    """Addresses gigabytes apart take the gather path; each must match a single translation."""
    a, addr_a = anonymous(3 * PAGE)
    b, addr_b = anonymous(2 * PAGE)
    stack = next(line for line in open("/proc/self/maps") if line.rstrip().endswith("[stack]"))
    stack_top = int(stack.split()[0].split("-")[1], 16) - PAGE  # in use, so present
    assert abs(stack_top - addr_a) > (1 << 30)
    addrs = np.array([addr_b + PAGE + 5, stack_top + 8, addr_a, addr_a + 2 * PAGE + 9, addr_b, addr_a],
                     dtype=np.uint64)
    with PageMap() as pm:
        together = pm.translate(addrs)
        alone = [pm.translate(int(x)) for x in addrs]
    assert together.tolist() == alone
    assert together[2] == together[5]
    assert together[1] == (pread_entry(stack_top) & PFN_MASK) * PAGE + 8
    a.close()
    b.close()


def test_untouched_page_is_not_present(is_root):
    buf, addr = anonymous(4 * PAGE, touch=False)
    buf[PAGE] = 1
    with PageMap() as pm:
        with pytest.raises(PageNotPresent) as err:
            pm.translate(addr)
        assert err.value.address == addr and f"{addr:#x}" in str(err.value)
        assert isinstance(err.value, LookupError)
        masked = pm.translate([addr, addr + PAGE, addr + 2 * PAGE], strict=False)
        assert masked.mask.tolist() == [True, False, True]
        assert masked[1] == (pread_entry(addr + PAGE) & PFN_MASK) * PAGE
        assert pm.translate(addr, strict=False) is None
        entries = pm.read(addr, 4 * PAGE)
        assert entries.present.tolist() == [False, True, False, False]
        assert entries.pfn[0] == 0 and entries.pfn[1] > 0
    buf.close()


# --------------------------------------------------------------------------- entry fields
def test_read_decodes_every_field_like_a_per_page_read(is_root, tmp_path):
    buf, addr = anonymous(8 * PAGE)
    path = tmp_path / "data"
    path.write_bytes(b"x" * (4 * PAGE))
    with open(path, "r+b") as f:
        fmap = mmap.mmap(f.fileno(), 4 * PAGE, flags=mmap.MAP_SHARED)
    fmap[0]  # read: page cache page mapped shared
    faddr = address_of(fmap)
    with PageMap() as pm:
        anon = pm.read(addr, 8 * PAGE)
        filed = pm.read(faddr, 4 * PAGE)
    assert anon.raw.tolist() == [pread_entry(addr + i * PAGE) for i in range(8)]
    assert anon.vaddr.tolist() == [addr + i * PAGE for i in range(8)]
    assert anon.present.all() and not anon.swapped.any()
    assert anon.exclusive.all(), "freshly written private anonymous pages are exclusive"
    assert not anon.file_shared.any()
    assert filed.present[0] and filed.file_shared[0]
    assert not anon.guard.any() and not anon.uffd_wp.any()
    fmap.close()
    buf.close()


def test_soft_dirty_follows_clear_refs(is_root):
    buf, addr = anonymous(2 * PAGE)
    if "sd" not in open("/proc/self/smaps").read().split("VmFlags:")[1].split("\n")[0].split():
        pytest.skip("kernel built without CONFIG_MEM_SOFT_DIRTY (no 'sd' in VmFlags)")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("4")  # clear soft-dirty bits of this process only
    with PageMap() as pm:
        assert not pm.read(addr, 2 * PAGE).soft_dirty.any()
        buf[PAGE] = 2
        sd = pm.read(addr, 2 * PAGE).soft_dirty
    assert sd.tolist() == [False, True]
    assert (pread_entry(addr + PAGE) >> 55) & 1 == 1
    buf.close()


def test_zero_page(is_root):
    buf, addr = anonymous(8 * PAGE, touch=False)
    buf.madvise(MADV_NOHUGEPAGE)
    for off in range(0, 8 * PAGE, PAGE):
        assert buf[off] == 0  # read faults map the shared zero page
    with PageMap() as pm:
        entries = pm.read(addr, 8 * PAGE)
        scan = pm.scan(addr, 8 * PAGE, report=ScanCategory.PFNZERO | ScanCategory.PRESENT)
    assert entries.present.all()
    pfns = set(entries.pfn.tolist())
    assert len(pfns) == 1, "every read-only page maps the same zero page"
    assert KPageFlags().read(pfns.pop()) & KPF.ZERO_PAGE
    assert len(scan) == 1 and scan["categories"][0] & ScanCategory.PFNZERO
    buf.close()


def test_guard_region_entries(is_root):
    if kernel_major_minor() < (6, 15):
        pytest.skip("pagemap reports guard regions since Linux 6.15")
    buf, addr = anonymous(4 * PAGE)
    buf.madvise(MADV_GUARD_INSTALL, PAGE, PAGE)
    with PageMap() as pm:
        entries = pm.read(addr, 4 * PAGE)
        scan = pm.scan(addr, 4 * PAGE, require=ScanCategory.GUARD)
    assert entries.guard.tolist() == [False, True, False, False]
    assert not entries.present[1]
    assert (pread_entry(addr + PAGE) >> 58) & 1 == 1
    assert scan[["start", "end"]].tolist() == [(addr + PAGE, addr + 2 * PAGE)]
    buf.close()


def test_swap_entries_decoded(swapfile):
    size = 16 * PAGE
    buf, addr = anonymous(size)
    buf.madvise(MADV_PAGEOUT)
    with PageMap() as pm:
        entries = pm.read(addr, size)
        with pytest.raises(PageNotPresent, match="swapped out"):
            pm.translate(addr)
    swapped = entries.swapped
    assert swapped.sum() > 0, "MADV_PAGEOUT wrote nothing to swap"
    # The swap type is the index of our file among active swap areas.
    with open("/proc/swaps") as f:
        names = [line.split()[0] for line in f.readlines()[1:]]
    assert set(entries.swap_type[swapped].tolist()) == {names.index(str(swapfile))}
    offsets = entries.swap_offset[swapped]
    assert np.all(offsets > 0) and np.all(offsets < (64 << 20) // PAGE)
    assert len(set(offsets.tolist())) == int(swapped.sum())
    assert int(swapped.sum()) * PAGE == smaps_field(addr, "Swap")
    assert not entries.present[swapped].any()
    assert bytes(buf[:4]) == b"\x01\0\0\0"  # swapped back in intact
    buf.close()


# --------------------------------------------------------------------------- runs
def test_physical_runs_are_maximal_and_exact(is_root):
    size = 8 << 20
    buf, addr = anonymous(size, touch=False)
    buf.madvise(MADV_NOHUGEPAGE)
    for off in range(0, size, PAGE):
        if (off // PAGE) % 7 != 3:  # leave holes so runs must break
            buf[off] = 1
    with PageMap() as pm:
        runs = pm.physical_runs(addr, size)
        pfn = {addr + i * PAGE: pread_entry(addr + i * PAGE) for i in range(size // PAGE)}
    covered = 0
    for vaddr, paddr, nbytes in runs.tolist():
        for k in range(0, nbytes, PAGE):
            assert (pfn[vaddr + k] & PFN_MASK) * PAGE == paddr + k
        covered += nbytes
        before, after = vaddr - PAGE, vaddr + nbytes
        # Maximal: the neighbours do not continue the run.
        if before in pfn and pfn[before] >> 63:
            assert (pfn[before] & PFN_MASK) * PAGE != paddr - PAGE
        if after in pfn and pfn[after] >> 63:
            assert (pfn[after] & PFN_MASK) * PAGE != paddr + nbytes
    assert covered == sum(PAGE for v in pfn.values() if v >> 63)
    buf.close()


def test_transparent_huge_page(is_root):
    if "[never]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read():
        pytest.skip("THP disabled on this machine")
    huge = 2 << 20
    buf, start, skew = aligned_anonymous(huge, huge)
    buf.madvise(MADV_HUGEPAGE)
    buf[skew] = 1
    with PageMap() as pm:
        runs = pm.physical_runs(start, huge)
    assert smaps_field(start, "AnonHugePages") >= huge
    assert runs.tolist() == [(start, runs["paddr"][0], huge)]
    head = int(runs["paddr"][0]) // PAGE
    assert head % (huge // PAGE) == 0, "a THP is naturally aligned in physical memory"
    flags = KPageFlags().read(np.arange(head, head + huge // PAGE))
    assert flags[0] & KPF.THP and flags[0] & KPF.COMPOUND_HEAD
    assert np.all(flags[1:] & KPF.COMPOUND_TAIL)
    buf.close()


def test_hugetlb_pages(hugepage_pool):
    pool = hugepage_pool(2, 2048)
    free_before = int((pool / "free_hugepages").read_text())
    huge = 2 << 20
    fd = os.memfd_create("physmem-test", os.MFD_HUGETLB)
    try:
        os.ftruncate(fd, 2 * huge)
        m = mmap.mmap(fd, 2 * huge)
        m[0] = 1
        m[huge] = 1
        addr = address_of(m)
        assert int((pool / "free_hugepages").read_text()) == free_before - 2
        with PageMap() as pm:
            runs = pm.physical_runs(addr, 2 * huge)
            entries = pm.read(addr, 2 * huge)
        assert entries.present.all() and entries.file_shared.all()
        # Each hugetlb page is contiguous and aligned in itself; two may or may not be adjacent.
        assert sum(runs["nbytes"].tolist()) == 2 * huge
        assert all(n % huge == 0 for n in runs["nbytes"].tolist())
        heads = [int(entries.pfn[0]), int(entries.pfn[huge // PAGE])]
        flags = KPageFlags().read(heads + [heads[0] + 1])
        assert flags[0] & KPF.HUGE and flags[0] & KPF.COMPOUND_HEAD
        assert flags[1] & KPF.HUGE and flags[1] & KPF.COMPOUND_HEAD
        assert flags[2] & KPF.COMPOUND_TAIL
        m.close()
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- sharing
def test_kpagecount_two_after_fork(is_root):
    buf, addr = anonymous(PAGE)
    pfn = pread_entry(addr) & PFN_MASK
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: keep the page mapped until told to go
        os.close(wr)
        os.read(rd, 1)
        os._exit(0)
    os.close(rd)
    try:
        with PageMap(pid) as child:
            assert child.translate(addr) // PAGE == pfn
        assert KPageCount().read(pfn) == 2
    finally:
        os.close(wr)
        os.waitpid(pid, 0)
    assert KPageCount().read(pfn) == 1
    buf.close()


def test_other_process_and_gone_process(is_root, child_process):
    pid = child_process()
    with PageMap(pid) as pm:
        maps = open(f"/proc/{pid}/maps").read().split("\n")
        stack = next(line for line in maps if line.endswith("[stack]"))
        lo, hi = (int(x, 16) for x in stack.split()[0].split("-"))
        ranges = pm.present_ranges(lo, hi - lo)
        assert len(ranges) > 0
        top = int(ranges["end"][-1]) - PAGE
        assert pm.translate(top) == (pread_entry(top, pid) & PFN_MASK) * PAGE
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with pytest.raises(ProcessGone) as err:
            pm.read(lo, hi - lo)
        assert isinstance(err.value, ProcessLookupError) and err.value.pid == pid
    with pytest.raises(ProcessGone):
        PageMap(pid)


# --------------------------------------------------------------------------- PAGEMAP_SCAN
def test_present_ranges_scan_agrees_with_pagemap(is_root):
    size = 4 << 20
    buf, addr = anonymous(size, touch=False)
    buf.madvise(MADV_NOHUGEPAGE)
    pattern = [i for i in range(size // PAGE) if i % 5 in (0, 1) or 300 <= i < 700]
    for i in pattern:
        buf[i * PAGE] = 1
    lo, length = addr - (1 << 20), size + (2 << 20)  # reach into unmapped space both sides
    with PageMap() as pm:
        if not pm.scan_supported():
            pytest.skip("kernel without PAGEMAP_SCAN (added in 6.7)")
        by_scan = pm.present_ranges(lo, length, method="scan")
        by_pagemap = pm.present_ranges(lo, length, method="pagemap")
        auto = pm.present_ranges(lo, length)
    assert by_scan.tolist() == by_pagemap.tolist() == auto.tolist()
    inside = [(s, e) for s, e in by_scan.tolist() if addr <= s < addr + size]
    pages = sorted((s - addr) // PAGE + k for s, e in inside for k in range((e - s) // PAGE))
    assert pages == pattern
    buf.close()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("address,length,needle", [
    (4097, 4096, "not aligned"),
    (4096, 100, "multiple of the page size"),
    (-4096, 4096, "address=-4096 is out of range"),
    (4096, -4096, "length=-4096 is out of range"),
    ((1 << 64) - 4096, 8192, "past the end of the 64-bit address space"),
    (1 << 64, 0, "out of range"),
    ("0x1000", 4096, "must be an integer"),
    (4096.0, 4096, "must be an integer"),
    (4096, 8192.0, "must be an integer"),
    (True, 4096, "must be an integer"),
])
def test_bad_ranges_name_the_value(address, length, needle):
    with PageMap() as pm, pytest.raises(InvalidArgument, match=needle) as err:
        pm.read(address, length)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("bad", [-1, 1 << 64, [1.5], "abc", 4096.0, [1 << 64]])
def test_bad_addresses_to_translate(bad):
    with PageMap() as pm, pytest.raises(InvalidArgument):
        pm.translate(bad)


def test_bad_pid():
    with pytest.raises(ProcessGone) as err:
        PageMap(2**22 - 1)
    assert "does not exist" in str(err.value) and err.value.pid == 2**22 - 1
    # Not an int, or not a pid the kernel can have: refused before any /proc path is built
    # (3.7 used to open /proc/3/pagemap).
    for bad in (0, -1, 3.7, 1.0, True, "self", 2**22 + 1, 2**64):
        with pytest.raises(InvalidArgument, match="pid"):
            PageMap(bad)  # type: ignore[arg-type]


def test_scan_flags_are_checked():
    with PageMap() as pm:
        for kwargs in ({"report": -1}, {"report": 1 << 64}, {"require": 1.0},
                       {"exclude": 1 << 40}, {"any_of": "PRESENT"}):
            with pytest.raises(InvalidArgument):
                pm.scan(0, 4096, **kwargs)  # type: ignore[arg-type]


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat split after the comm, read independently: [state, ppid, ...]."""
    data = open(f"/proc/{pid}/stat", "rb").read()
    return data[data.rindex(b")") + 2:].decode().split()


def _wait_zombie(pid: int) -> None:
    assert wait_until(lambda: _stat_fields(pid)[0] == "Z", 5), f"{pid} did not become a zombie"


def test_exited_process_not_yet_reaped_is_process_gone(is_root, monkeypatch):
    # Whether the kernel has PAGEMAP_SCAN is probed once per process: make the probe run on
    # the zombie's pagemap, which must not teach it "unsupported".
    monkeypatch.setattr(physmem.pagemap, "_scan_supported", None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait for the word, then exit without being reaped
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        with PageMap(pid) as pm:
            assert len(pm.read(0, 16 * PAGE)) == 16
            os.write(w, b"x")
            _wait_zombie(pid)
            assert os.path.isdir(f"/proc/{pid}")  # still listed: only its memory is gone
            # Independent: the kernel's pagemap of a zombie ends at offset 0.
            assert os.pread(pm.fileno(), 8, 0) == b""
            for call in (lambda: pm.read(0, 16 * PAGE), lambda: pm.translate(PAGE),
                         lambda: pm.translate([PAGE, 1 << 30]),
                         lambda: pm.present_ranges(0, 16 * PAGE, method="pagemap"),
                         lambda: pm.present_ranges(0, 16 * PAGE), lambda: pm.scan(0, PAGE),
                         lambda: pm.physical_runs(0, 16 * PAGE)):
                with pytest.raises(ProcessGone) as err:
                    call()
                assert err.value.pid == pid and "exited" in str(err.value)
        with pytest.raises(ProcessGone):  # the kernel refuses to open a zombie's pagemap
            PageMap(pid)
        with PageMap() as pm:
            scan_ioctl = pm.scan_supported()
        assert scan_ioctl == (kernel_major_minor() >= (6, 7))
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_children_exiting_during_reads_give_process_gone(is_root):
    # A process may exit while its pagemap is being read: each child exits while a loop
    # reads it; every read either succeeds or raises ProcessGone, and the loop ends only on it.
    children = [subprocess.Popen(["cat"], stdin=subprocess.PIPE) for _ in range(40)]
    try:
        for child in children:
            assert child.stdin is not None
            with PageMap(child.pid) as pm:
                reads = 0
                child.stdin.close()  # cat sees end of input and exits
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        pm.read(0x400000, 64 * PAGE)
                        reads += 1
                    except ProcessGone as exc:
                        assert exc.pid == child.pid
                        break
                else:
                    raise AssertionError(f"child {child.pid} never exited")
            # Independent: the child has exited (a zombie until reaped below).
            assert child.wait(10) == 0
    finally:
        for child in children:
            child.kill()
            child.wait()


def _kernel_thread() -> tuple[int, str]:
    """A kernel thread, found by the PF_KTHREAD bit of its stat flags (field 9)."""
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if name.isdigit():
            try:
                fields = _stat_fields(int(name))
            except OSError:
                continue
            if int(fields[6]) & 0x00200000:
                comm = open(f"/proc/{name}/comm").read().strip()
                return int(name), comm
    pytest.skip("no kernel thread visible in /proc (pid namespace)")


def test_kernel_thread_has_no_user_address_space(is_root):
    pid, comm = _kernel_thread()
    with pytest.raises(InvalidArgument, match="no user address space") as err:
        PageMap(pid)
    assert "kernel thread" in str(err.value) and comm in str(err.value)
    assert err.value.pid == pid and not isinstance(err.value, ProcessGone)


def test_every_mapping_listed_in_maps_can_be_read(is_root, child_process):
    # [vsyscall] lies above the end of user space, where the kernel's pagemap ends (a pread
    # there returns nothing, and page-types counts its page as not present).
    for pid in (None, child_process()):
        with PageMap(pid) as pm:
            for v in physmem.proc.maps(pid):
                entries = pm.read(v.start, v.end - v.start)
                assert len(entries) == (v.end - v.start) // PAGE
                first = pread_entry(v.start, "self" if pid is None else pid) if v.start < (
                    1 << 47) - PAGE else 0
                assert int(entries.raw[0]) == first
                if v.path == "[vsyscall]":
                    assert not entries.present.any() and len(pm.present_ranges(v.start, v.size)) == 0
                    assert len(pm.present_ranges(v.start, v.size, method="pagemap")) == 0
                    with pytest.raises(PageNotPresent):
                        pm.translate(v.start)
                    assert pm.translate([v.start], strict=False).mask.tolist() == [True]


def test_reads_past_the_end_of_user_space_are_not_present(is_root):
    buf, addr = anonymous(2 * PAGE)
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        end = 1 << 47
        while os.pread(fd, 8, (end // PAGE - 1) * 8) == b"":  # the kernel's end of file
            end -= PAGE
        with PageMap() as pm:
            entries = pm.read(end - PAGE, 3 * PAGE)   # straddles the end
            assert int(entries.raw[0]) == pread_entry(end - PAGE) and not entries.raw[1:].any()
            top = pm.read((1 << 64) - 2 * PAGE, 2 * PAGE)
            assert not top.raw.any()
            # A sparse translation across the end: the page below still translates.
            got = pm.translate([addr, (1 << 64) - PAGE], strict=False)
            assert got.mask.tolist() == [False, True]
            assert got[0] == (pread_entry(addr) & PFN_MASK) * PAGE
    finally:
        os.close(fd)
        buf.close()


def test_strict_false_is_always_a_masked_array(is_root):
    buf, addr = anonymous(4 * PAGE)
    pages = np.arange(addr, addr + 4 * PAGE, PAGE, dtype=np.uint64)
    with PageMap() as pm:
        for got in (pm.translate(pages, strict=False), pm.read(addr, 4 * PAGE).paddr(strict=False),
                    pm.translate(pages[::-1].copy(), strict=False)):
            assert isinstance(got, np.ma.MaskedArray)
            assert np.ma.getmaskarray(got).tolist() == [False] * 4
        expected = [(pread_entry(int(v)) & PFN_MASK) * PAGE for v in pages]
        assert pm.translate(pages, strict=False).data.tolist() == expected
        assert pm.translate(addr, strict=False) == expected[0]
    buf.close()


def test_closed_pagemap():
    pm = PageMap()
    pm.close()
    with pytest.raises(InvalidArgument, match="closed"):
        pm.read(4096, 4096)


# --------------------------------------------------------------------------- unprivileged
def test_unprivileged_gets_pfn_unavailable(run_unprivileged):
    proc = run_unprivileged("""
        import mmap, ctypes, sys
        import physmem
        from physmem.errors import PfnUnavailable
        m = mmap.mmap(-1, 4 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m[:] = b"z" * len(m)
        c = ctypes.c_char.from_buffer(m); addr = ctypes.addressof(c); del c
        pm = physmem.PageMap()
        entries = pm.read(addr, len(m))
        assert entries.present.all(), "presence stays visible without privilege"
        assert entries.pfns_hidden
        for attempt in (lambda: physmem.virt_to_phys(addr),
                        lambda: pm.translate([addr, addr + 4096], strict=False),
                        lambda: entries.pfn, lambda: entries.paddr(),
                        lambda: pm.physical_runs(addr, len(m))):
            try:
                value = attempt()
            except PfnUnavailable as exc:
                assert isinstance(exc, PermissionError) and "CAP_SYS_ADMIN" in str(exc), exc
            else:
                sys.exit(f"returned {value!r} instead of raising")
        try:
            physmem.KPageFlags()
        except PermissionError as exc:
            print("kpageflags:", exc)
        print("OK")
    """)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "OK" in proc.stdout and "kpageflags:" in proc.stdout


def test_translate_into_out_and_fallback_explains_the_missing_page(is_root):
    buf, addr = anonymous(8 * PAGE)
    pages = np.arange(addr, addr + 8 * PAGE, PAGE, dtype=np.uint64)
    out = np.zeros(8, dtype=np.uint64)
    with PageMap() as pm:
        got = pm.translate(pages, out=out)
        assert got is out or np.shares_memory(got, out)
        assert out.tolist() == [(pread_entry(int(v)) & PFN_MASK) * PAGE for v in pages]
        with pytest.raises(InvalidArgument, match="out must be"):
            pm.translate(pages, out=np.zeros(7, dtype=np.uint64))
        # The one-read-per-page fast path must hand a missing page to the careful path.
        buf.madvise(mmap.MADV_DONTNEED, 5 * PAGE, PAGE)
        with pytest.raises(PageNotPresent) as err:
            pm.translate(pages)
        assert err.value.address == addr + 5 * PAGE
        masked = pm.translate(pages, strict=False)
        assert masked.mask.tolist() == [False] * 5 + [True] + [False] * 2
        same = pages.copy()
        pm.translate(same[:5], out=same[:5])  # output aliasing the input is allowed
        assert same[:5].tolist() == out[:5].tolist()
    buf.close()


def test_uffd_wp_bit_follows_writeprotect(is_root):
    from physmem import Mapping, UserFaultFd
    from physmem.userfaultfd import Feature, Mode

    with UserFaultFd(features=Feature.PAGEFAULT_FLAG_WP) as u, Mapping.anonymous(4 * PAGE) as m:
        m.array()[:] = 1  # write protection applies to present pages
        u.register(m, mode=Mode.WP)
        u.writeprotect(m.address + PAGE, 2 * PAGE, True)
        with PageMap() as pm:
            assert pm.read(m.address, 4 * PAGE).uffd_wp.tolist() == [False, True, True, False]
            # Independent: bit 57 of the raw entries, read page by page.
            assert [(pread_entry(m.address + i * PAGE) >> 57) & 1 for i in range(4)] == [0, 1, 1, 0]
            u.writeprotect(m.address + PAGE, 2 * PAGE, False)
            assert not pm.read(m.address, 4 * PAGE).uffd_wp.any()


def test_page_heads_read_one_entry_per_page_against_a_raw_pread(is_root):
    """Every other base page touched, read as 8 KiB 'pages': each head's address equals a
    plain pread of its pagemap entry; an untouched head reads 0; bad arguments are refused."""
    m, base = anonymous(64 * PAGE, touch=False)
    for i in range(0, 64, 4):  # heads 0, 2, 4, ... of 8 KiB; touch only every second head
        m[i * PAGE] = 1
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        expect = []
        for k in range(32):
            (e,) = struct.unpack("<Q", os.pread(fd, 8, (base // PAGE + 2 * k) * 8))
            expect.append((e & PFN_MASK) * PAGE if e >> 63 else 0)
    finally:
        os.close(fd)
    with PageMap() as pm:
        assert pm.page_heads(base, 32, 2 * PAGE).tolist() == expect
        assert expect[0] and not expect[1]
        for bad in ((base, -1, 2 * PAGE), (base, 1, 0), (base, 1, PAGE + 1), (base, 1, "2M"),
                    (base, 2**64, PAGE)):
            with pytest.raises(InvalidArgument):
                pm.page_heads(*bad)
    m.close()
