"""Benchmark: physically contiguous memory - yield against an independent pagemap read, DPDK's
EAL side by side, speed against faulting in hugepages, reserve=True, and virt_to_phys.

Run as root (under ``flock /work/pytest.lock`` on a shared machine: it changes the 2 MiB
pool): ``python benchmarks/contiguous.py``. The pool is grown to 512 free pages for the run
and put back afterwards. Peers from ``benchmarks/peers/setup.sh`` (``dpdk_memzone``).
Every timed contender runs the same number of rounds, interleaved in shuffled order.
Targets: yield, DPDK, virt_to_phys and reserve=True, each stated where it is measured.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Stats, Verdicts, info, measure, need_root, peer_path  # noqa: E402

import physmem  # noqa: E402
from physmem._raw import mapping as lib  # noqa: E402  (MAP_HUGETLB from the kernel headers)
from physmem.dma import allocate_contiguous, allocate_scatter, longest_contiguous  # noqa: E402
from physmem.errors import ContiguityUnavailable  # noqa: E402
from physmem.hugepages import demote, reserve  # noqa: E402

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


def try_allocate(size: int) -> tuple[bool, int, float]:
    """(obtained, bytes, seconds for the allocation alone); the buffer is closed after."""
    t0 = time.perf_counter()
    try:
        buf = allocate_contiguous(size)
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
    """One run of dpdk_memzone: its own timings (EAL init apart) parsed from its output."""

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.eal_init: float | None = None
        self.error = ""
        self.zones: dict[int, tuple[bool, float]] = {}
        self.largest: tuple[int, float] | None = None

    def run(self) -> None:
        r = subprocess.run(self.cmd, capture_output=True, text=True, timeout=120)
        self.zones = {}
        self.largest = None
        for line in r.stdout.splitlines():
            f = line.split()
            if f[0] == "eal_init":
                self.eal_init = float(f[1])
            elif f[0] == "zone":
                self.zones[int(f[1])] = (f[2] == "ok", float(f[3]))
            elif f[0] == "largest":
                self.largest = (int(f[1]), float(f[2]))
            elif f[0] == "eal_error":
                self.error = " ".join(f[1:])
        if r.returncode != 0 and not self.error:
            self.error = f"exit {r.returncode}"
        if self.error:
            errs = [ln for ln in r.stderr.splitlines() if "EAL" in ln]
            self.error = f"{self.error}; {errs[-1] if errs else r.stderr.strip()[-200:]}"


def dpdk_side_by_side(v: Verdicts, rounds: int) -> None:
    exe = peer_path("dpdk_memzone")
    sizes = [64 << 20, 256 << 20]
    if exe is None:
        v.skip("DPDK EAL memzones", "dpdk_memzone not built (benchmarks/peers/setup.sh)")
        return
    base = [exe, "--no-pci", "--iova-mode=pa", "-l", "0", "--log-level=lib.eal:error"]
    tail = ["--"] + [str(s) for s in sizes] + ["0"]
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
        free_seen: set[int] = set()

        def record(key: str, ok: bool, nbytes: int, t: float) -> None:
            got.setdefault(key, []).append(nbytes if ok else 0)
            if ok:
                times.setdefault(key, []).append(t)

        def physmem_round() -> None:
            for s in sizes:
                ok, n, t = try_allocate(s)
                record(f"physmem {s >> 20}M", ok, n, t)
            # The largest: find it, then take it (DPDK's is a bisection of reserve calls).
            t0 = time.perf_counter()
            lc = longest_contiguous()
            ok, n, _ = try_allocate(lc)
            record("physmem largest", ok, n, time.perf_counter() - t0)

        def dpdk_round(name: str) -> Callable[[], None]:
            def go() -> None:
                d = modes[name]
                d.run()
                if d.error:
                    return
                for s in sizes:
                    ok, t = d.zones.get(s, (False, 0.0))
                    record(f"dpdk {name} {s >> 20}M", ok, s if ok else 0, t)
                if d.largest:
                    record(f"dpdk {name} largest", d.largest[0] > 0, d.largest[0], d.largest[1])
                if d.eal_init is not None:
                    times.setdefault(f"dpdk {name} eal_init", []).append(d.eal_init)
            return go

        contenders = {"physmem": physmem_round}
        for name in modes:
            contenders[f"dpdk {name}"] = dpdk_round(name)

        def checked(fn: Callable[[], None]) -> Callable[[], None]:
            def go() -> None:
                free_seen.add(pool_count("free_hugepages"))  # same pool state for each
                fn()
            return go

        try:
            measure({k: checked(f) for k, f in contenders.items()}, rounds, show=False)
        finally:
            # --legacy-mem leaves its runtime directory (config, fbarray files) behind.
            shutil.rmtree(f"/var/run/dpdk/physmem_bench_{os.getpid()}", ignore_errors=True)
    print(f"  free pages before each contender: {sorted(free_seen)} (same pool state)")
    for name, d in modes.items():
        if d.error:
            v.skip(f"DPDK {name}", f"EAL cannot initialise: {d.error}. It needs free 2 MiB "
                   "hugepages (and a hugetlbfs mount for --legacy-mem)")
            continue
        info(f"DPDK {name}: EAL init (not in the times below)",
             Stats(tuple(times[f"dpdk {name} eal_init"])).show())
    # --legacy-mem maps and sorts every free page inside rte_eal_init, so its memzone call is
    # heap bookkeeping; its page work is its init beyond the median in-memory init (EAL
    # start-up without memory). That is added to its calls for the verdict.
    legacy_work: list[float] | None = None
    if all(k in modes and not modes[k].error for k in ("in-memory", "legacy-mem")):
        startup = Stats(tuple(times["dpdk in-memory eal_init"])).median
        legacy_work = [max(0.0, a - startup) for a in times["dpdk legacy-mem eal_init"]]
        info("DPDK legacy-mem page work in init (init - in-memory init)",
             Stats(tuple(legacy_work)).show())
    for label in [f"{s >> 20}M" for s in sizes] + ["largest"]:
        p_key = f"physmem {label}"
        p_got = got.get(p_key, [0])
        p_stats = Stats(tuple(times[p_key])) if p_key in times else None
        info(f"physmem allocate_contiguous {label}: {min(p_got) >> 20}-{max(p_got) >> 20} MiB",
             p_stats.show() if p_stats else "never obtained")
        for name, d in modes.items():
            if d.error:
                continue
            key = f"dpdk {name} {label}"
            d_got = got.get(key, [0])
            d_stats = Stats(tuple(times[key])) if key in times else None
            info(f"DPDK {name} memzone {label}: {min(d_got) >> 20}-{max(d_got) >> 20} MiB",
                 d_stats.show() if d_stats else "never obtained")
            # Per round: whatever DPDK obtained, physmem obtained too (at least as much).
            covered = all(p >= dg for p, dg in zip(p_got, d_got))
            v.check(f"physmem obtains what DPDK {name} does, {label}", covered,
                    f"{sum(p > 0 for p in p_got)}/{len(p_got)} vs {sum(x > 0 for x in d_got)}"
                    f"/{len(d_got)}", "every size")
            if not (d_stats and p_stats):
                if p_stats:
                    info(f"  {label}: DPDK {name} never obtained it", "(no time to compare)")
                continue
            if name == "legacy-mem" and legacy_work is not None and len(d_stats.samples) == len(
                    legacy_work):
                info(f"  physmem / DPDK legacy-mem memzone call alone, {label}",
                     f"{p_stats.median / d_stats.median:.0f}x (pages pre-mapped at init)")
                d_stats = Stats(tuple(a + b for a, b in zip(d_stats.samples, legacy_work)))
                v.ratio(f"physmem / DPDK legacy (init page work + call), {label}", p_stats,
                        d_stats, at_most=1.0)
            else:
                v.ratio(f"physmem / DPDK {name} time, {label}", p_stats, d_stats, at_most=1.0)


# -- speed -------------------------------------------------------------------------------
def interleaved(contenders: dict[str, tuple[Callable[[], object], Callable[[], object],
                                           Callable[[object], None]]],
                rounds: int, seed: int | None = None) -> dict[str, Stats]:
    """The harness's measure() for contenders with an untimed setup before and teardown after
    their timed part: (setup, timed(), teardown(x))."""
    def staged(setup: Callable[[], object], fn: Callable[[], object],
               teardown: Callable[[object], None]) -> float:
        ctx = setup()
        t0 = time.perf_counter()
        x = fn()
        dt = time.perf_counter() - t0
        teardown(x)
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
        with reserve(1, "1G", allow_partial=True) as giant:
            got = demote(1, "1G") if giant.free else 0
    except (OSError, physmem.errors.PhysmemError) as exc:
        print(f"  could not demote a 1 GiB page for a {run >> 20} MiB run: {exc}")
        return
    res.refresh()
    info("demoted 1 GiB page(s) into the 2 MiB pool for a long run", str(got))


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
    s = measure(contenders, 7)
    for size in sizes:
        n = size // MB2
        v.ratio(f"allocate_contiguous / fault-in, {size >> 20} MiB (warm)",
                s[f"warm: allocate_contiguous({size >> 20} MiB)"],
                s[f"warm: fault in {n} hugepages ({size >> 20} MiB)"], at_most=1.5)


def reserve_true(v: Verdicts) -> None:
    """A reserve=True buffer, on the pool as the machine has it."""
    size = 64 << 20
    n = size // MB2
    print("reserve=True (the pool as the machine has it; nothing reserved beforehand)")
    nr0, free0 = pool_count("nr_hugepages"), pool_count("free_hugepages")
    with allocate_contiguous(size, reserve=True):
        nr, free, surplus = (pool_count("nr_hugepages"), pool_count("free_hugepages"),
                             pool_count("surplus_hugepages"))
    # Pages the pool holds beyond those others held before (sysfs, not physmem's count).
    held = nr - (nr0 - free0)
    info("pool before / with a live 64 MiB reserve=True buffer",
         f"{nr0} ({free0} free) / {nr} ({free} free, {surplus} surplus)")
    v.check("pages the pool holds for a live buffer / pages it uses", held == n,
            f"{held / n:.2f}", "== 1.00")

    # What the timed rounds meet, sampled once before them: whether pages freshly added to
    # the pool hold a run of n (then reserve=True zeroes n pages), or the page allocator
    # hands out scattered ones, so that a round must also demote a 1 GiB page allocated at
    # run time (tens of ms more). The machine's state decides, and may change between rounds.
    with reserve(n, "2M", allow_partial=True):
        fresh = longest_contiguous()
    info(f"before the rounds: longest run among {n} pages just added to the pool",
         f"{fresh >> 20} MiB ({'no ' if fresh >= size else ''}1 GiB demotion needed)")

    def grow() -> object:
        return reserve(n, "2M")

    def nothing() -> object:
        return None

    def drop(_: object) -> None:
        pass

    def fault() -> mmap.mmap:
        return fault_in(n)

    def grow_fault_shrink() -> None:
        with reserve(n, "2M"):
            fault_in(n).close()

    s = interleaved({
        "allocate_contiguous(64 MiB, reserve=True)":
            (nothing, lambda: allocate_contiguous(size, reserve=True), lambda b: b.close()),
        "fault in 32 pages from a pool holding them": (grow, fault, lambda m: m.close()),
        "grow the pool by 32, fault them in, shrink it": (nothing, grow_fault_shrink, drop),
    }, 7)
    a = s["allocate_contiguous(64 MiB, reserve=True)"]
    v.ratio("allocate(64 MiB, reserve=True) / fault-in of 32 pages", a,
            s["fault in 32 pages from a pool holding them"], at_most=1.5)
    info("allocate(reserve=True) / grow + fault-in + shrink",
         f"{a.median / s['grow the pool by 32, fault them in, shrink it'].median:.2f}x")
    if pool_count("nr_hugepages") != nr0:
        print(f"  WARNING: pool is {pool_count('nr_hugepages')} pages, was {nr0}")


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
        s = measure({k: (lambda b=b, o=offs[k]: b.virt_to_phys(o)) for k, b in bufs.items()}, 15)
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
                  f"to {res.persistent} afterwards)")
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
            grow_for_run(res, 256 << 20)
            info("pool for DPDK and the speed rounds", f"{pool_count('free_hugepages')} free, "
                 f"longest run {longest_contiguous() >> 20} MiB")
            dpdk_side_by_side(v, 5)
            speed(v, res)
            translation(v, fd)
        reserve_true(v)
    finally:
        os.close(fd)
    nr_after = pool_count("nr_hugepages")
    if nr_after != nr_before:
        print(f"  WARNING: 2 MiB pool {nr_after} pages after the run, {nr_before} before")
    info("benchmark wall time", f"{time.perf_counter() - t_start:.1f} s")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
