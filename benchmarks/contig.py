"""Benchmark: the contiguity forecast, the threaded kpageflags summary, and longest_contiguous.

Run as root: ``python benchmarks/contig.py``. The three figures of issue 13, each against
its baseline measured in the same run:

* ``forecast()`` of the whole machine vs one raw sequential read of /proc/kpageflags;
* ``physmem kpageflags --summary`` (the command, start to exit) vs the same raw read, and
  the CLI's own start-up time (``physmem --help``);
* ``longest_contiguous()`` at 1024 free 2 MiB pool pages vs faulting them all in (the old
  method), with the same answer. The pool is restored afterwards.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import best_interleaved, best_of, report, show_time  # noqa: E402

from physmem.contiguity import forecast  # noqa: E402
from physmem.dma import longest_contiguous  # noqa: E402
from physmem.hugepages import reserve  # noqa: E402

M2 = 2 << 20


def raw_read() -> int:
    """One plain single-threaded sequential read of the whole file, 512 KiB at a time."""
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    total = 0
    try:
        buf = bytearray(1 << 19)
        while n := os.readv(fd, [buf]):
            total += n
    finally:
        os.close(fd)
    return total


def cli(*args: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-m", "physmem.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, cwd="/")


def faulting_longest() -> int:
    from physmem.dma.allocate import _Candidates, _runs

    free = int(open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read())
    c = _Candidates(M2, None)
    try:
        c.grow(free)
        return int(_runs(c.paddr, M2)[2].max()) * M2 if len(c) else 0
    finally:
        c.close()


def main() -> int:
    if os.geteuid() != 0:
        print("needs root: /proc/kpageflags is readable by CAP_SYS_ADMIN only")
        return 1
    ok = True
    print(f"CPUs for this process: {len(os.sched_getaffinity(0))}")

    raw, fc = best_interleaved([raw_read, forecast], rounds=5)
    show_time("raw sequential read of /proc/kpageflags", raw)
    show_time("forecast() of the whole machine", fc)
    ok &= report("forecast() / raw read", fc / raw, "<= 1.3x", fc / raw <= 1.3)

    startup, summary, raw2 = best_interleaved(
        [lambda: cli("--help"), lambda: cli("kpageflags", "--summary"), raw_read], rounds=5)
    show_time("physmem --help (CLI start-up)", startup)
    show_time("physmem kpageflags --summary (start to exit)", summary)
    ok &= report("kpageflags --summary / raw read", summary / raw2, "<= 0.75x",
                 summary / raw2 <= 0.75)
    from physmem.kpageflags import KPageFlags

    with KPageFlags() as kf:
        inproc = best_of(kf.summary, repeat=3)
    show_time("KPageFlags.summary() in process (threads)", inproc,
              f"({inproc / raw2:.2f}x the raw read)")

    with reserve(1024, "2M", allow_partial=True) as res:
        print(f"2 MiB pool: {res.free} free pages (asked for 1024; restored afterwards)")
        t0 = time.perf_counter()
        old = faulting_longest()
        fault = time.perf_counter() - t0
        new = longest_contiguous(M2)
        scan = best_of(lambda: longest_contiguous(M2), repeat=5)
        show_time("faulting every free pool page (old method)", fault)
        show_time("longest_contiguous() from kpageflags", scan)
        print(f"  same answer: {new == old} ({new >> 20} MiB)")
        speed = fault / scan
        ok &= report("longest_contiguous speed-up over faulting", speed, ">= 20x",
                     speed >= 20 and new == old)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
