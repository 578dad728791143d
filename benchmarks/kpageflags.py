"""Whole-machine kpageflags summary: physmem's command against the kernel's page-types and
against one raw single-threaded read of /proc/kpageflags.

Like for like: page-types is built with -O2 (``benchmarks/peers/setup.sh``) and reads with one
thread, so the first comparison runs both commands on one CPU (physmem's command scans with
one thread per CPU it may use: one). physmem's command on every CPU is its own row.

Targets: ``physmem kpageflags --summary`` on one CPU <= 1.0x page-types
on that CPU; on all CPUs <= 0.75x page-types, and <= 0.75x one raw single-threaded read of the
file; ``KPageFlags.summary()`` in process <= 1.2x the raw read, on one thread and on all. The
CLI's own start-up time (``physmem --help``: Python, the package and its extension) is
reported beside them.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import (  # noqa: E402
    Verdicts, check_command_origin, info, measure, need_root, peer_path, physmem_command,
    rounds, run_command)

from physmem import KPageFlags  # noqa: E402


def on_cpu(cpu: int) -> Callable[[], None]:
    """A preexec_fn that confines the command to ``cpu``."""
    return lambda: os.sched_setaffinity(0, {cpu})


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("kpageflags: whole-machine summary")
    check_command_origin()
    kf = KPageFlags()
    frames = kf.max_pfn()
    buf = np.empty(frames, dtype=np.uint64)
    buf[:] = 0  # the ready buffer
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    cpus = sorted(os.sched_getaffinity(0))
    one = cpus[-1]  # the same single CPU for both commands of the one-thread comparison

    def raw_read() -> None:
        os.preadv(fd, [buf], 0)

    summary = physmem_command("kpageflags", "--summary")
    contenders = {
        "raw: one single-threaded preadv of /proc/kpageflags": raw_read,
        "physmem: KPageFlags.summary(threads=1) in process": lambda: kf.summary(threads=1),
        f"physmem: KPageFlags.summary() in process ({len(cpus)} threads)": kf.summary,
        "physmem kpageflags --summary (command, 1 CPU)":
            lambda: run_command(summary, preexec_fn=on_cpu(one)),
        f"physmem kpageflags --summary (command, {len(cpus)} CPUs)": lambda: run_command(summary),
        "physmem --help (command start-up, 1 CPU)":
            lambda: run_command(physmem_command("--help"), preexec_fn=on_cpu(one)),
    }
    page_types = peer_path("page-types")
    if page_types:
        cflags = open(page_types + ".cflags").read().strip() if os.path.exists(
            page_types + ".cflags") else "unknown flags"
        print(f"  page-types built with {cflags}; it reads on one thread")
        contenders["page-types (command, whole machine, 1 CPU)"] = (
            lambda: run_command([page_types], preexec_fn=on_cpu(one)))
    print(f"  {frames} frames ({frames * 8 >> 20} MiB of kpageflags), {len(cpus)} CPUs; "
          f"one-CPU commands on CPU {one}")
    s = measure(contenders, rounds(11))
    raw = s["raw: one single-threaded preadv of /proc/kpageflags"]
    cmd1 = s["physmem kpageflags --summary (command, 1 CPU)"]
    cmd_all = s[f"physmem kpageflags --summary (command, {len(cpus)} CPUs)"]
    if page_types:
        pt = s["page-types (command, whole machine, 1 CPU)"]
        v.ratio("physmem kpageflags --summary / page-types, 1 CPU each", cmd1, pt, at_most=1.0)
        # Both wait on the kernel's per-frame work for the same file; what separates them on
        # one CPU is start-up (an interpreter and numpy against a C program) and the counting.
        info("  physmem - page-types on 1 CPU; physmem's start-up (--help) beside it",
             f"{(cmd1.median - pt.median) * 1e3:+.0f} ms; "
             f"{s['physmem --help (command start-up, 1 CPU)'].median * 1e3:.0f} ms")
        v.ratio(f"physmem kpageflags --summary on {len(cpus)} CPUs / page-types (1 thread)",
                cmd_all, pt, at_most=0.75)
        info("page-types / raw read (what its read costs it)", f"{pt.median / raw.median:.2f}x")
    else:
        v.skip("physmem kpageflags --summary / page-types", "page-types not built")
    v.ratio(f"physmem kpageflags --summary on {len(cpus)} CPUs / raw 1-thread read", cmd_all,
            raw, at_most=0.75)
    info("physmem kpageflags --summary on 1 CPU / raw read", f"{cmd1.median / raw.median:.2f}x")
    v.ratio("KPageFlags.summary(threads=1) / raw read",
            s["physmem: KPageFlags.summary(threads=1) in process"], raw, at_most=1.2)
    v.ratio(f"KPageFlags.summary() on {len(cpus)} threads / raw 1-thread read",
            s[f"physmem: KPageFlags.summary() in process ({len(cpus)} threads)"], raw,
            at_most=1.2)
    info("CLI start-up (physmem --help, 1 CPU)",
         f"{s['physmem --help (command start-up, 1 CPU)'].median * 1e3:.0f} ms")
    os.close(fd)
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
