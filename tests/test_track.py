"""physmem.track: the pages written since a reset, exactly.

Every answer is checked against sources the tracker does not use: the writer's own record of
what it wrote, a content diff against a snapshot taken at the reset, and the raw pagemap
entries (their uffd-wp bit) read with os.pread. Writers: this process, a thread racing the
collects, and a child process monitored through /proc/<pid>/pagemap.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import PAGE, python_env
from physmem import Mapping, MemFd
from physmem.errors import (
    FeatureUnavailable,
    InvalidArgument,
    NotTracked,
    PhysmemOSError,
    ProcessGone,
)
from physmem.mapping import Advice
from physmem.track import RANGE_DTYPE, DirtyTracker, enable, soft_dirty_supported

UFFD_WP = np.uint64(1 << 57)
SWAPPED = np.uint64(1 << 62)
PRESENT = np.uint64(1 << 63)
HUGE = 2 << 20


def entries(addr: int, count: int, pid: int | str = "self") -> np.ndarray:
    """Raw pagemap entries, read with os.pread: the kernel's view, not physmem's."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        return np.frombuffer(os.pread(fd, 8 * count, addr // PAGE * 8), dtype=np.uint64)
    finally:
        os.close(fd)


def read_memory(pid: int, addr: int, size: int) -> np.ndarray:
    """Another process's memory through /proc/<pid>/mem."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return np.frombuffer(os.pread(fd, size, addr), dtype=np.uint8).copy()
    finally:
        os.close(fd)


def page_set(ranges: np.ndarray, base: int, unit: int = PAGE, size: int | None = None
             ) -> set[int]:
    """The pages (numbered from ``base``) the ranges cover; only those below ``base + size``
    and above ``base`` if ``size`` is given (ranges may run across adjacent mappings)."""
    out: set[int] = set()
    for start, end in ranges.tolist():
        assert (start - base) % unit == 0 and (end - base) % unit == 0
        if size is not None:
            start, end = max(start, base), min(end, base + size)
        out.update(range((start - base) // unit, (end - base) // unit))
    return out


def well_formed(ranges: np.ndarray) -> None:
    assert ranges.dtype == RANGE_DTYPE
    s, e = ranges["start"], ranges["end"]
    assert np.all(s < e)
    # Sorted, disjoint, and merged: no range starts where the previous one ends.
    assert np.all(s[1:] > e[:-1])


def changed(snapshot: np.ndarray, now: np.ndarray, unit: int = PAGE) -> set[int]:
    diff = (snapshot.reshape(-1, unit) != now.reshape(-1, unit)).any(axis=1)
    return set(np.flatnonzero(diff).tolist())


def plan(rng: np.random.Generator, npages: int, edges: list[int]) -> list[int]:
    """A random set of pages to write, sometimes empty, often with range edges in it."""
    chosen = set(rng.choice(npages, int(rng.integers(0, npages // 8 + 1)),
                            replace=False).tolist())
    chosen |= set(rng.choice(edges, int(rng.integers(0, len(edges) + 1)),
                             replace=False).tolist())
    return sorted(chosen)


def write_pages(rng: np.random.Generator, a: np.ndarray, pages: list[int],
                unit: int = PAGE) -> None:
    """Change one byte at a random offset of each page (so its contents differ)."""
    for p in pages:
        off = p * unit + int(rng.integers(unit))
        a[off] = (int(a[off]) + 1) % 256


def filled(size: int, *, seed: int = 0, **kwargs) -> tuple[Mapping, np.ndarray]:
    m = Mapping.anonymous(size, **kwargs)
    if m.page_size == PAGE:
        m.advise(Advice.NOHUGEPAGE)
    a = m.array(np.uint8)
    a[:] = np.random.default_rng(seed).integers(1, 256, size, dtype=np.uint8)
    return m, a


# ---- this process ----------------------------------------------------------------------

def test_collect_equals_written_pages_over_many_intervals():
    rng = np.random.default_rng(1)
    size = 4 << 20
    npages = size // PAGE
    m, a = filled(size)
    with DirtyTracker(m) as t:
        assert t.exact and t.method == "userfaultfd" and t.granularity == PAGE
        assert t.ranges.tolist() == [(m.address, m.address + size, PAGE)]
        for _ in range(30):
            snapshot = a.copy()  # reading every page must not count as a write
            written = plan(rng, npages, [0, 1, npages - 2, npages - 1])
            write_pages(rng, a, written)
            # Some written pages are then dropped: their contents are gone (zeros now).
            nonzero = [p for p in written if snapshot[p * PAGE:(p + 1) * PAGE].any()]
            dropped = rng.choice(nonzero, min(len(nonzero), 3), replace=False).tolist() \
                if nonzero else []
            for p in dropped:
                m.advise(Advice.DONTNEED, p * PAGE, PAGE)
            raw = entries(m.address, npages)
            ranges = t.collect()
            well_formed(ranges)
            assert page_set(ranges, m.address) == set(written)
            assert changed(snapshot, a) == set(written)
            # The kernel's own marks, before the collect protected the pages again.
            assert set(np.flatnonzero((raw & UFFD_WP) == 0).tolist()) == set(written)
            assert not ((raw[dropped] & PRESENT).any())
    del a
    m.close()


def test_collect_without_reset_keeps_the_interval_open():
    m, a = filled(64 * PAGE)
    with DirtyTracker(m) as t:
        a[5 * PAGE] = 0
        a[63 * PAGE + 7] = 0
        first = t.collect(reset=False)
        a[9 * PAGE] = 0
        second = t.collect(reset=False, bitmap=True)
        assert page_set(first, m.address) == {5, 63}
        assert np.flatnonzero(second).tolist() == [5, 9, 63]
        assert page_set(t.collect(), m.address) == {5, 9, 63}
        assert len(t.collect()) == 0
        a[1 * PAGE] = 0
        t.reset()
        assert len(t.collect()) == 0
    del a
    m.close()


def joined(ranges: list) -> list[tuple[int, int]]:
    """Address ranges sorted, with ranges that touch or overlap made one."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(tuple(r) for r in ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def test_several_ranges_and_a_result_buffer_too_small_lose_nothing():
    # Every other page written: as many ranges as possible. The result buffer is cut to one
    # region before each collect, so the kernel stops again and again (walk_end) and the
    # tracker resumes there; pages must neither be lost nor protected unreported.
    rng = np.random.default_rng(2)
    m1, a1 = filled(2 << 20, seed=1)
    m2, a2 = filled(1 << 20, seed=2)
    buf = np.ones(300 * PAGE + 123, dtype=np.uint8)  # a numpy array: rounded out to pages
    with DirtyTracker([m2, m1, buf]) as t:
        lo = buf.ctypes.data - buf.ctypes.data % PAGE
        hi = -(-(buf.ctypes.data + buf.nbytes) // PAGE) * PAGE
        # Compared as the bytes covered: the kernel may place two of the areas back to back,
        # and the tracker may then hold them as one range.
        assert joined(t.ranges[["start", "end"]].tolist()) == joined(
            [(m1.address, m1.address + m1.size), (m2.address, m2.address + m2.size), (lo, hi)])
        for parity in (0, 1, 0):
            snaps = [a1.copy(), a2.copy()]
            w1 = [p for p in range(m1.size // PAGE) if p % 2 == parity]
            w2 = plan(rng, m2.size // PAGE, [0, m2.size // PAGE - 1])
            write_pages(rng, a1, w1)
            write_pages(rng, a2, w2)
            at = int(rng.integers(buf.nbytes))
            buf[at] += 1
            t._scanner.regions = np.empty((1, 3), dtype=np.uint64)
            ranges = t.collect()
            well_formed(ranges)
            in1 = page_set(ranges, m1.address, size=m1.size)
            in2 = page_set(ranges, m2.address, size=m2.size)
            assert in1 == set(w1) == changed(snaps[0], a1)
            assert in2 == set(w2) == changed(snaps[1], a2)
            # buf's page written, and maybe its first and last pages, which it shares with
            # whatever else lives there (Python's heap).
            rest = page_set(ranges, lo, size=hi - lo)
            page = (buf.ctypes.data + at) // PAGE - lo // PAGE
            assert page in rest and rest <= {page, 0, (hi - lo) // PAGE - 1}
            # The bitmap is the ranges in the tracker's order, one entry per page.
            # Then write once more and compare with the ranges (m1, m2: nothing else writes).
            write_pages(rng, a1, [0, 5])
            write_pages(rng, a2, [m2.size // PAGE - 1])
            bits = t.collect(reset=False, bitmap=True)
            assert len(bits) == sum((e - s) // PAGE for s, e, _ in t.ranges.tolist())
            at, marked = 0, set()
            for start, end, _ in t.ranges.tolist():
                marked |= {start + i * PAGE
                           for i in np.flatnonzero(bits[at:at + (end - start) // PAGE]).tolist()}
                at += (end - start) // PAGE
            assert sorted(x for x in marked if m1.address <= x < m1.address + m1.size) == \
                [m1.address, m1.address + 5 * PAGE]
            assert sorted(x for x in marked if m2.address <= x < m2.address + m2.size) == \
                [m2.address + m2.size - PAGE]
            t.reset()
    del a1, a2
    m1.close()
    m2.close()


def test_a_thread_writing_during_the_collects_loses_nothing():
    # Each page is written once, in random order, by a thread racing the collects. Every
    # page must turn up in a collect, never before its write began, and at the latest in the
    # first collect that began after the write. A write in flight during a collect may be
    # reported twice (the kernel lifts the protection in the fault, the collect protects the
    # page again before the store lands, and the store faults once more): then by that
    # collect and the next, never more.
    npages = 4096
    m, a = filled(npages * PAGE)
    order = np.random.default_rng(3).permutation(npages)
    position = np.empty(npages, dtype=np.int64)
    position[order] = np.arange(npages)
    progress = [0]
    collected = threading.Condition()
    k = 0

    def writer() -> None:
        for i, p in enumerate(order.tolist()):
            if i % 256 == 0:
                # Spread the writes over many collects: wait for the next one to finish
                # (the writes of this batch then race the collect after it).
                with collected:
                    done = k
                    assert collected.wait_for(lambda: k > done, timeout=30)
            a[p * PAGE] ^= 0xFF
            progress[0] = i + 1

    reports: dict[int, list[tuple[int, int, int]]] = {}
    with DirtyTracker(m) as t:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        while True:
            assert thread.is_alive() or progress[0] == npages, "the writer thread failed"
            before = progress[0]
            got = np.flatnonzero(t.collect(bitmap=True))
            after = progress[0]
            for p in got.tolist():
                reports.setdefault(p, []).append((k, before, after))
            missing = [p for p in order[:before].tolist() if p not in reports]
            assert not missing, f"pages written before collect {k} not reported: {missing}"
            with collected:
                k += 1
                collected.notify_all()
            if before == npages:
                break
        thread.join()
    assert sorted(reports) == list(range(npages))
    for p, seen in reports.items():
        (first, before, after), *again = seen
        assert position[p] < after, f"page {p} reported before it was written"
        if again:
            assert [r[0] for r in again] == [first + 1], f"page {p} reported {len(seen)} times"
            assert position[p] >= before, f"page {p}, written before collect {first}, twice"
    assert k > npages // 256
    del a
    m.close()


def test_shmem_written_dropped_and_read_pages():
    rng = np.random.default_rng(4)
    size = 2 << 20
    npages = size // PAGE
    f = MemFd("track", size=size)
    m = f.map()
    a = m.array(np.uint8)
    a[:] = 1
    a[:PAGE] = 0  # page 0 all zeros
    with DirtyTracker(m) as t:
        assert t.granularity == PAGE
        for _ in range(10):
            snapshot = a.copy()
            written = plan(rng, npages, [0, npages - 1])
            write_pages(rng, a, written)
            # Dropping a shmem page keeps its contents (the page cache has them): written
            # or not, it is reported exactly when it was written.
            for p in rng.choice(npages, 5, replace=False).tolist():
                m.advise(Advice.DONTNEED, p * PAGE, PAGE)
            assert page_set(t.collect(), m.address) == set(written) == changed(snapshot, a)
    del a
    m.close()
    f.close()


def test_kernel_writes_on_the_process_behalf_count(tmp_path):
    m, a = filled(32 * PAGE)
    source = tmp_path / "data"
    source.write_bytes(bytes(range(256)) * 64)
    fd = os.open(source, os.O_RDONLY)
    try:
        with DirtyTracker(m) as t:
            view = m.view()
            os.preadv(fd, [view[3 * PAGE + 100:5 * PAGE + 10]], 0)  # read(2) fills 3..5
            del view
            assert page_set(t.collect(), m.address) == {3, 4, 5}
            assert bytes(a[3 * PAGE + 100:3 * PAGE + 104]) == bytes([0, 1, 2, 3])
    finally:
        os.close(fd)
    del a
    m.close()


def test_close_leaves_the_memory_as_it_was():
    size = 64 * PAGE
    m = Mapping.anonymous(size)
    m.advise(Advice.NOHUGEPAGE)
    a = m.array(np.uint8)
    a[: size // 2] = 7  # the upper half is never touched
    before = entries(m.address, size // PAGE)

    def vm_flags() -> str:
        lines = Path("/proc/self/smaps").read_text().splitlines()
        head = next(i for i, line in enumerate(lines)
                    if line.startswith(f"{m.address:x}-"))
        return next(line for line in lines[head:] if line.startswith("VmFlags"))

    for close in ("close", "drop"):
        t = DirtyTracker(m)
        assert " uw" in vm_flags()
        assert (entries(m.address, size // PAGE) & UFFD_WP).all()  # every page protected
        a[3 * PAGE] = 7  # a write that changes nothing the kernel keeps after close
        if close == "close":
            t.close()
            t.close()
        else:
            del t
            gc.collect()
        after = entries(m.address, size // PAGE)
        # Same frames, same flags; untouched pages still not there; no protection left.
        assert np.array_equal(after, before)
        assert " uw" not in vm_flags()
        assert (a[: size // 2] == 7).all()
    del a
    m.close()


def test_thp_writes_are_reported_per_base_page():
    if "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text():
        pytest.skip("transparent huge pages are disabled on this machine")
    rng = np.random.default_rng(5)
    m = Mapping.anonymous(8 << 20)
    start = -(-m.address // HUGE) * HUGE
    size = 4 * HUGE if start + 4 * HUGE <= m.address + m.size else 3 * HUGE
    m.advise(Advice.HUGEPAGE)
    a = m.array(np.uint8)
    a[:] = 1
    region = a[start - m.address:start - m.address + size]
    rollup = Path("/proc/self/smaps_rollup").read_text()
    anon_huge = int(next(line.split()[1] for line in rollup.splitlines()
                         if line.startswith("AnonHugePages")))
    if anon_huge * 1024 < HUGE:
        pytest.skip("the kernel gave no transparent huge page to this mapping")
    npages = size // PAGE
    with DirtyTracker(region) as t:
        assert t.granularity == PAGE
        for _ in range(5):
            snapshot = region.copy()
            # Across each 2 MiB boundary: its last page and the next one's first.
            written = sorted(set(plan(rng, npages, [511, 512, 1023, 1024, 0, npages - 1])))
            write_pages(rng, region, written)
            assert page_set(t.collect(), start) == set(written) == changed(snapshot, region)
    del region, a
    m.close()


# ---- other processes -------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from physmem import Mapping
    from physmem.mapping import Advice
    from physmem.track import enable

    size, how = int(sys.argv[1]), sys.argv[2]
    m = Mapping.anonymous(size)
    m.advise(Advice.NOHUGEPAGE)
    a = m.array(np.uint8)
    a[:] = np.random.default_rng(7).integers(1, 256, size, dtype=np.uint8)
    tracking = enable(m) if how == "enable" else None
    other = Mapping.anonymous(4096)  # never tracked
    other.touch(write=True)
    print(m.address, other.address, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "write":
            for off in map(int, args):
                a[off] = (int(a[off]) + 1) % 256
        elif cmd == "drop":
            for page in map(int, args):
                m.advise(Advice.DONTNEED, page * 4096, 4096)
        elif cmd == "stop":
            tracking.close()
        print("ok", flush=True)
""")


class Child:
    def __init__(self, size: int, how: str) -> None:
        env, cwd = python_env()
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(size), how],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=cwd)
        self.pid = self.proc.pid
        self.address, self.other = map(int, self.ask().split())

    def ask(self, line: str | None = None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the child process died"
        return answer.strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child():
    children: list[Child] = []

    def start(size: int, how: str = "enable") -> Child:
        children.append(Child(size, how))
        return children[-1]

    yield start
    for c in children:
        c.close()


def test_child_process_writer_monitored_through_its_pagemap(child):
    rng = np.random.default_rng(6)
    size = 2 << 20
    npages = size // PAGE
    c = child(size)
    with DirtyTracker(pid=c.pid, ranges=[(c.address, size)]) as t:
        assert t.exact and t.pid == c.pid and t.granularity == PAGE
        for _ in range(15):
            snapshot = read_memory(c.pid, c.address, size)  # reads do not count
            written = plan(rng, npages, [0, npages - 1])
            offsets = [p * PAGE + int(rng.integers(PAGE)) for p in written]
            c.ask("write " + " ".join(map(str, offsets)))
            nonzero = [p for p in written if snapshot[p * PAGE:(p + 1) * PAGE].any()]
            dropped = nonzero[:2]
            c.ask("drop " + " ".join(map(str, dropped)))
            raw = entries(c.address, npages, c.pid)
            ranges = t.collect()
            well_formed(ranges)
            now = read_memory(c.pid, c.address, size)
            assert page_set(ranges, c.address) == set(written) == changed(snapshot, now)
            assert set(np.flatnonzero((raw & UFFD_WP) == 0).tolist()) == set(written)


def test_enable_in_this_process_and_monitor_by_pid():
    m, a = filled(16 * PAGE)
    with enable(m) as tracking:
        assert (entries(m.address, 16) & UFFD_WP).all()  # enable() protects at once
        with DirtyTracker(pid=os.getpid(), ranges=tracking.ranges) as t:
            a[PAGE * 15] = 0
            assert page_set(t.collect(), m.address) == {15}
    assert not (entries(m.address, 16) & UFFD_WP).any()
    del a
    m.close()


def test_a_target_that_did_not_enable_tracking_is_refused(child):
    size = 64 * PAGE
    plain = child(size, "plain")
    with pytest.raises(NotTracked, match=r"has not enabled write tracking.*enable\(\)") as exc:
        DirtyTracker(pid=plain.pid, ranges=[(plain.address, size)])
    assert exc.value.pid == plain.pid and exc.value.address == plain.address

    # Tracking part of the memory does not make the rest tracked.
    tracked = child(size)
    with pytest.raises(NotTracked):
        DirtyTracker(pid=tracked.pid, ranges=[(tracked.address, size), (tracked.other, PAGE)])

    # A target that stops tracking: the next collect says so instead of "all written".
    t = DirtyTracker(pid=tracked.pid, ranges=[(tracked.address, size)])
    assert len(t.collect()) == 0
    tracked.ask("stop")
    with pytest.raises(NotTracked, match=f"process {tracked.pid}"):
        t.collect()
    t.close()

    gone = child(size)
    t = DirtyTracker(pid=gone.pid, ranges=[(gone.address, size)])
    gone.close()
    with pytest.raises(ProcessGone):
        t.collect()
    t.close()


# ---- swap and huge pages (system changes: run under the machine lock) --------------------

@pytest.mark.root
def test_written_pages_swapped_out_are_counted(swapfile):
    rng = np.random.default_rng(8)
    size = 2 << 20
    npages = size // PAGE
    anon, a = filled(size)
    f = MemFd("track-swap", size=size)
    shm = f.map()
    s = shm.array(np.uint8)
    s[:] = 3
    with DirtyTracker([anon, shm]) as t:
        for interval in range(4):
            snaps = [a.copy(), s.copy()]
            wa = plan(rng, npages, [0, npages - 1])
            ws = plan(rng, npages, [0, npages - 1])
            write_pages(rng, a, wa)  # in later intervals this swaps pages back in
            write_pages(rng, s, ws)
            # Reclaim skips pages it finds busy (on a loaded machine, some pass): asked again
            # until the kernel's own pagemap shows most paged out, or a deadline.
            deadline = time.monotonic() + 10
            while True:
                anon.advise(Advice.PAGEOUT)
                shm.advise(Advice.PAGEOUT)
                raw_a = entries(anon.address, npages)
                raw_s = entries(shm.address, npages)
                if (((raw_a & SWAPPED) != 0).sum() > npages // 2
                        and (raw_s & PRESENT).sum() <= npages // 2) or time.monotonic() > deadline:
                    break
            swapped = (raw_a & SWAPPED) != 0
            assert swapped.sum() > npages // 2, "MADV_PAGEOUT swapped out too little"
            if wa:
                assert swapped[wa].any(), "no written page was swapped out"
            assert not (raw_s & PRESENT).sum() > npages // 2, "shmem pages stayed mapped"
            ranges = t.collect()
            well_formed(ranges)
            assert page_set(ranges, anon.address, size=size) == set(wa) == changed(snaps[0], a)
            assert page_set(ranges, shm.address, size=size) == set(ws) == changed(snaps[1], s)
            assert sum(e - b for b, e in ranges.tolist()) == (len(wa) + len(ws)) * PAGE
    del a, s
    anon.close()
    shm.close()
    f.close()


@pytest.mark.root
@pytest.mark.hugepages
@pytest.mark.parametrize("shared", [False, True], ids=["private", "shared"])
def test_hugetlb_writes_are_reported_per_huge_page(hugepage_pool, shared):
    hugepage_pool(4)
    rng = np.random.default_rng(9)
    m = Mapping.anonymous(4 * HUGE, page_size=HUGE, shared=shared)
    a = m.array(np.uint8)
    a[:] = 1
    with DirtyTracker([(m.address, m.size)]) as t:
        assert t.granularity == HUGE
        assert t.ranges.tolist() == [(m.address, m.address + m.size, HUGE)]
        for _ in range(6):
            snapshot = a.copy()
            offsets = [HUGE - 1, HUGE] if rng.integers(2) else []  # across a boundary
            offsets += rng.integers(0, m.size, int(rng.integers(0, 3))).tolist()
            for off in offsets:
                a[off] += 1
            expected = {off // HUGE for off in offsets}
            ranges = t.collect(reset=False)
            well_formed(ranges)
            assert page_set(ranges, m.address, HUGE) == expected
            assert changed(snapshot, a, HUGE) == expected
            bits = t.collect(bitmap=True)  # per base page: all 512 of each huge page
            assert set(np.flatnonzero(bits).tolist()) == {
                p * (HUGE // PAGE) + k for p in expected for k in range(HUGE // PAGE)}
        with pytest.raises(InvalidArgument, match="cuts a huge page"):
            DirtyTracker([(m.address + PAGE, HUGE)])
    del a
    m.close()


# ---- errors ----------------------------------------------------------------------------

def test_bad_ranges_are_refused_clearly():
    m, a = filled(8 * PAGE)
    hole = Mapping.anonymous(16 * PAGE)
    hole.remap(8 * PAGE, may_move=False)  # its upper half is unmapped now
    with pytest.raises(InvalidArgument, match="not mapped") as exc:
        DirtyTracker([m, (hole.address, 16 * PAGE)])
    assert exc.value.address == hole.address + 8 * PAGE
    hole.close()
    with pytest.raises(InvalidArgument, match="aligned"):
        DirtyTracker([(m.address + 1, PAGE)])
    for bad in ([], (m.address, 0), "memory", 3.0, None, {"start": 1}):
        with pytest.raises(InvalidArgument):
            DirtyTracker(bad)
    with pytest.raises(InvalidArgument, match="method"):
        DirtyTracker(m, method="fast")  # type: ignore[arg-type]
    with DirtyTracker(m):
        with pytest.raises(PhysmemOSError, match="another userfaultfd"):
            DirtyTracker(m)
    with pytest.raises(ProcessGone):
        DirtyTracker(pid=2**22, ranges=[(m.address, PAGE)])
    t = DirtyTracker(m)
    del a
    m.close()
    with pytest.raises(NotTracked, match="no longer mapped"):
        t.collect()
    t.close()
    with pytest.raises(InvalidArgument, match="closed"):
        t.collect()
    with pytest.raises(InvalidArgument, match="closed"):
        DirtyTracker(m)


def test_soft_dirty_fallback_where_the_kernel_has_it():
    if not soft_dirty_supported():
        pytest.skip(f"this kernel ({os.uname().release}) is built without "
                    "CONFIG_MEM_SOFT_DIRTY: pagemap never sets the soft-dirty bit")
    m, a = filled(64 * PAGE)
    with pytest.warns(UserWarning, match="over-reports"):
        t = DirtyTracker(m, method="soft-dirty")
    with t:
        assert not t.exact
        a[3 * PAGE] += 1
        a[40 * PAGE] += 1
        assert {3, 40} <= page_set(t.collect(), m.address)  # never fewer than written
    del a
    m.close()


def test_soft_dirty_refused_where_the_kernel_lacks_it():
    m = Mapping.anonymous(PAGE)
    m.touch(write=True)
    # Independent evidence: a kernel with soft-dirty marks every new mapping "sd".
    # The mapping may have merged with a neighbour: find the area that holds it.
    smaps = Path("/proc/self/smaps").read_text().splitlines()

    def holds(line: str) -> bool:
        lo, _, hi = line.split()[0].partition("-")
        return bool(hi) and int(lo, 16) <= m.address < int(hi, 16)

    head = next(i for i, line in enumerate(smaps) if "-" in line.split()[0] and holds(line))
    flags = next(line for line in smaps[head:] if line.startswith("VmFlags")).split()[1:]
    assert soft_dirty_supported() == ("sd" in flags)
    if "sd" in flags:
        pytest.skip("this kernel keeps soft-dirty bits")
    with pytest.raises(FeatureUnavailable, match=f"{os.uname().release}.*CONFIG_MEM_SOFT_DIRTY"):
        DirtyTracker(m, method="soft-dirty")
    m.close()


def test_unprivileged_tracking(run_unprivileged):
    # vm.unprivileged_userfaultfd is 0 on most systems: the tracker's user-mode-only
    # userfaultfd is what a user may open, and kernel-mode writes are still counted.
    r = run_unprivileged("""
        import os, numpy as np
        from physmem import Mapping
        from physmem.track import DirtyTracker
        m = Mapping.anonymous(16 * 4096)
        a = m.array(np.uint8)
        a[:] = 1
        with DirtyTracker(m) as t:
            a[2 * 4096] = 5
            r, w = os.pipe()
            os.write(w, b"x" * 10)
            os.readv(r, [m.view()[9 * 4096:9 * 4096 + 10]])
            print(sorted(((t.collect()["start"] - m.address) // 4096).tolist()), os.geteuid())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[2,", "9]", "65534"]
