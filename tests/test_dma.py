"""physmem.dma against the kernel: contiguity checked by our own pagemap reading and kpageflags."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physmem import KPF, KPageFlags
from physmem.dma import DmaPool, allocate_contiguous, allocate_scatter, longest_contiguous
from physmem.errors import (
    ContiguityUnavailable,
    HugePagesUnavailable,
    InvalidArgument,
    NotContiguous,
)

from conftest import (
    PAGE,
    address_of,
    kill_and_wait,
    own_pfns,
    own_pfns_at,
    python_env,
    registered_buffers,
    settled,
    wait_until,
)

MB2 = 2 << 20
POOL_2M = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")


def pool_state(pool: Path = POOL_2M) -> tuple[int, int]:
    return int((pool / "nr_hugepages").read_text()), int((pool / "free_hugepages").read_text())


def read_mem(address: int, length: int) -> bytes:
    with open("/proc/self/mem", "rb", buffering=0) as f:
        f.seek(address)
        return f.read(length)


def check_contiguous(buf, page_size: int) -> None:
    pfns = own_pfns(buf.address, buf.size)
    assert pfns == list(range(pfns[0], pfns[0] + len(pfns))), "physical pages not consecutive"
    assert pfns[0] * PAGE == buf.phys
    assert buf.phys % page_size == 0
    heads = pfns[:: page_size // PAGE]
    flags = KPageFlags().read(heads)
    assert np.all(flags & (KPF.HUGE | KPF.COMPOUND_HEAD) == KPF.HUGE | KPF.COMPOUND_HEAD)


def test_contiguous_2m_buffer(hugepage_pool):
    hugepage_pool(4)
    with allocate_contiguous(8 << 20, reserve=True) as buf:
        assert buf.is_contiguous and buf.size == 8 << 20 and buf.page_size == MB2
        check_contiguous(buf, MB2)
        arr = buf.array(np.uint32)
        arr[:] = np.arange(len(arr), dtype=np.uint32)
        del arr
        # Read back through another path: /proc/self/mem at the buffer's address.
        tail = read_mem(buf.address + buf.size - 8, 8)
        assert struct.unpack("<2I", tail) == ((buf.size // 4) - 2, (buf.size // 4) - 1)
        assert buf.node == 0
        assert buf.segments.tolist() == [(buf.address, buf.phys, buf.size)]
        smaps = Path("/proc/self/smaps").read_text()
        assert f"{buf.address:x}-" in smaps


def test_gigantic_1g_buffer(hugepage_pool):
    hugepage_pool(1, 1 << 20, required=False)
    with allocate_contiguous(1 << 30, page_size="1G") as buf:
        assert buf.page_size == 1 << 30
        check_contiguous(buf, 1 << 30)


def test_translations_round_trip(hugepage_pool):
    hugepage_pool(16)
    rng = np.random.default_rng(5)
    with allocate_contiguous(4 << 20, reserve=True) as buf, allocate_scatter(12 << 20) as sc:
        for b in (buf, sc):
            x = rng.integers(0, b.size, 10_000, dtype=np.uint64)
            phys = b.virt_to_phys(x)
            assert np.array_equal(b.phys_to_virt(phys), x)
            # Against our own per-page pagemap reading of each offset.
            pfns = own_pfns(b.address, b.size)
            expect = [pfns[int(o) // PAGE] * PAGE + int(o) % PAGE for o in x[:200]]
            assert phys[:200].tolist() == expect
            assert b.virt_to_phys(5) == pfns[0] * PAGE + 5
        with pytest.raises(InvalidArgument, match="offset"):
            buf.virt_to_phys(buf.size)
        with pytest.raises(InvalidArgument, match="not in this buffer"):
            buf.phys_to_virt(buf.phys + buf.size)
        if not sc.is_contiguous:
            with pytest.raises(NotContiguous):
                sc.phys


def test_scatter_segments_are_the_physical_runs(hugepage_pool):
    hugepage_pool(16)
    with allocate_scatter(16 << 20) as sc:
        pfns = own_pfns(sc.address, sc.size)
        runs = []
        for i, p in enumerate(pfns):
            if runs and p == runs[-1][1] + runs[-1][2] // PAGE:
                runs[-1][2] += PAGE
            else:
                runs.append([sc.address + i * PAGE, p, PAGE])
        assert [(v, p * PAGE, n) for v, p, n in runs] == sc.segments.tolist()
        # Physical order is virtual order: segments ascend in both.
        assert sorted(sc.segments["paddr"].tolist()) == sc.segments["paddr"].tolist()


def test_virt_to_phys_of_a_scatter_buffer_of_many_segments(hugepage_pool):
    """Every other free page (in physical order) held by a hugetlb memfd, the rest given to
    a scatter buffer: its pages have no free neighbour, so it has one segment per page.
    virt_to_phys of random offsets against a plain pread of pagemap for each offset."""
    hugepage_pool(32)
    fd = os.memfd_create("frag", os.MFD_HUGETLB)
    try:
        pages = _every_other_page_freed(fd, pool_state()[1])
        with allocate_scatter(pages * MB2) as sc:
            assert len(sc.segments) == pages
            rng = np.random.default_rng(7)
            x = rng.integers(0, sc.size, 100_000, dtype=np.uint64)
            pfns = np.array(own_pfns(sc.address, sc.size), dtype=np.uint64)
            expect = pfns[(x // np.uint64(PAGE)).astype(np.intp)] * np.uint64(PAGE) + x % np.uint64(PAGE)
            assert np.array_equal(sc.virt_to_phys(x), expect)
            assert sc.virt_to_phys(int(x[0])) == int(expect[0])
            assert np.array_equal(sc.phys_to_virt(expect), x)
    finally:
        os.close(fd)


def _buddy_2m_singles() -> int:
    """Free blocks of exactly 2 MiB in the Normal/Movable zones, from a plain read of
    /proc/buddyinfo (order 9 is the tenth count)."""
    total = 0
    for line in Path("/proc/buddyinfo").read_text().splitlines():
        parts = line.split()
        if parts[3] in ("Normal", "Movable"):
            total += int(parts[4 + 9])
    return total


def _hold(fd: int, count: int) -> list[int]:
    """Fault ``count`` pool pages into hugetlb memfd ``fd``; their head PFNs, by our own
    pagemap read."""
    import mmap as _mmap

    os.ftruncate(fd, count * MB2)
    m = _mmap.mmap(fd, count * MB2)
    for i in range(count):
        m[i * MB2] = 1
    heads = own_pfns_at([address_of(m) + i * MB2 for i in range(count)])
    m.close()
    return heads


def _punch(fd: int, pages: list[int]) -> None:
    """Give file pages ``pages`` of hugetlb memfd ``fd`` back to the pool, in that order."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    for i in pages:  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        assert libc.fallocate(fd, 0x02 | 0x01, i * MB2, MB2) == 0, ctypes.get_errno()


def _every_other_page_freed(fd: int, free: int) -> int:
    """Hold ``free`` pool pages in hugetlb memfd ``fd``, then give every other one (in
    physical order) back to the pool: the pool's free pages then have no free neighbour.
    Returns how many were given back."""
    heads = _hold(fd, free)
    give = sorted(range(free), key=heads.__getitem__)[1::2]
    _punch(fd, give)
    return len(give)


def _make_singles(fd: int, free: int) -> None:
    """As _every_other_page_freed, then shrink the pool: the pages given back reach the
    buddy allocator as free 2 MiB blocks whose neighbours are busy (the held pages turn
    surplus, freed with the memfd)."""
    _every_other_page_freed(fd, free)
    nr = POOL_2M / "nr_hugepages"
    nr.write_text(str(int(nr.read_text()) - int((POOL_2M / "free_hugepages").read_text())))


def test_reserve_grows_past_the_scattered_free_blocks(hugepage_pool):
    """A growing pool takes the buddy allocator's free 2 MiB blocks that have busy
    neighbours first; reserve=True grows past them (as many as /proc/buddyinfo counts, plus
    two) when the pool cannot serve the buffer, and not at all when it can."""
    from physmem.dma.allocate import _overgrowth

    hugepage_pool(32)
    fd = os.memfd_create("singles", os.MFD_HUGETLB)
    try:
        _make_singles(fd, pool_state()[1])
        assert int((POOL_2M / "free_hugepages").read_text()) == 0

        def check() -> None:
            # Pages freed a moment ago reach the buddy allocator from a kernel worker: the
            # count is judged against a reading just before and just after.
            first = _buddy_2m_singles()
            got = _overgrowth(8, MB2, None)
            last = _buddy_2m_singles()
            assert any(got == (s + 2 if 0 < s <= 128 else 0) for s in (first, last)), (
                got, first, last)

        settled(check)
        assert first_free_serves(8)
    finally:
        os.close(fd)


def first_free_serves(n: int) -> bool:
    """With n free pages in the pool, reserve=True adds none beyond them."""
    from physmem.dma.allocate import _overgrowth

    nr = POOL_2M / "nr_hugepages"
    nr.write_text(str(int(nr.read_text()) + n))
    return int((POOL_2M / "free_hugepages").read_text()) < n or _overgrowth(n, MB2, None) == 0


def test_reserve_true_amid_scattered_free_blocks_is_contiguous_and_restores_the_pool(
        hugepage_pool):
    hugepage_pool(32)
    fd = os.memfd_create("singles", os.MFD_HUGETLB)
    try:
        _make_singles(fd, pool_state()[1])
        before = [int((POOL_2M / f).read_text())
                  for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages")]
        with allocate_contiguous(8 * MB2, reserve=True) as buf:
            pfns = own_pfns(buf.address, buf.size)
            assert pfns == list(range(pfns[0], pfns[0] + len(pfns)))
            assert int((POOL_2M / "nr_hugepages").read_text()) - int(
                (POOL_2M / "surplus_hugepages").read_text()) == before[0] - before[2]
        after = [int((POOL_2M / f).read_text())
                 for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages")]
        assert after == before
    finally:
        os.close(fd)


def _shuffled_with_singles(fd: int, take: int, singles: int) -> None:
    """Make the buddy allocator's free lists what a long-running machine's are: grow the 2 MiB
    pool by ``take`` pages into hugetlb memfd ``fd``, give back every pair of buddies (both
    2 MiB halves of a 4 MiB block) in random order, so that the free 4 MiB blocks come out
    in no physical order, then one half of enough pairs to leave ``singles`` free 2 MiB
    blocks whose buddy is busy. Pages whose buddy is not ours stay held, as do the halves
    that keep the singles single."""
    import random

    from physmem.analysis.contiguity import drain_per_cpu_lists

    def give_back(pages: list[int]) -> None:
        _punch(fd, pages)
        nr = POOL_2M / "nr_hugepages"
        nr.write_text(str(int(nr.read_text()) - int((POOL_2M / "free_hugepages").read_text())))
        # Freed pages wait on the CPUs' lists, out of /proc/buddyinfo, for seconds: until
        # they are drained, halves of pairs given back whole count as singles.
        assert drain_per_cpu_lists(), "cannot drain the per-CPU free lists"

    nr = POOL_2M / "nr_hugepages"
    nr.write_text(str(int(nr.read_text()) + take))
    take = int((POOL_2M / "free_hugepages").read_text())
    heads = _hold(fd, take)
    block = {pfn // (MB2 // PAGE): i for i, pfn in enumerate(heads)}
    pairs = [(i, block[b ^ 1]) for b, i in block.items() if b % 2 == 0 and b ^ 1 in block]
    random.shuffle(pairs)
    give_back([i for pair in pairs[singles:] for i in pair])
    missing = max(0, singles - _buddy_2m_singles())
    assert missing <= len(pairs), f"only {len(pairs)} pairs of buddies among {take} pages"
    give_back([a for a, _ in pairs[:missing]])


def test_reserve_true_demotes_after_growing_past_many_singles(hugepage_pool):
    """A machine with about a hundred free 2 MiB blocks with busy buddies and 4 MiB blocks
    in no physical order: reserve=True grows past the singles, finds no run among the pages
    that follow, and must still have room under its cap for a demoted gigantic page (it
    once had used the room up, and failed, on a CI machine after a full test run)."""
    from physmem.hugepages import demote_size

    if demote_size("1G") != MB2 or not gigantic_reservable():
        pytest.skip("no 1 GiB page to demote into 2 MiB ones on this machine now")
    hugepage_pool(0)  # restores the pool afterwards
    fd = os.memfd_create("shuffled", os.MFD_HUGETLB)
    try:
        _shuffled_with_singles(fd, 2000, 120)
        singles = _buddy_2m_singles()
        # What makes the growth past them overrun the room a demotion needs.
        assert 110 < singles <= 128, singles
        before = pool_state()
        for _ in range(3):
            with allocate_contiguous(16 * MB2, reserve=True) as buf:
                pfns = own_pfns(buf.address, buf.size)
                assert pfns == list(range(pfns[0], pfns[0] + len(pfns)))
        assert wait_until(lambda: pool_state() == before, 10), (pool_state(), before)
    finally:
        os.close(fd)


def test_growth_past_scattered_blocks_never_refuses_a_buffer(hugepage_pool, monkeypatch):
    """More growth than memory allows (here: a terabyte of extra pages) is refused by the
    memory margin; the buffer is then made with the growth it needs, as before."""
    from physmem.dma import allocate as _alloc

    hugepage_pool(0)  # restores the pool afterwards
    monkeypatch.setattr(_alloc, "_overgrowth", lambda n, ps, node: 1 << 19)
    before = [int((POOL_2M / f).read_text())
              for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages")]
    with allocate_contiguous(4 * MB2, reserve=True) as buf:
        pfns = own_pfns(buf.address, buf.size)
        assert pfns == list(range(pfns[0], pfns[0] + len(pfns)))
    after = [int((POOL_2M / f).read_text())
             for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages")]
    assert after == before


def test_allocate_close_cycles_leave_pools_as_they_were(hugepage_pool):
    hugepage_pool(4)
    before = pool_state()
    for _ in range(1000):
        with allocate_contiguous(MB2):
            pass
    assert pool_state() == before


def test_longest_contiguous_matches_an_independent_sort(hugepage_pool):
    hugepage_pool(48)
    longest = longest_contiguous()
    # Independent: hold every free page in a plain hugetlb mapping and sort our own readings.
    import mmap

    free = pool_state()[1]
    fd = os.memfd_create("check", os.MFD_HUGETLB)
    try:
        os.ftruncate(fd, free * MB2)
        m = mmap.mmap(fd, free * MB2)
        for i in range(free):
            m[i * MB2] = 1
        from conftest import address_of

        base = address_of(m)
        heads = sorted(own_pfns(base + i * MB2, PAGE)[0] for i in range(free))
        m.close()
    finally:
        os.close(fd)
    best = run = 1
    for a, b in zip(heads, heads[1:]):
        run = run + 1 if b == a + MB2 // PAGE else 1
        best = max(best, run)
    assert longest == best * MB2
    with allocate_contiguous(longest) as buf:
        check_contiguous(buf, MB2)
    with pytest.raises(ContiguityUnavailable) as err:
        allocate_contiguous(longest + MB2)
    assert err.value.longest == longest and "longest run" in str(err.value)


def test_reserve_true_gives_the_pool_back(pools_restored):
    before = pool_state()
    with allocate_contiguous(16 << 20, reserve=True) as buf:
        check_contiguous(buf, MB2)
        total, free = pool_state()
        assert total - free >= 8, "the buffer's 8 pages are in use"
        assert total >= before[0]
    assert pool_state() == before


def test_partial_reservation_raises(pools_restored):
    pool = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB")
    before = pool_state(pool)
    # Fewer bytes than the machine has (more is a usage error), more than it can spare.
    too_many = int(Path("/proc/meminfo").read_text().split()[1]) // (1 << 20)
    with pytest.raises(HugePagesUnavailable):
        allocate_contiguous(too_many << 30, page_size="1G", reserve=True)
    assert pool_state(pool) == before


def test_not_enough_pages_says_what_to_do(hugepage_pool):
    hugepage_pool(2)
    free = pool_state()[1]
    with pytest.raises(ContiguityUnavailable) as err:
        allocate_contiguous((free + 1) * MB2)
    assert "physmem hugepages reserve" in str(err.value) and "reserve=True" in str(err.value)
    assert pool_state()[1] == free, "candidate pages were given back"


@pytest.mark.parametrize("kwargs,needle", [
    ({"size": 0}, "size=0 is out of range: it must be at least 1"),
    ({"size": -5}, "size=-5 is out of range: it must be at least 1"),
    ({"size": "0M"}, "size '0M' is zero"),
    ({"size": "lots"}, "'lots' is not a size"),
    ({"size": "17179869184G"}, "too large"),
    ({"size": 2**64}, "more than this machine's memory"),
    ({"size": MB2, "align": 3 << 20}, "power of two"),
    ({"size": MB2, "node": 9}, "NUMA node 9 does not exist"),
    ({"size": MB2, "page_size": "3M"}, "no 3M hugepage pool"),
])
def test_bad_arguments(kwargs, needle):
    with pytest.raises(InvalidArgument, match=needle):
        allocate_contiguous(**kwargs)


def test_physical_alignment(hugepage_pool):
    hugepage_pool(24)
    with allocate_contiguous(MB2, align=8 << 20, reserve=True) as buf:
        assert buf.phys % (8 << 20) == 0
        check_contiguous(buf, MB2)


def test_close_refuses_while_views_exist(hugepage_pool):
    hugepage_pool(1)
    buf = allocate_contiguous(MB2)
    view = buf.array()
    with pytest.raises(BufferError):
        buf.close()
    del view
    buf.close()
    with pytest.raises(InvalidArgument, match="closed"):
        buf.virt_to_phys(0)


def test_verify_after_compaction(hugepage_pool):
    hugepage_pool(4)
    with allocate_contiguous(4 << 20, reserve=True) as buf:
        Path("/proc/sys/vm/compact_memory").write_text("1")
        buf.verify()
        check_contiguous(buf, MB2)


def raw_kpageflags(pfns: list[int]) -> list[int]:
    """The independent reading of /proc/kpageflags: one os.pread per frame."""
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        return [struct.unpack("<Q", os.pread(fd, 8, pfn * 8))[0] for pfn in pfns]
    finally:
        os.close(fd)


def test_verify_reports_both_checks_as_root(hugepage_pool):
    hugepage_pool(2)
    with allocate_contiguous(2 * MB2, reserve=True) as buf:
        got = buf.verify()
        assert got == buf.verification
        assert got.pagemap and got.kpageflags and got.complete and got.not_checked == ()
        assert got.pages == 2 and got.segments == 1
        heads = own_pfns(buf.address, buf.size)[:: MB2 // PAGE]
        huge_head = (1 << 17) | (1 << 15)   # KPF_HUGE, KPF_COMPOUND_HEAD (kernel-page-flags.h)
        assert all(f & huge_head == huge_head for f in raw_kpageflags(heads))
        assert got.as_json() == {"pagemap": True, "kpageflags": True, "not_checked": {},
                                 "pinned": True, "pin_error": None}
        assert got.pinned and buf.pinned and (buf.address, buf.size) in registered_buffers()


# CAP_SYS_ADMIN makes pagemap show PFNs, but /proc/kpageflags is mode 0400 root: a non-root
# user holding the capability (`setcap cap_sys_admin`) cannot open it. CAP_IPC_LOCK for mlock.
CAPPED = "+sys_admin,+ipc_lock"
ALLOC_2M = "import sys\nfrom physmem.cli import main\nsys.exit(main(['alloc', '2M'{}]))\n"


def test_verify_says_kpageflags_was_not_checked_without_access(hugepage_pool, run_unprivileged):
    hugepage_pool(1)
    assert os.stat("/proc/kpageflags").st_mode & 0o077 == 0, "kpageflags readable by others?"
    run = run_unprivileged(ALLOC_2M.format(", '--json'"), caps=CAPPED)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["verified"] is False
    assert out["verification"]["pagemap"] is True and out["verification"]["kpageflags"] is False
    assert "kpageflags" in out["verification"]["not_checked"]
    text = run_unprivileged(ALLOC_2M.format(""), caps=CAPPED)
    assert text.returncode == 0, text.stderr
    assert "verified with pagemap" in text.stdout
    assert "not checked: kpageflags" in text.stdout and "hugetlb" not in text.stdout.split(
        "not checked")[0].split("pagemap")[-1]


def test_forked_child_does_not_see_the_buffer(hugepage_pool):
    hugepage_pool(1)
    with allocate_contiguous(MB2) as buf:
        pid = os.fork()
        if pid == 0:
            maps = Path("/proc/self/maps").read_text()
            os._exit(3 if f"{buf.address:x}-" in maps else 0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert f"{buf.address:x}-" in Path("/proc/self/maps").read_text()


def test_sigkill_mid_allocation_leaks_nothing(hugepage_pool):
    hugepage_pool(16)
    before = pool_state()
    code = ("import physmem.dma as d\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    with d.allocate_scatter(8 << 20): pass\n")
    env, cwd = python_env()
    for delay in (0.05, 0.13, 0.31):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env,
                                 cwd=cwd)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)  # the kill point: somewhere in the allocate/close loop
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The kernel frees the dead process's pages asynchronously.
        assert wait_until(lambda: pool_state() == before, 5), (pool_state(), before)


def test_unprivileged_allocation_says_pfns_are_hidden(run_unprivileged, hugepage_pool):
    hugepage_pool(2)
    before = pool_state()
    proc = run_unprivileged("""
        from physmem.dma import allocate_contiguous
        from physmem.errors import PfnUnavailable
        try:
            allocate_contiguous(2 << 20)
        except PfnUnavailable as exc:
            print("refused:", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "CAP_SYS_ADMIN" in proc.stdout
    assert pool_state() == before


def test_cli_alloc_json_matches_an_independent_check(pools_restored, capsys):
    from physmem.cli import main

    assert main(["alloc", "8M", "--reserve", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["contiguous"] and out["verified"] and out["size"] == 8 << 20
    assert out["segments"][0]["nbytes"] == 8 << 20
    assert out["segments"][0]["paddr"] % MB2 == 0
    assert main(["alloc", "0"]) == 2


def test_demoted_gigantic_page_gives_a_1g_run_of_2m_pages(pools_restored):
    from physmem.hugepages import demote, demote_size, release_free, reserve

    if demote_size("1G") != MB2:
        pytest.skip("this kernel cannot demote 1 GiB pages into 2 MiB ones (Linux 5.16+)")
    giant_pool = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB")
    before_2m, before_1g = pool_state(), pool_state(giant_pool)
    try:
        with reserve(1, "1G") as giant:
            assert demote(1, "1G") == 1
            assert pool_state(giant_pool)[0] == giant.previous
    except HugePagesUnavailable:
        pytest.skip("no 1 GiB page can be had on this machine now")
    assert pool_state()[1] >= before_2m[1] + 512
    with allocate_contiguous(1 << 30) as buf:  # no reserve: the demoted pages are there
        check_contiguous(buf, MB2)
    # The demotion added 512 persistent 2 MiB pages; giving exactly those back, relative to
    # the pool now, leaves both pools as they were.
    assert release_free(512, "2M") == 512
    assert pool_state() == before_2m and pool_state(giant_pool) == before_1g


def test_node_and_segment_limits(pools_restored):
    with allocate_contiguous(4 << 20, node=0, reserve=True) as buf:
        assert buf.node == 0
        # Independent: numa_maps counts the buffer's pages on node 0. Pages mapped in
        # physical order may come from the file in another order: one VMA per piece, so
        # sum over every VMA inside the buffer.
        on_node0 = 0
        for line in Path("/proc/self/numa_maps").read_text().splitlines():
            start = int(line.split()[0], 16)
            if buf.address <= start < buf.address + buf.size:
                assert "huge" in line
                on_node0 += int(line.split("N0=")[1].split()[0])
        assert on_node0 == 2
    with allocate_scatter(8 << 20, max_segments=1, reserve=True) as one:
        assert one.is_contiguous
        check_contiguous(one, MB2)
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidArgument, match="max_segments"):
            allocate_scatter(MB2, max_segments=bad)


# -- reserve=True leaves the pools as they were, whatever happens to the process -------------
HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def all_pools() -> dict[str, tuple[int, ...]]:
    """(nr_hugepages, free_hugepages, surplus_hugepages, nr_overcommit_hugepages) of every
    size, from sysfs."""
    return {d.name: tuple(int((d / f).read_text()) for f in
                          ("nr_hugepages", "free_hugepages", "surplus_hugepages",
                           "nr_overcommit_hugepages"))
            for d in sorted(HUGEPAGES.iterdir())}


def wait_for_pools(before: dict, seconds: float = 10.0) -> dict:
    """The pools once they equal ``before`` (the kernel frees a dead process's pages, and a
    guardian restores, asynchronously), or their state at the deadline."""
    wait_until(lambda: all_pools() == before, seconds)
    return all_pools()


def gigantic_reservable() -> bool:
    from physmem.hugepages import reserve

    if not (HUGEPAGES / "hugepages-1048576kB").exists():
        return False
    try:
        reserve(int((HUGEPAGES / "hugepages-1048576kB" / "free_hugepages").read_text()) + 1,
                "1G").release()
    except HugePagesUnavailable:
        return False
    return True


@pytest.mark.parametrize("page_size", ["2M", "1G"])
def test_reserve_true_pool_is_restored_while_the_buffer_lives(pools_restored, page_size):
    if page_size == "1G" and not gigantic_reservable():
        pytest.skip("no 1 GiB page can be had on this machine now")
    pool = HUGEPAGES / f"hugepages-{MB2 // 1024 if page_size == '2M' else 1 << 20}kB"
    # Start from an empty pool: then "no page beyond the buffer's" is exact.
    (pool / "nr_hugepages").write_text("0")
    before = all_pools()
    size = (8 << 20) if page_size == "2M" else 1 << 30
    pages = size // (MB2 if page_size == "2M" else 1 << 30)
    with allocate_contiguous(size, page_size=page_size, reserve=True) as buf:
        check_contiguous(buf, MB2 if page_size == "2M" else 1 << 30)
        nr, free, surplus, overcommit = all_pools()[pool.name]
        assert nr - surplus == 0, "persistent size is back to what it was"
        assert (nr, free, surplus) == (pages, 0, pages), "the pool holds the buffer's pages only"
        assert overcommit == before[pool.name][3], "the ceiling is back too"
        if page_size == "2M":  # the default size: /proc/meminfo is a second witness
            info = Path("/proc/meminfo").read_text()
            assert f"HugePages_Surp:  {pages:>6}" in info.replace("\t", " ") or \
                int(info.split("HugePages_Surp:")[1].split()[0]) == pages
        for other, state in all_pools().items():
            if other != pool.name:
                assert state == before[other], "no other pool changed (demotion included)"
    assert wait_for_pools(before) == before


def test_reserve_true_keeps_existing_free_pages_and_surplus_accounting(pools_restored):
    pool = HUGEPAGES / "hugepages-2048kB"
    (pool / "nr_hugepages").write_text("3")  # an administrator's 3 free pages
    if all_pools()[pool.name][:3] != (3, 3, 0):
        pytest.skip("could not set up a 3-page pool")
    before = all_pools()
    with allocate_scatter(10 << 20, reserve=True):
        nr, free, surplus, overcommit = all_pools()[pool.name]
        assert nr - surplus == 3 and free == 0 and nr == 5
        assert overcommit == before[pool.name][3], "the ceiling went back at once"
    assert wait_for_pools(before) == before


def test_reserve_refuses_more_than_available_memory(pools_restored):
    from physmem.hugepages import reserve
    from physmem.proc import meminfo

    before = all_pools()
    available = int(Path("/proc/meminfo").read_text().split("MemAvailable:")[1].split()[0]) << 10
    # Free pool pages (a machine may keep a pool) are had without growing: beyond them.
    held = pool_state()[1]
    available += held * MB2
    too_many = available // MB2 + 1
    with pytest.raises(HugePagesUnavailable) as err:
        reserve(too_many, "2M")
    message = str(err.value)
    assert "MemAvailable" in message and "force=True" in message and str(too_many - held) in message
    assert all_pools() == before
    # Just inside the margin is refused too; a small reservation is not.
    margin = max(256 << 20, int(meminfo()["MemTotal"] * 0.05))
    with pytest.raises(HugePagesUnavailable):
        reserve((available - margin) // MB2 + 8, "2M")
    with pytest.raises(HugePagesUnavailable):
        allocate_contiguous(available + MB2, reserve=True)
    assert all_pools() == before
    with reserve(4, "2M") as res:
        assert res.free >= 4


def test_cli_alloc_refusal_speaks_cli(pools_restored):
    from conftest import run_physmem

    before = all_pools()
    proc = run_physmem("alloc", "100T", "--reserve")   # more than the machine: a usage error
    assert proc.returncode == 2 and "more than this machine's memory" in proc.stderr
    # All of MemTotal (in 2 MiB pages) is more than MemAvailable less its margin: refused
    # by the system's state, with --force as the way past it (exit 1, the system refused).
    mem_total = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")
                     if ln.startswith("MemTotal:"))
    proc = run_physmem("alloc", f"{mem_total >> 21 << 1}M", "--reserve")
    assert proc.returncode == 1, proc.stderr
    assert "--force" in proc.stderr and "force=True" not in proc.stderr
    assert all_pools() == before
    free = all_pools()["hugepages-2048kB"][1]
    proc = run_physmem("alloc", f"{(free + 1) * 2}M")  # more than the pool holds
    assert proc.returncode == 1, proc.stderr
    assert "--reserve" in proc.stderr and "reserve=True" not in proc.stderr
    assert "physmem.hugepages" not in proc.stderr, "no Python API in a CLI message"
    assert all_pools() == before


KILL_SERVER = r"""
import os, sys, random
import numpy as np
import physmem.dma as d
from physmem.dma import DmaPool
JOBS = {
    "contiguous-2M": lambda: d.allocate_contiguous(8 << 20, reserve=True),
    "scatter-2M": lambda: d.allocate_scatter(8 << 20, reserve=True),
    "dmapool-2M": lambda: DmaPool(4 << 20, reserve=True),
    "contiguous-1G": lambda: d.allocate_contiguous(1 << 30, page_size="1G", reserve=True),
    "scatter-1G": lambda: d.allocate_scatter(1 << 30, page_size="1G", reserve=True),
    "dmapool-1G": lambda: DmaPool(1 << 30, page_size="1G", reserve=True),
}
print("ready", flush=True)
for line in sys.stdin:
    job = JOBS[line.strip()]
    pid = os.fork()
    if pid == 0:
        while True:  # allocate, use, close, again: a kill lands before, during or after
            buf = job()
            b = buf.buffer if isinstance(buf, DmaPool) else buf
            np.frombuffer(b.view(), dtype=np.uint8)[::4096] = 1
            if isinstance(buf, DmaPool):
                buf.free(buf.alloc(64))
            buf.close()
    print(pid, flush=True)
    os.waitpid(pid, 0)  # the test kills it; reap it before the next job
    print("reaped", flush=True)
"""


def test_sigkill_at_random_points_restores_every_pool(pools_restored):
    """SIGKILL children allocating with reserve=True (2 MiB and, where reservable, 1 GiB;
    allocate_contiguous, allocate_scatter, DmaPool): every pool ends exactly as before.
    PHYSMEM_KILLS sets the number of kills (default 30; 100 for a thorough run)."""
    import random

    kills = int(os.environ.get("PHYSMEM_KILLS", "30"))
    jobs = ["contiguous-2M", "scatter-2M", "dmapool-2M"]
    if gigantic_reservable():
        jobs += ["contiguous-1G", "scatter-1G", "dmapool-1G"]
    before = all_pools()
    env, cwd = python_env()
    server = subprocess.Popen([sys.executable, "-c", KILL_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    rng = random.Random(int(os.environ.get("PHYSMEM_KILL_SEED", "16")))
    seen_after_allocation = 0
    try:
        assert server.stdout.readline() == "ready\n"
        for i in range(kills):
            job = jobs[i % len(jobs)]
            server.stdin.write(job + "\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            # 1 GiB pages take tens of ms to find: stretch the window to match.
            time.sleep(rng.uniform(0, 0.06 if job.endswith("2M") else 0.4))
            seen_after_allocation += all_pools() != before
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline() == "reaped\n"
            after = wait_for_pools(before)
            assert after == before, f"kill {i} ({job}): pools {after}, expected {before}"
    finally:
        server.kill()
        server.wait()
    assert seen_after_allocation > 0, "no kill landed while a buffer was held"


@pytest.mark.parametrize("how", ["exit", "exception-in-exit"])
def test_exit_without_close_restores_every_pool(pools_restored, how):
    before = all_pools()
    code = {
        "exit": "import physmem.dma as d\nb = d.allocate_contiguous('64M', reserve=True)\n",
        # close() refuses while an array exists, so __exit__ raises: the pools must still
        # come back.
        "exception-in-exit": ("import numpy as np, physmem.dma as d\n"
                              "with d.allocate_contiguous('8M', reserve=True) as buf:\n"
                              "    arr = buf.array(np.uint32)\n"),
    }[how]
    env, cwd = python_env()
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode == 0) == (how == "exit"), proc.stderr
    if how == "exception-in-exit":
        assert "BufferError" in proc.stderr
    assert wait_for_pools(before) == before


def test_longest_contiguous_of_an_empty_pool_is_zero(empty_2m_pool):
    assert longest_contiguous() == 0
    assert longest_contiguous("2M", node=0) == 0


GUARDED_GROWER = r"""
import os, select, signal, sys, time
import physmem.dma as d
from physmem._raw import poolguard as C
from physmem.hugepages import _ledger
from physmem.hugepages.reservation import _grow_total
POOL = "/sys/kernel/mm/hugepages/hugepages-2048kB"
if sys.argv[1] == "forked-guardian":
    sys.executable = ""  # as in an embedded Python: nothing to exec, the guardian is forked
with _ledger.pool_lock() as ledger:  # this process's ledger and guardian exist from here
    ledger.claim(POOL + "/nr_hugepages", C.TOTAL).close()
first = ledger.guardian_pid
def grow_and_wait():
    with _ledger.pool_lock() as ledger:  # grown and claimed, never given back
        _grow_total(POOL, int(sys.argv[2]), ledger.claim(POOL + "/nr_hugepages", C.TOTAL))
        print(os.getpid(), first, ledger.guardian_pid, flush=True)
    time.sleep(60)  # the test kills this process; the sleep only bounds its life if it fails
    os._exit(0)
if sys.argv[1] == "kill-guardian":
    pidfd = os.pidfd_open(first)
    os.kill(first, signal.SIGKILL)  # killed by hand: the next pool change starts another
    assert select.select([pidfd], [], [], 15)[0], "the guardian outlived SIGKILL"
    grow_and_wait()
if sys.argv[1] == "kill-guardian-then-process":  # the test kills both, guardian first
    grow_and_wait()
if sys.argv[1] == "forked-guardian":
    with open(f"/proc/{first}/cmdline", "rb") as f:  # a fork of this very process
        assert f.read() == open("/proc/self/cmdline", "rb").read()
    grow_and_wait()
if os.fork() == 0:
    grow_and_wait()
sys.stdin.read()  # the parent stays alive, guardian and all, until the test is done
"""


@pytest.mark.parametrize("how", ["fork", "kill-guardian", "forked-guardian",
                                 "kill-guardian-then-process"])
def test_guardian_of_a_fork_child_and_after_a_guardian_dies(pools_restored, how):
    """A process SIGKILLed holding a grown pool leaves the pool as it was: its guardian
    undoes the claims in its ledger. A child made by os.fork has a ledger and guardian of
    its own (its parent lives on); a guardian killed by hand is replaced at the next pool
    change; without an interpreter to exec the guardian is forked. Killed without a
    guardian (killed first), the process leaves its ledger, which the next process to take
    the pool lock settles: no claim is ever lost."""
    from physmem.hugepages import _ledger

    before = all_pools()
    grow = before["hugepages-2048kB"][1] + 3
    env, cwd = python_env()
    proc = subprocess.Popen([sys.executable, "-c", GUARDED_GROWER, how, str(grow)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    try:
        victim, first, guardian = map(int, proc.stdout.readline().split())
        assert (guardian == first) == (how in ("forked-guardian", "kill-guardian-then-process"))
        nr, free, *_ = all_pools()["hugepages-2048kB"]
        assert free >= grow and nr > before["hugepages-2048kB"][0], "the pool was grown"
        if how == "kill-guardian-then-process":
            assert kill_and_wait(guardian), "the guardian outlived SIGKILL"
        os.kill(victim, signal.SIGKILL)
        if how == "kill-guardian-then-process":
            proc.wait()
            # Both are gone, and nobody has taken the pool lock since: nothing has restored
            # the pool, and nothing will until someone does.
            assert all_pools() != before, "nobody restored it yet"
            with _ledger.pool_lock():  # taking the lock settles dead ledgers
                pass
        assert wait_for_pools(before) == before
        if how == "fork":
            assert victim != proc.pid and proc.poll() is None, "the parent lives on"
    finally:
        proc.kill()
        proc.wait()
    assert wait_for_pools(before) == before


def test_the_guardian_is_nobodys_child(pools_restored):
    """A caller that reaps every child (``while True: os.wait()``) is not held up by the
    guardian: it was forked away from the process it guards."""
    code = ("import os, physmem.dma as d\n"
            "from physmem.hugepages import _ledger\n"
            "d.allocate_contiguous('4M', reserve=True).close()\n"
            "with _ledger.pool_lock() as ledger:\n"
            "    ledger.claim('/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages', 1).close()\n"
            "assert ledger.guardian_pid > 0\n"
            "try:\n    os.wait()\nexcept ChildProcessError:\n    print('no children')\n")
    env, cwd = python_env()
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout == "no children\n", proc.stderr


KEPT_LEFTOVER = r"""
import sys, time
import physmem.hugepages.growth as growth
growth._settle_now = False  # as a kernel that kept the growth: the buffer gives it back
import physmem.dma as d
buf = d.allocate_contiguous('8M', reserve=True)
print("allocated", flush=True)
if sys.stdin.readline().strip() == "close":  # else "exit": leave without close()
    buf.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""


def raw_pool(pool: Path) -> tuple[int, int, int]:
    """(nr, free, surplus) with plain open(): no physmem in the reading."""
    out = []
    for name in ("nr_hugepages", "free_hugepages", "surplus_hugepages"):
        with open(pool / name) as f:
            out.append(int(f.read()))
    return tuple(out)


@pytest.mark.parametrize("end", ["close", "exit", "sigkill"])
def test_growth_kept_with_the_buffer_is_given_back(pools_restored, end):
    """Where growth cannot be given back at once (driven here by the private switch, the
    pool writes, ledger and guardian all real), it is given back on close(), on exit
    without close(), and by the guardian after SIGKILL."""
    pool = HUGEPAGES / "hugepages-2048kB"
    (pool / "nr_hugepages").write_text("0")  # from an empty pool the counts are exact
    before = all_pools()
    assert raw_pool(pool) == (0, 0, 0)
    ceiling = int((pool / "nr_overcommit_hugepages").read_text())
    env, cwd = python_env()
    proc = subprocess.Popen([sys.executable, "-c", KEPT_LEFTOVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        assert proc.stdout.readline() == "allocated\n"
        # The leftover really is there: the ceiling stays raised by the buffer's pages.
        assert raw_pool(pool)[0] >= 4
        assert int((pool / "nr_overcommit_hugepages").read_text()) > ceiling
        if end == "sigkill":
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        else:
            proc.stdin.write(end + "\n")
            proc.stdin.flush()
            if end == "close":
                assert proc.stdout.readline() == "closed\n"
                assert raw_pool(pool) == (0, 0, 0), "close() gave the pages back at once"
                assert int((pool / "nr_overcommit_hugepages").read_text()) == ceiling
                proc.stdin.write("\n")
                proc.stdin.flush()
            assert proc.wait(timeout=30) == 0
        assert wait_for_pools(before) == before
        assert raw_pool(pool) == (0, 0, 0)
    finally:
        proc.kill()
        proc.wait()


def _largest_zone_bytes() -> int:
    """The largest zone's present pages, in bytes, from a plain read of /proc/zoneinfo: no
    physically contiguous run can be longer."""
    present = [int(line.split()[1]) for line in Path("/proc/zoneinfo").read_text().splitlines()
               if line.strip().startswith("present ")]
    return max(present) * PAGE


class PoolPeak:
    """The highest nr_hugepages of the 2 MiB pool seen while the block runs (a thread
    reading the sysfs file every millisecond)."""

    def __enter__(self) -> "PoolPeak":
        import threading

        self.peak = pool_state()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, pool_state()[0])
            self._stop.wait(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_reserve_asks_the_forecast_first_and_fails_fast(pools_restored):
    """A run longer than the largest zone cannot exist: reserve=True finds that out from the
    forecast in seconds, with its numbers, and never grows the pool for it (growing it to
    find out took a minute and most of memory)."""
    size = (_largest_zone_bytes() // MB2 + 16) * MB2
    before = pool_state()
    with PoolPeak() as watch:
        t0 = time.monotonic()
        with pytest.raises(ContiguityUnavailable) as err:
            # force: past the memory margin (which may refuse such a size first, depending on
            # MemAvailable), so that it is the forecast that answers.
            allocate_contiguous(size, reserve=True, force=True)
        took = time.monotonic() - t0
    assert took < 10, took
    assert watch.peak == before[0], "the pool never grew"
    assert "not obtainable" in str(err.value) and "the pool was not grown" in str(err.value)
    assert pool_state() == before


def test_max_growth_caps_the_pool_for_one_buffer(pools_restored):
    from physmem.errors import InvalidArgument

    pool = HUGEPAGES / "hugepages-2048kB"
    (pool / "nr_hugepages").write_text("0")
    with pytest.raises(InvalidArgument, match="max_growth"):
        allocate_contiguous("8M", reserve=True, max_growth="4M")
    with pytest.raises(InvalidArgument, match="reserve=True"):
        allocate_contiguous("8M", max_growth="16M")
    cap = 6  # pages: the buffer's 4 and 2 more
    with PoolPeak() as watch:
        try:
            allocate_contiguous("8M", reserve=True, max_growth=cap * MB2).close()
        except ContiguityUnavailable:
            pass  # six scattered pages may hold no run of four: the cap held, that is all
    assert watch.peak <= cap
    assert wait_for_pools(all_pools()) == all_pools()
    with pytest.raises(InvalidArgument, match="max_growth"):
        DmaPool("8M", reserve=True, max_growth="4M")
    from conftest import run_physmem

    # The CLI's flag, the same cap: the pool never grew beyond it while physmem alloc ran.
    with PoolPeak() as watch:
        done = run_physmem("alloc", "8M", "--reserve", "--max-growth", str(cap * MB2), "--json")
    assert done.returncode in (0, 1), done.stderr
    assert watch.peak <= cap
    if done.returncode == 0:
        assert json.loads(done.stdout)["size"] == 8 << 20
