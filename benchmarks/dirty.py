"""Dirty-page tracking of 2 GiB of 4 KiB pages against the kernel's floor: a C program doing
the same ioctls in a tight loop (benchmarks/peers/dirty_ref.c: userfaultfd asynchronous
write protection, PAGEMAP_SCAN resumed at walk_end into one preallocated vector).

Both contenders track one 2 GiB anonymous mapping (every page written once, transparent huge
pages off), so the same page tables are walked: each registers and protects it in turn, and
the C side then reads the registration physmem's tracker made. In each round both see the
same pages written (each writes them before its own collect), and their answers are compared. Contenders are self-timed around the measured step only (writing the pages and
closing are not timed), the same number of rounds, interleaved in shuffled order.
Targets, medians: ``collect()`` with 10% of the pages written <= 1.2x the C
reference; write-protect enable (``DirtyTracker(m)``: register and protect all) <= 1.2x;
scan of a clean range <= 1.2x. Reported: the extra cost of a first write in an interval,
``collect()`` throughput at 1% and 50% written, and soft-dirty where the kernel has it.

    python benchmarks/dirty.py [--gib 2] [--rounds 15]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from typing import Callable, TypeVar

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Stats, Verdicts, info, measure, peer_path, rounds  # noqa: E402

from physmem import Mapping  # noqa: E402
from physmem.mapping import PAGE_SIZE, Advice  # noqa: E402
from physmem.track import DirtyTracker, soft_dirty_supported  # noqa: E402

T = TypeVar("T")


def load_reference(path: str) -> ctypes.CDLL:
    ref = ctypes.CDLL(path, use_errno=True)
    for name in ("dirty_ref_open", "dirty_ref_attach"):
        getattr(ref, name).restype = ctypes.c_void_p
        getattr(ref, name).argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64]
    for name in ("dirty_ref_protect", "dirty_ref_close"):
        getattr(ref, name).restype = ctypes.c_long
        getattr(ref, name).argtypes = [ctypes.c_void_p]
    ref.dirty_ref_collect.restype = ctypes.c_long
    ref.dirty_ref_collect.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ref.dirty_ref_regions.restype = ctypes.POINTER(ctypes.c_uint64)
    ref.dirty_ref_regions.argtypes = [ctypes.c_void_p]
    ref.dirty_ref_store.restype = ctypes.c_uint64
    ref.dirty_ref_store.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    return ref


class Reference:
    """The C tracker over one mapping."""

    def __init__(self, ref: ctypes.CDLL, m: Mapping, cap: int) -> None:
        self.ref, self.m, self.cap = ref, m, cap
        self.h: int | None = None

    def open(self) -> None:
        """Register the mapping and write-protect it."""
        self.h = self._handle(self.ref.dirty_ref_open)
        self.check(self.ref.dirty_ref_protect(self.h), "protect")

    def attach(self) -> None:
        """Read the mapping that physmem's tracker registered."""
        self.h = self._handle(self.ref.dirty_ref_attach)

    def _handle(self, make: Callable[[int, int, int], int]) -> int:
        h = make(self.m.address, self.m.size, self.cap)
        if not h:
            raise SystemExit(f"{make.__name__}: {os.strerror(ctypes.get_errno())}")
        return h

    def close(self) -> None:
        self.check(self.ref.dirty_ref_close(self.h), "close")
        self.h = None

    def collect(self) -> int:
        return self.check(self.ref.dirty_ref_collect(self.h, 1), "collect")

    def ranges(self, n: int) -> np.ndarray:
        """The last collect's ranges, as offsets from the mapping's start."""
        vec = np.ctypeslib.as_array(self.ref.dirty_ref_regions(self.h), shape=(n, 3))
        return vec[:, :2] - np.uint64(self.m.address)

    @staticmethod
    def check(ret: int, what: str) -> int:
        if ret < 0:
            raise SystemExit(f"dirty_ref {what}: {os.strerror(-ret)}")
        return ret


def timed(step: Callable[[], T]) -> tuple[T, float]:
    """What ``step`` returned, and the seconds it took."""
    t = time.perf_counter()
    out = step()
    return out, time.perf_counter() - t


def versus(ours: tuple[str, Callable[[], float]], theirs: tuple[str, Callable[[], float]],
           rounds: int) -> tuple[Stats, Stats]:
    """Self-timed rounds of physmem's contender and the reference's, interleaved."""
    s = measure(dict((ours, theirs)), rounds, self_timed=True)
    return s[ours[0]], s[theirs[0]]


def written_mapping(size: int) -> tuple[Mapping, np.ndarray]:
    m = Mapping.anonymous(size)
    m.advise(Advice.NOHUGEPAGE)  # 4 KiB pages, as the targets are stated
    a = m.array(np.uint8)
    a[::PAGE_SIZE] = 1
    return m, a


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=2)
    ap.add_argument("--rounds", type=int, default=rounds(15))
    args = ap.parse_args()
    size = int(args.gib * (1 << 30)) // PAGE_SIZE * PAGE_SIZE
    npages = size // PAGE_SIZE
    v = Verdicts(f"dirty: tracking {size >> 20} MiB of 4 KiB pages ({npages} pages)")
    print(f"  {os.cpu_count()} CPUs, kernel {os.uname().release}")
    path = peer_path("libdirty_ref.so")
    if path is None:
        v.skip("every target", "the C reference (libdirty_ref.so) is not built")
        return v.finish()
    ref_lib = load_reference(path)
    m, a = written_mapping(size)
    ref = Reference(ref_lib, m, npages // 2 + 1)  # room for the worst case: every other page
    rng = np.random.default_rng(0)

    # -- write-protect enable: register and protect 2 GiB whose pages are all written ----
    def enable_physmem() -> float:
        tracker, dt = timed(lambda: DirtyTracker(m))
        tracker.close()
        return dt

    def enable_reference() -> float:
        _, dt = timed(ref.open)
        ref.close()
        return dt

    print("  [write-protect enable: register + protect every page]")
    v.ratio("write-protect enable / C reference", *versus(
        ("physmem DirtyTracker(m)", enable_physmem),
        ("C reference: register + PAGEMAP_SCAN(WP_MATCHING)", enable_reference),
        args.rounds * 2), at_most=1.2)

    tracker = DirtyTracker(m)
    ref.attach()
    mismatches = 0
    compared = 0

    def same_answer(ours: np.ndarray, theirs: np.ndarray) -> None:
        nonlocal mismatches, compared
        compared += 1
        if not np.array_equal(ours, theirs):
            mismatches += 1

    # -- scan of a clean range ----------------------------------------------------------
    def clean_physmem() -> float:
        got, dt = timed(tracker.collect)
        if len(got):
            raise SystemExit("physmem saw writes in a clean range")
        return dt

    def clean_reference() -> float:
        n, dt = timed(ref.collect)
        if n:
            raise SystemExit("the C reference saw writes in a clean range")
        return dt

    print("  [scan of a clean range: nothing written since the last collect]")
    v.ratio("scan clean / C reference", *versus(("physmem collect()", clean_physmem),
                                                ("C reference: PAGEMAP_SCAN loop",
                                                 clean_reference), args.rounds * 3),
            at_most=1.2)

    # -- collect with a share of the pages written ----------------------------------------
    def dirty(share: float) -> tuple[Stats, Stats]:
        # Round i writes the same random pages on both sides; the answers are compared after.
        sets = [np.sort(rng.choice(npages, int(npages * share), replace=False))
                for _ in range(args.rounds)]
        answers: dict[str, list[np.ndarray]] = {"physmem": [], "C": []}

        def physmem_side() -> float:
            chosen = sets[len(answers["physmem"])]
            a[chosen * PAGE_SIZE] += 1
            got, dt = timed(tracker.collect)
            answers["physmem"].append(
                np.stack([got["start"], got["end"]], axis=1) - np.uint64(m.address))
            return dt

        def reference_side() -> float:
            chosen = sets[len(answers["C"])]
            a[chosen * PAGE_SIZE] += 1
            n, dt = timed(ref.collect)
            answers["C"].append(ref.ranges(n).copy())
            return dt

        stats = versus(("physmem collect()", physmem_side),
                       ("C reference: PAGEMAP_SCAN loop", reference_side), args.rounds)
        for ours, theirs in zip(answers["physmem"], answers["C"]):
            same_answer(ours, theirs)
        return stats

    results: dict[float, tuple[Stats, Stats]] = {}
    for share in (0.10, 0.01, 0.50):
        print(f"  [collect with {share:.0%} of the pages written at random]")
        results[share] = dirty(share)
    v.ratio("collect() at 10% written / C reference", *results[0.10], at_most=1.2)
    for share, (p, c) in results.items():
        info(f"collect() at {share:.0%} written: tracked GiB/s (C reference)",
             f"{size / p.median / (1 << 30):,.0f} ({size / c.median / (1 << 30):,.0f})")
        info(f"collect() at {share:.0%} written: written pages/s",
             f"{npages * share / p.median / 1e6:,.1f} million "
             f"({p.median / c.median:.2f}x the reference's time)")
    v.check("collect() ranges == the C reference's, same pages written", mismatches == 0,
            f"{compared - mismatches}/{compared} equal", "all equal")

    # -- the tracked process's side: the cost of a first write ----------------------------
    firsts, agains = [], []
    for _ in range(args.rounds):
        tracker.reset()
        firsts.append(ref_lib.dirty_ref_store(m.address, npages, PAGE_SIZE) / npages)
        agains.append(ref_lib.dirty_ref_store(m.address, npages, PAGE_SIZE) / npages)
    first, again = float(np.median(firsts)), float(np.median(agains))
    info("a store to each page, first in the interval (tracked)", f"{first:,.0f} ns/page")
    info("the same stores again (page writable: no fault)", f"{again:,.0f} ns/page")
    info("extra cost of a first write in an interval", f"{first - again:,.0f} ns/page")
    tracker.close()
    ref.close()

    if soft_dirty_supported():
        m_sd, a_sd = written_mapping(size)
        sd = DirtyTracker(m_sd, method="soft-dirty")

        def soft() -> float:
            chosen = rng.choice(npages, npages // 10, replace=False)
            a_sd[chosen * PAGE_SIZE] += 1
            return timed(sd.collect)[1]

        s = measure({"physmem collect(), soft-dirty": soft}, args.rounds, self_timed=True)
        info("soft-dirty collect() at 10% / userfaultfd collect()",
             f"{s['physmem collect(), soft-dirty'].median / results[0.10][0].median:.2f}x")
        sd.close()
        del a_sd
        m_sd.close()
    else:
        v.skip("against soft-dirty", f"the running kernel ({os.uname().release}) is built "
               "without CONFIG_MEM_SOFT_DIRTY")
    del a
    m.close()
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
