"""First touch of 256 MiB (65,536 faults of 4 KiB) served by userfaultfd, one run.

(a) ``UserFaultFd.serve(handler)``: a Python handler on a Python thread;
(b) ``UserFaultFd.serve_from(buffer)``: the C fast path on a native thread, no GIL, with its
    default placement (left to the scheduler); (b') the same with ``follow=True`` (pinned to
    the faulting thread's CPU), opt-in, for comparison only;
(c) baseline: ``Mapping.anonymous(populate=True)`` (MAP_POPULATE) then the same touch.
The faulting thread is ``Mapping.touch()`` (C, GIL released). Each server is run twice: with
the scheduler free to place threads, and with faulter and server on one CPU (on a VM whose idle
vCPUs halt, a cross-CPU wake-up per fault costs more than the fault). Targets (issue 4):
(b) at least 5x faster than (a), and at least 100,000 faults/s.

    python benchmarks/userfaultfd.py [--mib 256]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from physmem import Mapping, UserFaultFd
from physmem.mapping import PAGE_SIZE
from physmem.validate.cpuidle import read_idle


def run_python(src: np.ndarray, size: int) -> tuple[float, int]:
    with UserFaultFd() as u, Mapping.anonymous(size) as m:
        u.register(m)
        base = m.address
        view = memoryview(src)

        def handler(ev):
            off = (ev.address - base) & ~(PAGE_SIZE - 1)
            return view[off:off + PAGE_SIZE]

        server = u.serve(handler)
        t = time.perf_counter()
        m.touch()
        dt = time.perf_counter() - t
        server.stop()
        check(m, src)
        view.release()
        return dt, server.faults


def run_native(src: np.ndarray, size: int, follow: bool = False) -> tuple[float, int]:
    with UserFaultFd() as u, Mapping.anonymous(size) as m:
        u.register(m)
        server = u.serve_from(src, follow=follow)
        t = time.perf_counter()
        m.touch()
        dt = time.perf_counter() - t
        server.stop()
        check(m, src)
        return dt, server.faults


def run_populate(size: int) -> float:
    t = time.perf_counter()
    with Mapping.anonymous(size, populate=True) as m:
        m.touch()
        return time.perf_counter() - t


def check(m: Mapping, src: np.ndarray) -> None:
    if not np.array_equal(m.array(), src):
        raise SystemExit("served bytes differ from the source buffer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    size = args.mib << 20
    faults = size // PAGE_SIZE
    src = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    print(f"first touch of {args.mib} MiB = {faults} faults of {PAGE_SIZE} B, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    # Idle vCPUs that halt without polling make every cross-CPU wake-up cost tens of us:
    # the figures below depend on it (physmem doctor --section cpuidle).
    print(read_idle().describe())
    allowed = os.sched_getaffinity(0)
    rows = []
    for placement in ("scheduler-placed", "same CPU"):
        if placement == "same CPU":
            os.sched_setaffinity(0, {min(allowed)})  # faulter here; servers inherit it
        ta, na = run_python(src, size)
        tb, nb = run_native(src, size)
        tu, nu = run_native(src, size, follow=True)
        tc = run_populate(size)
        assert na == nb == nu == faults, (na, nb, nu)
        rows.append((placement, faults / ta, faults / tb, faults / tc))
        print(f"\n[{placement}]")
        print(f"  (a) serve(handler), Python : {ta:7.3f} s  {faults / ta:>10,.0f} faults/s")
        print(f"  (b) serve_from(buffer), C  : {tb:7.3f} s  {faults / tb:>10,.0f} faults/s")
        print(f"  (b') same, follow=True     : {tu:7.3f} s  {faults / tu:>10,.0f} faults/s")
        print(f"  (c) MAP_POPULATE baseline  : {tc:7.3f} s  {faults / tc:>10,.0f} pages/s")
        print(f"  (b) is {ta / tb:.1f}x faster than (a); (c) is {tb / tc:.1f}x faster than (b). "
              f"targets: (b)/(a) >= 5x: {'met' if ta / tb >= 5 else 'NOT met'}; "
              f"(b) >= 100,000 faults/s: {'met' if faults / tb >= 100_000 else 'NOT met'}")
    os.sched_setaffinity(0, allowed)


if __name__ == "__main__":
    main()
