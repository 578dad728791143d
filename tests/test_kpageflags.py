"""physmem.kpageflags against the kernel's own files and totals."""
from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest

import physmem
from physmem import KPF, KPageCgroup, KPageCount, KPageFlags
from physmem.kpageflags import describe, summarize
from physmem.errors import InvalidArgument

from conftest import PAGE, anonymous, kpageflags_frames, snapshot_proc_file


def pread_u64(path: Path, index: int) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return struct.unpack("<Q", os.pread(fd, 8, index * 8))[0]
    finally:
        os.close(fd)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    """A proc root whose kpageflags holds 12,345 entries, each different from every other
    (so a chunk read at the wrong place cannot match by chance), none above bit 62."""
    values = (np.arange(12_345, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(2)
    values.tofile(tmp_path / "kpageflags")
    return tmp_path


def unique_counts(values: np.ndarray) -> dict[int, int]:
    """Pages per flags value, counted by numpy: the reference for summaries."""
    uniq, counts = np.unique(values, return_counts=True)
    return dict(zip(uniq.tolist(), counts.tolist()))


def test_stable_bits_match_the_documented_abi():
    # Bit numbers from Documentation/admin-guide/mm/pagemap.rst, independent of the header.
    documented = {"LOCKED": 0, "SLAB": 7, "BUDDY": 10, "ANON": 12, "COMPOUND_HEAD": 15,
                  "HUGE": 17, "THP": 22, "ZERO_PAGE": 24, "IDLE": 25, "PGTABLE": 26}
    for name, bit in documented.items():
        assert KPF[name] == 1 << bit
    assert KPF.RESERVED == 1 << 32 and KPF.ARCH_3 == 1 << 42
    assert describe(KPF.ANON | KPF.LRU | (1 << 50)) == ("LRU", "ANON", "BIT50")
    assert describe(0) == ()
    with pytest.raises(InvalidArgument):
        describe(-1)


def test_read_keeps_callers_order(frozen_proc):
    # Snapshots: live frames change between any two reads, the copies do not.
    snapshot_proc_file("kpagecount", frozen_proc / "kpagecount")
    with KPageFlags(proc_root=str(frozen_proc)) as kf:
        top = kf.max_pfn()
        rng = random.Random(7)
        pfns = [rng.randrange(top) for _ in range(300)] + [5, 6, 7, 5, top - 1]
        got = kf.read(pfns)
    assert top == (frozen_proc / "kpageflags").stat().st_size // 8
    assert got.dtype == np.int64
    assert got.tolist() == [pread_u64(frozen_proc / "kpageflags", p) for p in pfns]
    with KPageCount(proc_root=str(frozen_proc)) as kc:
        assert kc.read(np.array(pfns[:50])).tolist() == \
            [pread_u64(frozen_proc / "kpagecount", p) for p in pfns[:50]]
        assert kc.read(np.array([[5, 6], [7, 8]])).shape == (2, 2)


def test_max_pfn_is_the_file_end(is_root):
    with KPageFlags() as kf:
        top = kf.max_pfn()
        fd = os.open("/proc/kpageflags", os.O_RDONLY)
        try:
            assert len(os.pread(fd, 8, (top - 1) * 8)) == 8
            assert os.pread(fd, 8, top * 8) == b""
        finally:
            os.close(fd)
        with pytest.raises(InvalidArgument, match="beyond the end of physical memory"):
            kf.read([1, top])


def test_scan_chunks_cover_the_range_exactly(synthetic):
    raw = np.fromfile(synthetic / "kpageflags", dtype=np.int64)
    with KPageFlags(proc_root=str(synthetic)) as kf:
        assert kf.max_pfn() == len(raw)
        chunks = list(kf.scan(1000, 10_000, chunk=4096))
        assert [c[0] for c in chunks] == [1000, 5096, 9192]
        assert [len(c[1]) for c in chunks] == [4096, 4096, 1808]
        assert np.array_equal(np.concatenate([c[1] for c in chunks]), raw[1000:11_000])
        assert chunks[0][1] is not chunks[1][1]  # caller may keep each chunk
        assert not np.shares_memory(chunks[0][1], chunks[1][1])
        tail = list(kf.scan(len(raw) - 10))
        assert sum(len(c) for _, c in tail) == 10
        assert np.array_equal(np.concatenate([c for _, c in tail]), raw[-10:])
        # A count reaching past the end stops there.
        assert np.array_equal(np.concatenate([c for _, c in kf.scan(12_000, 1000, chunk=100)]),
                              raw[12_000:])


def test_summary_totals_agree_with_the_kernel(hugepage_pool):
    pool = hugepage_pool(3, 2048)
    total_2m = int((pool / "nr_hugepages").read_text())
    gigantic = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages")
    total_1g = int(gigantic.read_text()) if gigantic.exists() else 0
    with KPageFlags() as kf:
        rows = kf.summary()
    frames = kpageflags_frames()
    assert sum(r.pages for r in rows) == frames
    assert sum(r.bytes for r in rows) == frames * PAGE
    assert len({r.flags for r in rows}) == len(rows)
    assert [r.pages for r in rows] == sorted((r.pages for r in rows), reverse=True)
    # Every hugetlb page has one head frame flagged HUGE|COMPOUND_HEAD: the pool totals.
    heads = sum(r.pages for r in rows if r.flags & KPF.HUGE and r.flags & KPF.COMPOUND_HEAD)
    assert heads == total_2m + total_1g


def test_summaries_of_a_snapshot_count_like_numpy(frozen_proc):
    """summary(), and summarize() of scan() chunks, over a copy of the live file: the same
    table as numpy's count of the copy's bytes."""
    raw = np.fromfile(frozen_proc / "kpageflags", dtype=np.int64)
    with KPageFlags(proc_root=str(frozen_proc)) as kf:
        assert {r.flags: r.pages for r in kf.summary()} == unique_counts(raw)
        chunked = summarize(c for _, c in kf.scan(0, 200_000, chunk=7_000))
        assert {r.flags: r.pages for r in chunked} == unique_counts(raw[:200_000])
        part = kf.summary(123_457, 300_001)
        assert {r.flags: r.pages for r in part} == unique_counts(raw[123_457:423_458])


def test_summarize_counts_like_numpy_unique():
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([0, 0x400, 0x28, 1 << 33, 0x28 | (1 << 40)], dtype=np.int64), 50_000)
    values = np.concatenate([values, np.arange(10_000, dtype=np.int64) << 20])  # force table growth
    rows = summarize(values)
    uniq, counts = np.unique(values, return_counts=True)
    assert {r.flags: r.pages for r in rows} == dict(zip(uniq.tolist(), counts.tolist()))
    assert rows[0].names == describe(rows[0].flags)


def test_kpagecgroup_is_our_memory_cgroup(is_root):
    buf, addr = anonymous(PAGE)
    pfn = physmem.virt_to_phys(addr) // PAGE
    ino = KPageCgroup().read(pfn)
    # Independent: the inode of this process's memory cgroup directory.
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if line.split(":")[1] == "memory"]
    if v1:
        directory = Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/")
    else:
        directory = Path("/sys/fs/cgroup") / lines[0].split(":", 2)[2].lstrip("/")
    assert ino == directory.stat().st_ino
    buf.close()


@pytest.mark.parametrize("bad", [-1, [1, -2], [0.5], "x", 1 << 56])
def test_bad_pfns(synthetic, bad):
    with KPageFlags(proc_root=str(synthetic)) as kf, pytest.raises(InvalidArgument):
        kf.read(bad)


def test_bad_scan_arguments(synthetic):
    with KPageFlags(proc_root=str(synthetic)) as kf:
        # Non-integers and values beyond 64 bits: InvalidArgument, never a float PFN
        # truncated (1.5 used to be read as 1) or a raw OverflowError from cffi.
        for kwargs in ({"start": -1}, {"count": -5}, {"chunk": 0}, {"start": 1.5},
                       {"count": 2.0}, {"chunk": 8.0}, {"start": True}, {"start": "0"},
                       {"start": 2**64}, {"count": 2**64}, {"chunk": 2**64}):
            with pytest.raises(InvalidArgument):
                next(kf.scan(**kwargs))
            with pytest.raises(InvalidArgument):
                kf.summary(**{k: v for k, v in kwargs.items() if k != "chunk"} or {"start": -1})
        for args in ((1.5,), (0, 1.5), (2**64, 1), (-1, 1)):
            with pytest.raises(InvalidArgument):
                kf.summary(*args)
    kf.close()
    with pytest.raises(InvalidArgument, match="closed"):
        kf.read([1])


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        KPageFlags(proc_root=str(tmp_path))
    assert str(tmp_path / "kpageflags") in str(err.value)


def test_bulk_reads_release_the_gil(is_root):
    """A whole-memory read in one thread must not stall Python code in another."""
    import threading
    import time

    from physmem._raw import lib, u64_buffer

    with KPageFlags() as kf:
        total = kf.max_pfn()
        buf = np.empty(total, dtype=np.uint64)
        buf[:] = 0
        spans: list[float] = []

        def reader() -> None:
            t0 = time.perf_counter()
            lib.pm_pread_u64(kf.fileno(), 0, total, u64_buffer(buf))
            spans.append(time.perf_counter() - t0)

        thread = threading.Thread(target=reader)
        last, worst, ticks = time.perf_counter(), 0.0, 0
        thread.start()  # timed from before the start: the read may begin at once
        while thread.is_alive():
            now = time.perf_counter()
            worst, last, ticks = max(worst, now - last), now, ticks + 1
        thread.join()
    assert spans[0] > 0.05, "the read was too short to tell"
    assert ticks > 1000, "this thread did not run while the read went on"
    assert worst < spans[0] / 3, f"Python stalled {worst:.3f} s of a {spans[0]:.3f} s read"


def test_start_beyond_the_last_pfn_names_it(is_root):
    # Independent end of the file: the first PFN whose 8-byte pread returns nothing.
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        lo, hi = 0, 1  # lo reads, hi does not
        while os.pread(fd, 8, hi * 8):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if os.pread(fd, 8, mid * 8) else (lo, mid)
        last = lo
    finally:
        os.close(fd)
    with KPageFlags() as kf:
        for start in (last + 1, last + 1000, 99999999999999, (1 << 55) + 5, 2**64 - 1):
            for call in (lambda: kf.summary(start, 10), lambda: next(kf.scan(start, 10)),
                         lambda: kf.summary(start, 10, progress=lambda done, total: None),
                         lambda: kf.summary(start)):
                with pytest.raises(InvalidArgument) as err:
                    call()
                assert f"beyond the last PFN ({last:#x})" in str(err.value)
        # The last frame itself is fine, and a count reaching past the end stops there.
        assert sum(r.pages for r in kf.summary(last, 10)) == 1
        assert kf.summary(last + 1, 0) == []


def test_describe_takes_only_integers():
    assert describe(np.int64(1 << 10)) == ("BUDDY",)
    for bad in (1.5, 1.0, -1, 2**64, "1", True, None):
        with pytest.raises(InvalidArgument, match="flags"):
            describe(bad)  # type: ignore[arg-type]


def test_summarize_refuses_what_is_not_flag_words(synthetic):
    # 1.5 used to be counted as flags 1 (LOCKED): a silent wrong table.
    for bad in (np.array([1.5, 2.0]), [np.array([1.0])], np.array(["a"]), np.array([True])):
        with pytest.raises(InvalidArgument, match="integer array"):
            summarize(bad)
    assert [(r.flags, r.pages) for r in summarize([np.array([[4, 4], [1, 4]])])] == [(4, 3), (1, 1)]
    with KPageFlags(proc_root=str(synthetic)) as kf, \
            pytest.raises(InvalidArgument, match="progress"):
        kf.summary(0, 10, progress=5)  # type: ignore[arg-type]
