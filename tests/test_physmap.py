"""physmem.analysis.physmap and ``physmem map`` against independent reads of /proc/kpageflags."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from physmem.analysis import physmap
from physmem.analysis.physmap import CellMap, PageClass, cell_map, classify, free_mask

from conftest import (PAGE, anonymous, kpageflags_frames, kpageflags_marks_free_tails, run_physmem,
                      run_physmem_frozen, settled)

# Bit numbers from Documentation/admin-guide/mm/pagemap.rst and kernel-page-flags.h,
# written out here so the rules below do not lean on physmem's KPF.
BIT = {"UPTODATE": 3, "DIRTY": 4, "LRU": 5, "SLAB": 7, "WRITEBACK": 8, "BUDDY": 10, "MMAP": 11,
       "ANON": 12, "SWAPCACHE": 13, "HUGE": 17, "UNEVICTABLE": 18, "NOPAGE": 20, "PGTABLE": 26,
       "RESERVED": 32, "MAPPEDTODISK": 34, "PRIVATE": 35}


def has(value: int, *names: str) -> bool:
    return any(value >> BIT[n] & 1 for n in names)


def rule(value: int) -> PageClass:
    """The documented classification, one value at a time, strongest rule first."""
    if has(value, "NOPAGE"):
        return PageClass.HOLE
    if has(value, "HUGE"):
        return PageClass.HUGETLB
    if has(value, "BUDDY"):
        return PageClass.FREE
    if has(value, "SLAB"):
        return PageClass.SLAB
    if has(value, "PGTABLE"):
        return PageClass.PGTABLE
    if has(value, "RESERVED"):
        return PageClass.RESERVED
    if has(value, "ANON"):
        return PageClass.ANON
    if has(value, "LRU", "MMAP", "UPTODATE", "DIRTY", "WRITEBACK", "SWAPCACHE", "UNEVICTABLE",
           "MAPPEDTODISK", "PRIVATE"):
        return PageClass.FILE
    return PageClass.NOFLAGS if value == 0 else PageClass.OTHER


def read_flags(path: str | os.PathLike = "/proc/kpageflags") -> np.ndarray:
    """A kpageflags file whole, with plain os.pread, 8 MiB at a time."""
    fd = os.open(path, os.O_RDONLY)
    parts, off = [], 0
    try:
        while data := os.pread(fd, 8 << 20, off):
            parts.append(np.frombuffer(data, dtype="<u8"))
            off += len(data)
    finally:
        os.close(fd)
    return np.concatenate(parts).astype(np.int64)


def zone_starts() -> list[int]:
    """The first PFN of every zone that spans memory, from a plain read of /proc/zoneinfo."""
    starts, spanned = [], 0
    for line in open("/proc/zoneinfo"):
        w = line.split()
        if w[:1] == ["spanned"]:
            spanned = int(w[1])
        elif w[:1] == ["start_pfn:"] and spanned:
            starts.append(int(w[1]))
    return starts


def iomem_ram() -> list[tuple[int, int]]:
    out = []
    for line in open("/proc/iomem"):
        if not line[0].isspace() and line.rstrip().endswith(": System RAM"):
            lo, hi = line.split(" :")[0].split("-")
            out.append((int(lo, 16) // PAGE, (int(hi, 16) + 1) // PAGE))
    return out


def expected_classes(flags: np.ndarray, first_pfn: int = 0) -> np.ndarray:
    values, where = np.unique(flags, return_inverse=True)
    cls = np.array([rule(v) for v in values.tolist()], dtype=np.uint8)[where.reshape(-1)]
    ranges = iomem_ram()
    if not ranges:  # unprivileged iomem shows zeros: then every frame counts as RAM
        return cls
    ram = np.zeros(len(flags), dtype=bool)
    for lo, hi in ranges:
        a, b = max(lo - first_pfn, 0), min(hi - first_pfn, len(flags))
        if a < b:
            ram[a:b] = True
    cls[~ram] = PageClass.HOLE
    return cls


def merge_unmanaged(counts: np.ndarray) -> np.ndarray:
    """UNMANAGED is NOFLAGS told apart by zone accounting: compare the two as one."""
    out = counts.astype(np.int64).copy()
    out[..., PageClass.NOFLAGS] += out[..., PageClass.UNMANAGED]
    out[..., PageClass.UNMANAGED] = 0
    return out


def test_classify_agrees_with_the_rules_on_every_live_value_and_corners(kpageflags_snapshot):
    values = set(np.unique(read_flags(kpageflags_snapshot)).tolist())
    for a in BIT.values():
        for b in BIT.values():
            values.add((1 << a) | (1 << b))
    values |= {0, 1 << 22, 1 << 23}  # THP alone, OFFLINE alone: OTHER
    arr = np.array(sorted(values), dtype=np.int64)
    assert classify(arr).tolist() == [rule(v) for v in arr.tolist()]
    assert classify(arr.view(np.uint64)).tolist() == classify(arr).tolist()


def independent_cells(cls: np.ndarray, cp: int) -> np.ndarray:
    """Pages per class of each ``cp``-frame cell, from ``expected_classes``."""
    pad = np.full(-len(cls) % cp, 255, dtype=np.int64)
    return np.stack([(np.concatenate((cls, pad)).reshape(-1, cp) == c).sum(axis=1)
                     for c in PageClass], axis=1)


# 512: a pageblock; 3: cells that straddle free blocks; 100_000: cells larger than a scan
# chunk, which straddle chunk boundaries and add up across them. The flags come as an array
# (``flags=``) or are read from the file by the parallel reader (``proc_root=``); either way
# from a snapshot, which the test reads too: live frames change between any two reads, and
# a comparison of two readings taken apart failed on a busy machine (17 of 204 cells).
@pytest.mark.parametrize("cp,source", [(512, "proc_root"), (3, "flags"), (100_000, "proc_root")])
def test_snapshot_cells_equal_an_independent_count_exactly(frozen_proc, cp, source):
    flags = read_flags(frozen_proc / "kpageflags")
    cm = cell_map(cp * PAGE, flags=flags) if source == "flags" else \
        cell_map(cp * PAGE, proc_root=str(frozen_proc), threads=3)
    assert cm.frames == len(flags) == kpageflags_frames()   # every frame of the live file
    assert cm.counts.sum() == len(flags)
    assert len(cm.counts) == -(-len(flags) // cp)
    if not kpageflags_marks_free_tails():   # the head-only rule: tested on made-up flags below
        pytest.skip("kpageflags marks only the head of a free block before Linux 4.6")
    assert cm.free_tails_marked
    cls = expected_classes(flags)
    np.testing.assert_array_equal(merge_unmanaged(cm.counts), independent_cells(cls, cp))
    # UNMANAGED ranges are whole cells whose frames all read 0 or are holes.
    for lo, hi in cm.unmanaged.tolist():
        assert lo % cp == 0 and hi % cp == 0
        assert np.isin(cls[lo:hi], (PageClass.NOFLAGS, PageClass.HOLE)).all()
    assert [z.start_pfn for z in cm.zones] == zone_starts()


def test_free_total_agrees_with_buddyinfo(is_root):
    settled(_free_total_agrees)


def _free_total_agrees() -> None:
    from physmem import proc
    before = sum(b.free_pages for b in proc.buddyinfo())
    cm = cell_map()
    after = sum(b.free_pages for b in proc.buddyinfo())
    free = int(cm.pages_per_class()[PageClass.FREE])
    # Tolerance: 2% of free memory, plus how far buddyinfo itself moved during the scan.
    slack = 0.02 * max(before, after) + abs(after - before)
    assert min(before, after) - slack <= free <= max(before, after) + slack, (before, free, after)


def test_free_runs_add_up_to_the_free_pages(is_root):
    settled(_free_runs_add_up)


def _free_runs_add_up() -> None:
    from physmem import proc
    runs = physmap.free_runs()
    free = sum(b.free_pages for b in proc.buddyinfo())
    assert abs(int(runs[:, 1].sum()) - free) <= 0.02 * free
    assert (runs[1:, 0] > runs[:-1, 0] + runs[:-1, 1]).all()   # sorted, disjoint, not touching


def test_head_only_kernels_extend_heads_over_aligned_zero_tails():
    buddy, lru = 1 << BIT["BUDDY"], 1 << BIT["LRU"]
    f = np.zeros(64, dtype=np.int64)
    f[8] = buddy            # order-3 block 8..15 (tails read 0)
    f[16] = lru             # allocated
    f[17] = buddy           # odd PFN: order 0 whatever follows
    f[32] = buddy           # order 4 would be 32..47, but 40 is in use: order 3
    f[40] = lru
    expect = np.zeros(64, dtype=bool)
    expect[8:16] = expect[17] = expect[32:40] = True
    np.testing.assert_array_equal(free_mask(f, 0, tails=False, max_order=10), expect)
    # max_order caps the growth; the first PFN shifts alignment.
    np.testing.assert_array_equal(free_mask(f, 0, tails=False, max_order=2)[8:16],
                                  [True] * 4 + [False] * 4)
    assert free_mask(f, 1, tails=False, max_order=10)[8:16].sum() == 1
    np.testing.assert_array_equal(free_mask(f, 0, tails=True, max_order=10), f == buddy)


def test_pid_overlay_covers_the_frames_of_our_buffer(is_root):
    buf, addr = anonymous(4 << 20)
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    raw = np.frombuffer(os.pread(fd, (4 << 20) // PAGE * 8, addr // PAGE * 8), dtype="<u8")
    os.close(fd)
    pfns = (raw & ((1 << 55) - 1))[(raw >> 63) == 1].astype(np.int64)
    cm = cell_map(pid=os.getpid())
    assert cm.pid == os.getpid()
    for cell in np.unique(pfns // cm.cell_pages):
        assert cm.pid_pages[cell] >= (pfns // cm.cell_pages == cell).sum()
    assert cm.pid_pages.sum() >= len(pfns)
    buf.close()


def test_bad_cell_size_is_a_usage_error(is_root):
    r = run_physmem("map", "--cell", "1000")
    assert r.returncode == 2 and "page size" in r.stderr


@pytest.mark.parametrize("cell", ["1T", "99999999999999G", "1P"])
def test_a_cell_larger_than_memory_is_refused_in_one_line(is_root, cell):
    r = run_physmem("map", "--cell", cell)
    assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    if cell == "99999999999999G":   # beyond 2**64 bytes: refused by the size parser itself
        assert "too large" in r.stderr
        return
    assert "larger than all physical memory" in r.stderr
    assert f"{kpageflags_frames()} frames" in r.stderr


def test_a_cell_of_all_memory_is_one_cell_and_memory_stays_bounded(is_root):
    import tracemalloc

    frames = kpageflags_frames()
    cell = 1 << (frames * PAGE).bit_length() - 1   # the largest power of two that fits

    def peak_of(cell_bytes: int) -> tuple[CellMap, int]:
        tracemalloc.start()
        try:
            return cell_map(cell_bytes), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    cm, peak = peak_of(cell)
    assert len(cm.counts) == -(-frames * PAGE // cell) and cm.counts.sum() == frames
    assert int(cm.cells_per_class().sum()) == len(cm.counts)
    # Memory does not grow with the cell (np.lcm once sized buffers by it): a cell of all
    # memory costs what a 2 MiB cell costs - the one parallel read of the flags, 8 bytes a
    # frame, plus per-chunk work - within a small margin.
    _, small = peak_of(2 << 20)
    assert peak < frames * 8 * 1.5 and peak < small * 1.2, (peak, small)
    r = run_physmem("map", "--cell", str(frames * PAGE))
    assert r.returncode == 0 and "\n1 cell of" in r.stdout and "1 cells" not in r.stdout


def test_cli_json_counts_a_snapshot_as_the_rules_do(kpageflags_snapshot):
    """``physmem map --json`` run on a snapshot of kpageflags (bound over /proc/kpageflags in
    the command's own mount namespace), against the rules applied to the same bytes."""
    r = run_physmem_frozen({"kpageflags": kpageflags_snapshot}, "map", "--json", "--cell", "64M")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    flags = read_flags(kpageflags_snapshot)
    cp = (64 << 20) // PAGE
    assert data["cell_bytes"] == 64 << 20 and data["frames"] == len(flags)
    assert data["cells"] == -(-len(flags) // cp) == len(data["dominant"])
    assert [c["name"] for c in data["classes"]] == [c.name.lower() for c in PageClass]
    pages = np.zeros(len(PageClass), dtype=np.int64)
    for c in data["classes"]:
        pages[c["code"]] = c["pages"]
        assert c["bytes"] == c["pages"] * PAGE
    assert merge_unmanaged(pages).tolist() == independent_cells(expected_classes(flags), cp).sum(axis=0).tolist()
    assert [z["start_pfn"] for z in data["zones"]] == zone_starts()


def test_cli_text_lists_the_states(is_root):
    r = run_physmem("map")
    assert r.returncode == 0, r.stderr
    assert "free (buddy)" in r.stdout and "one character =" in r.stdout


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_png_is_written(is_root, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "map.png"
    r = run_physmem("map", "--png", str(out), "--pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    w, h = _png_size(out)
    assert 800 <= w <= 4000 and 400 <= h <= 5000
    import matplotlib.image
    img = matplotlib.image.imread(out)
    assert img.shape[:2] == (h, w)
    assert len(np.unique(img.reshape(-1, img.shape[2])[:, :3], axis=0)) > 8   # not blank


def test_png_without_matplotlib_says_how_to_get_it(is_root, tmp_path):
    from conftest import python_env
    import subprocess
    env, cwd = python_env()
    code = ("import sys; sys.modules['matplotlib'] = None; from physmem.cli import main; "
            f"sys.exit(main(['map', '--png', {str(tmp_path / 'x.png')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)
    assert r.returncode == 6
    assert "pip install 'physmem[plot]'" in r.stderr
    assert not (tmp_path / "x.png").exists()
