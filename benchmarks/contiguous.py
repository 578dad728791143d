"""Benchmark: physically contiguous memory - yield against an independent pagemap read, DPDK's
EAL side by side, speed against faulting in hugepages, reserve=True, and virt_to_phys.

Run as root, under the machine lock on a shared machine (it changes the 2 MiB pool):
``flock /tmp/physmem-machine.lock python benchmarks/contiguous.py``. The pool is grown to 512
free pages for the run and put back afterwards, also when the run is stopped by a signal.
Peers from ``benchmarks/peers/setup.sh`` (``dpdk_memzone``). Every timed contender runs the
same number of rounds, interleaved in shuffled order.

DPDK is compared call for call: each contender is one process per round that starts once
(``rte_eal_init``; for physmem, importing ``physmem.dma`` in a fresh interpreter), shown
apart, then asks for each size three times. Each DPDK mode is compared with physmem's way
of the same kind: ``--in-memory`` maps pages on request, as ``allocate_contiguous`` does;
``--legacy-mem`` maps every free pool page at start-up and its calls only carve that heap, as
``DmaPool.alloc`` carves the buffer mapped at its start (256 MiB, aligned as its size), so
legacy is compared with DmaPool; for the largest zone, whose bisection carves the heap
legacy's start-up mapped and zeroed, legacy is charged that start-up's memory work (its
rte_eal_init less in-memory's). DPDK pins nothing, so physmem is asked for pin=False in these
rows; what a pin costs is its own row. reserve=True is timed in two states of free
memory made before each round: fresh pool pages adjacent, and fresh pool pages scattered
(free 2 MiB blocks whose buddies are held, ahead of the larger blocks), each against a
fault-in of as many pages from a pool that holds them, with the kernel's own cost of the
state beside it (the floor).
Targets: yield, DPDK and virt_to_phys as printed; reserve=True adjacent
<= 1.5x and scattered <= 3x a fault-in.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    Stats, Verdicts, info, measure, need_root, peer_path, rounds, run_command)

import physmem  # noqa: E402
from physmem._raw import mapping as lib  # noqa: E402  (MAP_HUGETLB from the kernel headers)
from physmem.analysis.contiguity import drain_per_cpu_lists  # noqa: E402
from physmem.dma import (  # noqa: E402
    DmaPool, allocate_contiguous, allocate_scatter, longest_contiguous)
from physmem.errors import ContiguityUnavailable, DmaPoolExhausted, PinUnavailable  # noqa: E402
from physmem.hugepages import demote, release_free, reserve  # noqa: E402
from physmem.hugepages._ledger import pool_lock  # noqa: E402  (raw pool writes compose)

MB2 = 2 << 20
PAGE = mmap.PAGESIZE
POOL_DIR = "/sys/kernel/mm/hugepages/hugepages-2048kB"
WANT_FREE = 512
MAX_POOL = 1024  # pages: the most the run grows the pool to, looking for a 256 MiB run
PFN_MASK = (1 << 55) - 1
PRESENT = 1 << 63


def pool_count(name: str) -> int:
    with open(f"{POOL_DIR}/{name}") as f:
        return int(f.read())


def fault_in(count: int) -> mmap.mmap:
    """``count`` hugepages faulted in the plain way: an anonymous MAP_HUGETLB|MAP_POPULATE
    mapping (the kernel takes the pages from the pool and zeroes them)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | lib.MAP_HUGETLB | lib.MAP_POPULATE
    return mmap.mmap(-1, count * MB2, flags=flags)


def address_of(m: mmap.mmap) -> int:
    return np.frombuffer(m, dtype=np.uint8).ctypes.data


def raw_pfns(fd: int, vaddrs: list[int]) -> list[int]:
    """Independent of physmem: one os.pread of /proc/self/pagemap per address."""
    out = []
    for va in vaddrs:
        entry = int.from_bytes(os.pread(fd, 8, va // PAGE * 8), "little")
        if not entry & PRESENT:
            raise RuntimeError(f"page at {va:#x} not present in pagemap")
        pfn = entry & PFN_MASK
        if pfn == 0:
            raise RuntimeError("pagemap shows PFN 0: not running as root?")
        out.append(pfn)
    return out


def independent_longest(fd: int) -> tuple[int, int, float]:
    """Fault in every free pool page, pread each one's pagemap entry, sort the PFNs and
    count the longest run of adjacent 2 MiB pages. Returns (bytes, pages, seconds to fault)."""
    free = pool_count("free_hugepages")
    t0 = time.perf_counter()
    m = fault_in(free)
    t = time.perf_counter() - t0
    try:
        base = address_of(m)
        pfns = sorted(raw_pfns(fd, [base + i * MB2 for i in range(free)]))
    finally:
        m.close()
    step = MB2 // PAGE
    best = run = 1
    for a, b in zip(pfns, pfns[1:]):
        run = run + 1 if b == a + step else 1
        best = max(best, run)
    return best * MB2, free, t


def try_allocate(size: int, pin: bool | str = "auto") -> tuple[bool, int, float]:
    """(obtained, bytes, seconds for the allocation alone); the buffer is closed after."""
    t0 = time.perf_counter()
    try:
        buf = allocate_contiguous(size, pin=pin)
    except ContiguityUnavailable:
        return False, 0, time.perf_counter() - t0
    t = time.perf_counter() - t0
    got = buf.size
    buf.close()
    return True, got, t


# -- DPDK --------------------------------------------------------------------------------
@contextmanager
def hugetlbfs_mount() -> Iterator[str | None]:
    """A private 2 MiB hugetlbfs mount for --legacy-mem (unmounted after); None if refused."""
    d = tempfile.mkdtemp(prefix="physmem-bench-huge-")
    r = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  cannot mount hugetlbfs on {d}: {r.stderr.strip()}")
        os.rmdir(d)
        yield None
        return
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


class DpdkRun:
    """One run of dpdk_memzone (one process: EAL start-up once, then its calls), parsed from
    its output: the start-up, and per size each call's time and what it obtained."""

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.eal_init: float | None = None
        self.error = ""
        self.calls: list[tuple[int, bool, float]] = []  # (size asked, obtained, seconds)
        self.largest: tuple[int, float] | None = None

    def run(self) -> None:
        r = subprocess.run(self.cmd, capture_output=True, text=True, timeout=120)
        self.calls = []
        self.largest = None
        self.eal_init = None
        for line in r.stdout.splitlines():
            f = line.split()
            if f[0] == "eal_init":
                self.eal_init = float(f[1])
            elif f[0] == "zone":
                self.calls.append((int(f[1]), f[2] == "ok", float(f[3])))
            elif f[0] == "largest":
                self.largest = (int(f[1]), float(f[2]))
            elif f[0] == "eal_error":
                self.error = " ".join(f[1:])
        if r.returncode != 0 and not self.error:
            self.error = f"exit {r.returncode}"
        if self.error:
            errs = [ln for ln in r.stderr.splitlines() if "EAL" in ln]
            self.error = f"{self.error}; {errs[-1] if errs else r.stderr.strip()[-200:]}"


POOL_AHEAD = 256 << 20  # the largest size asked per call: a DmaPool block is at most its pool
PHYSMEM_STARTUP = ("import time; t = time.perf_counter(); import physmem.dma; "
                   "print(time.perf_counter() - t)")


def dpdk_side_by_side(v: Verdicts, n_rounds: int, calls: int = 3) -> None:
    """Per call against per call: in each round every contender is one process that starts
    once (DPDK: rte_eal_init; physmem: importing physmem.dma), then asks for each size
    ``calls`` times (each buffer freed before the next) and finds and takes the largest.
    Start-ups are shown apart; the verdicts compare calls. physmem runs in this process, so
    its start-up is timed in a fresh interpreter of its own, as often."""
    exe = peer_path("dpdk_memzone")
    sizes = [64 << 20, 256 << 20]
    if exe is None:
        v.skip("DPDK EAL memzones", "dpdk_memzone not built (benchmarks/peers/setup.sh)")
        return
    base = [exe, "--no-pci", "--iova-mode=pa", "-l", "0", "--log-level=lib.eal:error"]
    tail = ["--"] + [str(s) for s in sizes for _ in range(calls)] + ["0"]
    with hugetlbfs_mount() as hdir:
        modes = {"in-memory": DpdkRun(base + ["--in-memory"] + tail)}
        if hdir is not None:
            modes["legacy-mem"] = DpdkRun(base + ["--legacy-mem", "--huge-dir", hdir,
                                                  "--huge-unlink", "--file-prefix",
                                                  f"physmem_bench_{os.getpid()}"] + tail)
        else:
            v.skip("DPDK --legacy-mem", "no hugetlbfs mount could be made")
        times: dict[str, list[float]] = {}
        got: dict[str, list[int]] = {}
        free_seen: dict[str, set[int]] = {}

        def record(key: str, ok: bool, nbytes: int, t: float) -> None:
            got.setdefault(key, []).append(nbytes if ok else 0)
            if ok:
                times.setdefault(key, []).append(t)

        def physmem_round() -> None:
            out = run_command([sys.executable, "-c", PHYSMEM_STARTUP],
                              stdout=subprocess.PIPE).stdout
            times.setdefault("physmem startup", []).append(float(out))
            for s in sizes:
                for _ in range(calls):
                    # DPDK pins nothing; what physmem's pin costs is a row of its own.
                    ok, n, t = try_allocate(s, pin=False)
                    record(f"physmem {s >> 20}M", ok, n, t)
            # The largest: find it, then take it (DPDK's is a bisection of reserve calls).
            t0 = time.perf_counter()
            lc = longest_contiguous()
            ok, n, _ = try_allocate(lc, pin=False)
            record("physmem largest", ok, n, time.perf_counter() - t0)

        def physmem_pool_round() -> None:
            # legacy-mem's way: map memory ahead at start-up, then carve each call from it.
            # physmem's equivalent is a DmaPool over one contiguous buffer; its start-up maps
            # POOL_AHEAD (legacy-mem maps every free pool page), shown apart as legacy's is.
            t0 = time.perf_counter()
            try:
                # Aligned as its size, so that blocks up to that size fit (a DmaPool's largest
                # block is bounded by its start's physical alignment).
                buf = allocate_contiguous(POOL_AHEAD, align=POOL_AHEAD)
            except ContiguityUnavailable:
                for s in sizes:
                    for _ in range(calls):
                        record(f"physmem pool {s >> 20}M", False, 0, 0.0)
                return
            with buf:
                pool = DmaPool.from_buffer(buf)
                times.setdefault("physmem pool startup", []).append(time.perf_counter() - t0)
                try:
                    for s in sizes:
                        for _ in range(calls):
                            t0 = time.perf_counter()
                            try:
                                block = pool.alloc(s)
                            except DmaPoolExhausted:
                                record(f"physmem pool {s >> 20}M", False, 0, 0.0)
                                continue
                            record(f"physmem pool {s >> 20}M", True, block.size,
                                   time.perf_counter() - t0)
                            pool.free(block)
                finally:
                    pool.close()

        def dpdk_round(name: str) -> Callable[[], None]:
            def go() -> None:
                d = modes[name]
                d.run()
                if d.error:
                    return
                for size, ok, t in d.calls:
                    record(f"dpdk {name} {size >> 20}M", ok, size if ok else 0, t)
                if d.largest:
                    record(f"dpdk {name} largest", d.largest[0] > 0, d.largest[0], d.largest[1])
                if d.eal_init is not None:
                    times.setdefault(f"dpdk {name} startup", []).append(d.eal_init)
            return go

        contenders = {"physmem": physmem_round}
        if "legacy-mem" in modes:
            contenders["physmem pool"] = physmem_pool_round
        for name in modes:
            contenders[f"dpdk {name}"] = dpdk_round(name)

        def checked(name: str, fn: Callable[[], None]) -> Callable[[], None]:
            def go() -> None:
                free_seen.setdefault(name, set()).add(pool_count("free_hugepages"))
                fn()
            return go

        try:
            measure({k: checked(k, f) for k, f in contenders.items()}, n_rounds, show=False)
        finally:
            # --legacy-mem leaves its runtime directory (config, fbarray files) behind.
            shutil.rmtree(f"/var/run/dpdk/physmem_bench_{os.getpid()}", ignore_errors=True)
    print(f"  free pool pages before each contender's run: "
          f"{ {k: sorted(x) for k, x in free_seen.items()} } (the same pool state for each)")
    pool = max(max(x) for x in free_seen.values())
    info("start-up, once per process: physmem (import physmem.dma in a fresh interpreter)",
         Stats(tuple(times["physmem startup"])).show())
    for name, d in modes.items():
        if d.error:
            v.skip(f"DPDK {name}", f"EAL cannot initialise: {d.error}. It needs free 2 MiB "
                   "hugepages (and a hugetlbfs mount for --legacy-mem)")
            continue
        what = (f"maps, zeroes and sorts all {pool} free pool pages" if name == "legacy-mem"
                else "no memory until asked")
        info(f"start-up, once per process: DPDK {name} rte_eal_init ({what})",
             Stats(tuple(times[f"dpdk {name} startup"])).show())
    if "physmem pool startup" in times:
        info(f"start-up, once per process: physmem DmaPool({POOL_AHEAD >> 20} MiB) (maps "
             f"{POOL_AHEAD >> 21} pool pages ahead, for the legacy-mem way)",
             Stats(tuple(times["physmem pool startup"])).show())
    for label in [f"{s >> 20}M" for s in sizes] + ["largest"]:
        per = "per call" if label != "largest" else "find and take"
        p_key = f"physmem {label}"
        p_got = got.get(p_key, [0])
        p_stats = Stats(tuple(times[p_key])) if p_key in times else None
        info(f"physmem allocate_contiguous {label} ({per}): {min(p_got) >> 20}-"
             f"{max(p_got) >> 20} MiB", p_stats.show() if p_stats else "never obtained")
        if label != "largest" and "legacy-mem" in modes:
            pool_got = got.get(f"physmem pool {label}", [0])
            pool_key = f"physmem pool {label}"
            info(f"physmem DmaPool.alloc {label} ({per}): {min(pool_got) >> 20}-"
                 f"{max(pool_got) >> 20} MiB", Stats(tuple(times[pool_key])).show()
                 if pool_key in times else "never obtained")
        for name, d in modes.items():
            if d.error:
                continue
            # Call for call, each DPDK mode against physmem's way of the same kind: in-memory
            # maps on request as allocate_contiguous does; legacy-mem carves memory its
            # start-up mapped, as a DmaPool does.
            mine = f"physmem pool {label}" if name == "legacy-mem" and label != "largest" \
                else p_key
            p_got = got.get(mine, [0])
            p_stats = Stats(tuple(times[mine])) if mine in times else None
            key = f"dpdk {name} {label}"
            d_got = got.get(key, [0])
            d_stats = Stats(tuple(times[key])) if key in times else None
            info(f"DPDK {name} memzone {label} ({per}): {min(d_got) >> 20}-"
                 f"{max(d_got) >> 20} MiB", d_stats.show() if d_stats else "never obtained")
            # Call for call: whatever DPDK obtained, physmem obtained too (at least as much).
            covered = len(p_got) == len(d_got) and all(p >= dg for p, dg in zip(p_got, d_got))
            v.check(f"physmem obtains what DPDK {name} does, {label}", covered,
                    f"{sum(p > 0 for p in p_got)}/{len(p_got)} vs {sum(x > 0 for x in d_got)}"
                    f"/{len(d_got)}", "every call")
            if not (d_stats and p_stats):
                if p_stats:
                    info(f"  {label}: DPDK {name} never obtained it", "(no time to compare)")
                continue
            way = "DmaPool.alloc" if mine != p_key else "allocate_contiguous"
            if name == "legacy-mem" and label == "largest":
                # legacy-mem's bisection carves a heap its start-up mapped and zeroed, while
                # physmem's find and take maps and zeroes the run itself: legacy is charged
                # its start-up's memory work (its rte_eal_init less in-memory's, which has
                # none), round by round, so that both go from nothing mapped to the buffer.
                inits = times.get("dpdk legacy-mem startup", [])
                base = times.get("dpdk in-memory startup", [])
                if len(inits) == len(d_stats.samples) and base:
                    eal = statistics.median(base)
                    d_stats = Stats(tuple(t + i - eal for t, i in zip(d_stats.samples, inits)))
                    info("DPDK legacy-mem largest, with its start-up's memory work",
                         d_stats.show())
                    v.ratio(f"physmem {way} / DPDK {name} with its mapping, {label} ({per})",
                            p_stats, d_stats, at_most=1.0)
                    continue
            v.ratio(f"physmem {way} / DPDK {name}, {label} ({per})", p_stats, d_stats,
                    at_most=1.0)


# -- speed -------------------------------------------------------------------------------
def interleaved(contenders: dict[str, tuple[Callable[[], object], Callable[[], object],
                                           Callable[[object], None]]],
                rounds: int, seed: int | None = None) -> dict[str, Stats]:
    """The harness's measure() for contenders with an untimed setup before and teardown after
    their timed part: (setup, timed(), teardown(x))."""
    def staged(setup: Callable[[], object], fn: Callable[[], object],
               teardown: Callable[[object], None]) -> float:
        ctx = setup()
        try:
            t0 = time.perf_counter()
            x = fn()
            dt = time.perf_counter() - t0
            teardown(x)
        finally:
            if hasattr(ctx, "release"):
                ctx.release()
        return dt

    return measure({n: (lambda c=c: staged(*c)) for n, c in contenders.items()}, rounds,
                   seed=seed, self_timed=True)


def grow_for_run(res: physmem.hugepages.Reservation, run: int) -> None:
    """Grow the reservation until the pool holds a ``run``-byte adjacent run: the DPDK and
    speed comparisons are about sizes a pool can give (a fragmented pool is the yield
    question above). More pages first (bounded); if the buddy allocator hands out no run,
    demote a fresh 1 GiB page, whose 512 pages are adjacent by construction. The 2 MiB
    reservation's release takes them back; the 1 GiB pool is left as it was."""
    while longest_contiguous() < run and res.total < MAX_POOL:
        if res.extend(256) == 0:
            break
    if longest_contiguous() >= run:
        return
    try:
        got = demote_gigantic(res)
    except (OSError, physmem.errors.PhysmemError) as exc:
        print(f"  could not demote a 1 GiB page for a {run >> 20} MiB run: {exc}")
        return
    info("demoted 1 GiB page(s) into the 2 MiB pool for a long run", str(got))


def persistent() -> int:
    return pool_count("nr_hugepages") - pool_count("surplus_hugepages")


def demote_gigantic(res: physmem.hugepages.Reservation) -> int:
    """Demote a fresh 1 GiB page into the 2 MiB pool, as growth of ``res`` (whose release
    takes the 512 pages back); the 1 GiB pool is left as it was. Returns pages demoted."""
    before = persistent()
    with reserve(1, "1G", allow_partial=True) as giant:
        got = demote(1, "1G") if giant.free else 0
        giant.grown -= got  # demoted: no longer in the 1 GiB pool to give back
    res.grown += persistent() - before
    res.refresh()
    return got


def speed(v: Verdicts, res: physmem.hugepages.Reservation) -> None:
    print("speed: allocate_contiguous against faulting in as many hugepages")
    # Cold: each contender's first touch of pages just added to the pool (the kernel hands
    # out the newest free pages first); on a VM that may include the host faulting in guest
    # memory. Reported, not a target.
    longest = longest_contiguous()
    sizes = [sz for sz in (64 << 20, 256 << 20) if sz <= longest]
    for sz in (64 << 20, 256 << 20):
        if sz > longest:
            v.skip(f"allocate_contiguous / fault-in, {sz >> 20} MiB",
                   f"the pool's longest run is {longest >> 20} MiB")
    for size in sizes:
        n = size // MB2
        for label, fn in (("fault in", lambda: fault_in(n).close()),
                          ("allocate_contiguous", lambda: allocate_contiguous(size).close())):
            res.extend(n)
            t0 = time.perf_counter()
            fn()
            info(f"cold: {label} {size >> 20} MiB on freshly added pages",
                 f"{(time.perf_counter() - t0) * 1e3:9.3f} ms (one round)")
    contenders: dict[str, Callable[[], object]] = {}
    for size in sizes:
        n = size // MB2
        contenders[f"warm: fault in {n} hugepages ({size >> 20} MiB)"] = (
            lambda n=n: fault_in(n).close())
        contenders[f"warm: allocate_contiguous({size >> 20} MiB)"] = (
            lambda size=size: allocate_contiguous(size).close())
    pinned = "warm: allocate_contiguous(64 MiB, pin=True)"
    unpinned = "warm: allocate_contiguous(64 MiB, pin=False)"
    try:
        allocate_contiguous(64 << 20, pin=True).close()
    except PinUnavailable as exc:
        v.skip("allocate_contiguous(64 MiB, pin=True) / pin=False", f"cannot pin here: {exc}")
    else:
        contenders[pinned] = lambda: allocate_contiguous(64 << 20, pin=True).close()
        contenders[unpinned] = lambda: allocate_contiguous(64 << 20, pin=False).close()
    s = measure(contenders, rounds(7))
    for size in sizes:
        n = size // MB2
        v.ratio(f"allocate_contiguous / fault-in, {size >> 20} MiB (warm)",
                s[f"warm: allocate_contiguous({size >> 20} MiB)"],
                s[f"warm: fault in {n} hugepages ({size >> 20} MiB)"], at_most=1.5)
    if pinned in s:
        v.ratio("allocate_contiguous(64 MiB, pin=True) / pin=False (warm)", s[pinned],
                s[unpinned], at_most=1.1)


G1_DIR = "/sys/kernel/mm/hugepages/hugepages-1048576kB"
SINGLES = 256  # free 2 MiB blocks with a held buddy: beyond what reserve=True grows past


class Adjacent:
    """Fresh pages adjacent: the buddy allocator's free 2 MiB blocks taken out of its way and
    held here (untimed), so that a growing pool splits larger free blocks, whose pages come
    out adjacent (what a machine whose free memory is in large blocks gives)."""

    def __init__(self) -> None:
        self.held: list[tuple[physmem.hugepages.Reservation, mmap.mmap]] = []
        try:
            for _ in range(4):
                drain_per_cpu_lists()  # blocks on the CPUs' lists are singles too
                count = buddy_singles() + 2
                res = reserve(count, "2M", allow_partial=True)
                try:
                    if not res.free:
                        res.release()
                        break
                    m = fault_in(res.free)
                except BaseException:
                    res.release()
                    raise
                self.held.append((res, m))
                if buddy_singles() == 0:
                    break
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        while self.held:
            res, m = self.held.pop()
            try:
                m.close()
            finally:
                res.release()


class Scattered:
    """Fresh pages scattered: SINGLES free 2 MiB blocks at the head of the buddy allocator's
    lists, each beside a page held here so it cannot merge (what a machine whose free memory
    is broken up gives). Built untimed: twice as many pool pages faulted in, located by an
    independent pagemap read, and one of each buddy pair given back to the system."""

    def __init__(self, fd: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.mmap.restype = ctypes.c_void_p
        count = 2 * SINGLES
        self.res = reserve(count, "2M")
        try:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | lib.MAP_HUGETLB | lib.MAP_POPULATE
            self.m = mmap.mmap(-1, count * MB2, flags=flags)
            base = address_of(self.m)
            pfns = raw_pfns(fd, [base + i * MB2 for i in range(count)])
            mine = set(pfns)
            step = MB2 // PAGE
            # Free a page whose buddy someone else holds, and the lower page of each pair
            # held here: every page given back keeps a held buddy.
            give = [i for i, p in enumerate(pfns)
                    if (p ^ step) not in mine or p < (p ^ step)][:SINGLES]
            for i in give:
                # Unmapped (the page and its reservation go back to the pool), the hole
                # filled at once with an inaccessible mapping of ours (PROT_NONE): left
                # open, it could hold another mapping by the time the range is closed.
                addr = base + i * MB2
                if libc.munmap(addr, MB2) != 0 or libc.mmap(
                        addr, MB2, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                        | lib.MAP_FIXED_NOREPLACE, -1, 0) != addr:
                    raise OSError(ctypes.get_errno(), "cannot give a page back")
            self.singles = release_free(len(give), "2M")
            self.res.grown -= self.singles  # given back already: release takes the rest
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        try:
            if hasattr(self, "m"):
                self.m.close()
        finally:
            self.res.release()


def reserve_true(v: Verdicts, fd: int) -> None:
    """reserve=True buffers in two states of free memory, made before each timed round:
    fresh pool pages adjacent, and fresh pool pages scattered."""
    size = 64 << 20
    n = size // MB2
    print("reserve=True: a 64 MiB buffer from a pool that holds none of its pages")
    nr0, free0 = pool_count("nr_hugepages"), pool_count("free_hugepages")
    if free0:
        # Free pages the pool keeps for others serve reserve=True before any growth: no
        # growth to count, and the states of fresh pages cannot be made while they are there.
        for label in ("pool growth held for a live buffer", "fresh pages adjacent",
                      "fresh pages scattered"):
            v.skip(f"allocate(64 MiB, reserve=True), {label}",
                   f"the 2 MiB pool keeps {free0} free pages that are not this benchmark's")
        return
    with allocate_contiguous(size, reserve=True):
        nr, free, surplus = (pool_count("nr_hugepages"), pool_count("free_hugepages"),
                             pool_count("surplus_hugepages"))
    # Pages the pool holds beyond those others held before (sysfs, not physmem's count).
    held = nr - (nr0 - free0)
    info("pool before / with a live 64 MiB reserve=True buffer",
         f"{nr0} ({free0} free) / {nr} ({free} free, {surplus} surplus)")
    v.check("pages the pool holds for a live buffer / pages it uses", held == n,
            f"{held / n:.2f}", "== 1.00")

    # Each state made before its round, then probed once here (untimed): the longest run
    # among the pages a growth of the pool by n (and past the single blocks, as reserve=True
    # grows) hands out.
    from physmem.dma.allocate import _overgrowth  # what reserve=True grows by, past singles

    fresh_run: dict[str, int] = {}
    for label, setup in (("adjacent", Adjacent), ("scattered", lambda: Scattered(fd))):
        ctx = setup()
        try:
            with reserve(n + _overgrowth(n, MB2, None), "2M"):
                fresh = longest_contiguous()
        finally:
            if ctx is not None:
                ctx.release()
        info(f"fresh pages {label}: longest run among pages just added to the pool",
             f"{fresh >> 20} MiB")
        fresh_run[label] = fresh

    def drop(_: object) -> None:
        pass

    def adjacent() -> object:
        return Adjacent()

    def scattered() -> object:
        return Scattered(fd)

    def pool_holding() -> object:
        return reserve(n, "2M")

    def grow_fault_shrink() -> None:
        with reserve(n, "2M"):
            fault_in(n).close()

    def past_singles_floor() -> None:
        """The kernel's own cost of reserve=True's way past scattered free blocks: grow the
        pool by as many pages as the buddy allocator has free 2 MiB blocks (and two for the
        per-CPU lists), then by n, fault in n, shrink it again."""
        with reserve(n + buddy_singles() + 2, "2M"):
            fault_in(n).close()

    def gigantic_floor() -> None:
        """The kernel's own cost of 64 MiB of adjacent 2 MiB pages where none are free:
        allocate a 1 GiB page (the only allocation beyond the buddy allocator's largest
        block that it offers), demote it, fault in n of its pages, give all back."""
        with pool_lock():
            g = pool_count_at(G1_DIR, "nr_hugepages")
            small = pool_count("nr_hugepages")
            try:
                write_pool(G1_DIR, "nr_hugepages", g + 1)
                if pool_count_at(G1_DIR, "free_hugepages"):
                    write_pool(G1_DIR, "demote", 1)
                fault_in(n).close()
            finally:
                write_pool(POOL_DIR, "nr_hugepages", small)
                write_pool(G1_DIR, "nr_hugepages", g)

    def allocate() -> object:
        return allocate_contiguous(size, reserve=True)

    def close(b: object) -> None:
        b.close()  # type: ignore[attr-defined]

    s = interleaved({
        "allocate_contiguous(64 MiB, reserve=True), fresh pages adjacent":
            (adjacent, allocate, close),
        "allocate_contiguous(64 MiB, reserve=True), fresh pages scattered":
            (scattered, allocate, close),
        "fault in 32 pages from a pool holding them": (pool_holding, lambda: fault_in(n),
                                                       lambda m: m.close()),
        "floor, adjacent: grow the pool by 32, fault them in, shrink it":
            (adjacent, grow_fault_shrink, drop),
        "floor, scattered: grow past the free 2 MiB blocks and by 32, fault 32, shrink":
            (scattered, past_singles_floor, drop),
        "floor, scattered: 1 GiB page, demoted, 32 pages faulted, all given back":
            (scattered, gigantic_floor, drop),
    }, rounds(7))
    fault = s["fault in 32 pages from a pool holding them"]
    for label, target in (("adjacent", 1.5), ("scattered", 3.0)):
        a = s[f"allocate_contiguous(64 MiB, reserve=True), fresh pages {label}"]
        row = f"allocate(64 MiB, reserve=True) / fault-in of 32 pages, fresh pages {label}"
        if label == "adjacent" and fresh_run[label] < size:
            # The buddy allocator's free lists hold its largest blocks (4 MiB) in the order
            # they were freed: after hours of use, pages handed out one after another are
            # rarely neighbours, and no setup here can reorder them.
            v.skip(row, f"the state could not be made on this machine: the longest run among "
                   f"fresh pages was {fresh_run[label] >> 20} MiB, so reserve=True took the "
                   f"scattered state's way ({a.median / fault.median:.2f}x)")
            continue
        v.ratio(row, a, fault, at_most=target)
    floor_a = s["floor, adjacent: grow the pool by 32, fault them in, shrink it"]
    floor_p = s["floor, scattered: grow past the free 2 MiB blocks and by 32, fault 32, shrink"]
    floor_s = s["floor, scattered: 1 GiB page, demoted, 32 pages faulted, all given back"]
    info("kernel floor / fault-in, fresh pages adjacent (grow, fault, shrink)",
         f"{floor_a.median / fault.median:.2f}x")
    info("kernel floor / fault-in, fresh pages scattered (grow past the free blocks)",
         f"{floor_p.median / fault.median:.2f}x")
    info("kernel floor / fault-in, fresh pages scattered (1 GiB page, demote, fault)",
         f"{floor_s.median / fault.median:.2f}x")
    if pool_count("nr_hugepages") != nr0:
        print(f"  WARNING: pool is {pool_count('nr_hugepages')} pages, was {nr0}")


def buddy_singles() -> int:
    """Free 2 MiB blocks (buddy order 9) in the Normal and Movable zones, from a plain read
    of /proc/buddyinfo."""
    order = (MB2 // PAGE).bit_length() - 1
    with open("/proc/buddyinfo") as f:
        rows = [line.split() for line in f]
    return sum(int(r[4 + order]) for r in rows
               if r[3] in ("Normal", "Movable") and len(r) > 4 + order)


def pool_count_at(directory: str, name: str) -> int:
    with open(f"{directory}/{name}") as f:
        return int(f.read())


def write_pool(directory: str, name: str, value: int) -> None:
    with open(f"{directory}/{name}", "w") as f:
        f.write(str(value))


# -- virt_to_phys ------------------------------------------------------------------------
def fragmented_scatter(pages: int) -> physmem.dma.DmaBuffer:
    """A scatter buffer of many segments: fault in the whole pool, give back every other
    page in physical order (so the free pages have no free neighbour), allocate from them,
    then give back the rest. Raw mmap/munmap so that only pages this function holds are
    ever unmapped, whatever the allocation maps in between."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    free = pool_count("free_hugepages")
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | lib.MAP_HUGETLB | lib.MAP_POPULATE
    base = libc.mmap(None, free * MB2, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "cannot fault in the pool")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        pfns = raw_pfns(fd, [base + i * MB2 for i in range(free)])
    finally:
        os.close(fd)
    by_phys = sorted(range(free), key=pfns.__getitem__)
    give = set(by_phys[0:2 * pages:2])
    for i in give:
        libc.munmap(base + i * MB2, MB2)
    try:
        return allocate_scatter(pages * MB2)
    finally:
        for i in range(free):
            if i not in give:
                libc.munmap(base + i * MB2, MB2)


def translation(v: Verdicts, fd: int) -> None:
    print("virt_to_phys: 1,000,000 random offsets")
    rng = np.random.default_rng(1)
    cont = allocate_contiguous(64 << 20)
    scat = fragmented_scatter(128)
    try:
        info("scatter buffer", f"{scat.size >> 20} MiB in {len(scat.segments)} segments")
        bufs = {"contiguous 64 MiB": cont, f"scatter, {len(scat.segments)} segments": scat}
        offs = {k: rng.integers(0, b.size, 1_000_000, dtype=np.uint64) for k, b in bufs.items()}
        # Independent check first: a sample against one raw pagemap pread per offset.
        for k, b in bufs.items():
            sample = offs[k][:2000].tolist()
            pfns = raw_pfns(fd, [b.address + o for o in sample])
            expect = [p * PAGE + o % PAGE for p, o in zip(pfns, sample)]
            got = b.virt_to_phys(np.array(sample, dtype=np.uint64)).tolist()
            v.check(f"virt_to_phys == raw pagemap pread, {k}", got == expect,
                    f"{sum(g == e for g, e in zip(got, expect))}/{len(sample)} equal", "all equal")
        s = measure({k: (lambda b=b, o=offs[k]: b.virt_to_phys(o)) for k, b in bufs.items()},
                    rounds(15))
        for k in bufs:
            v.value(f"virt_to_phys rate, {k}", 1_000_000 / s[k].median / 1e6, "million/s",
                    at_least=20, fmt="{:,.1f}")
    finally:
        cont.close()
        scat.close()


def main() -> int:
    if not need_root():
        return 2
    t_start = time.perf_counter()
    v = Verdicts("contiguous: 2 MiB hugepages")
    print(f"physmem {physmem.__version__}, kernel {os.uname().release}")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    nr_before = pool_count("nr_hugepages")
    try:
        with reserve(WANT_FREE, "2M", allow_partial=True) as res:
            print(f"2 MiB pool: {res.free} free pages (asked for {WANT_FREE}; pool restored "
                  f"to {res.previous} afterwards)")
            # -- yield ---------------------------------------------------------------------
            print("yield: the longest adjacent run, by an independent pagemap read")
            run, pages, t_cold = independent_longest(fd)
            run2, _, t_warm = independent_longest(fd)
            info(f"independent: longest run among {pages} free pages",
                 f"{run >> 20} MiB (again: {run2 >> 20} MiB)")
            info(f"cold: first touch of the {pages} pool pages (fault + zero)",
                 f"{t_cold * 1e3:.1f} ms; warm again: {t_warm * 1e3:.1f} ms")
            found = longest_contiguous()
            v.check("longest_contiguous() == independent longest run", found == run,
                    f"{found >> 20} vs {run >> 20} MiB", "equal")
            ok, got, _ = try_allocate(run)
            over, _, _ = try_allocate(run + MB2)
            v.check("allocate_contiguous(run) obtained, run + 2 MiB refused",
                    ok and got == run and not over,
                    f"{got >> 20} MiB {'ok' if ok else 'refused'}; +2M "
                    f"{'allocated' if over else 'refused'}", "ok; refused")
            if run == pages * MB2:
                info("  (the run is the whole pool: the refusal only shows a short pool)", "")
            # Twice POOL_AHEAD: a run that long holds a POOL_AHEAD-aligned window of
            # POOL_AHEAD, which the DmaPool contender needs (its blocks are aligned as their size).
            grow_for_run(res, 2 * POOL_AHEAD)
            info("pool for DPDK and the speed rounds", f"{pool_count('free_hugepages')} free, "
                 f"longest run {longest_contiguous() >> 20} MiB")
            dpdk_side_by_side(v, rounds(5))
            speed(v, res)
            translation(v, fd)
        reserve_true(v, fd)
    finally:
        os.close(fd)
    nr_after = pool_count("nr_hugepages")
    if nr_after != nr_before:
        print(f"  WARNING: 2 MiB pool {nr_after} pages after the run, {nr_before} before")
    info("benchmark wall time", f"{time.perf_counter() - t_start:.1f} s")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
