"""First touch of 64 MiB (16,384 faults of 4 KiB) served by userfaultfd, against the kernel's
floor: the textbook C server (benchmarks/peers/uffd_ref.c: poll, read one event, UFFDIO_COPY).

Contenders, each timed over the touch only (server started before, stopped after), the same
number of rounds, interleaved in shuffled order, in two placements: left to the scheduler,
and faulter and servers pinned to one CPU (on a VM whose idle vCPUs halt without polling, a
cross-CPU wake-up per fault costs more than the fault; the setting is printed).
Targets: ``serve_from`` <= 1.3x the reference server's time; and at least 100,000
faults/s wherever the reference itself reaches 150,000/s.

    python benchmarks/userfaultfd.py [--mib 64] [--rounds 7]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure, peer_path  # noqa: E402

from physmem import Mapping, UserFaultFd  # noqa: E402
from physmem.mapping import PAGE_SIZE  # noqa: E402
from physmem.validate.cpuidle import read_idle  # noqa: E402


def served(start: Callable[[UserFaultFd, Mapping], Callable[[], int]], src: np.ndarray,
           size: int) -> float:
    """Register a fresh mapping, start a server, time the first touch, stop, check bytes."""
    with UserFaultFd() as u, Mapping.anonymous(size) as m:
        u.register(m)
        stop = start(u, m)
        t = time.perf_counter()
        m.touch()
        dt = time.perf_counter() - t
        faults = stop()
        if faults != size // PAGE_SIZE or not np.array_equal(m.array(), src):
            raise SystemExit(f"server served {faults} faults or wrong bytes")
        return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (or vm.unprivileged_userfaultfd=1)")
        return 2
    size = args.mib << 20
    faults = size // PAGE_SIZE
    src = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    idle = read_idle("/sys")
    v = Verdicts(f"userfaultfd: first touch of {args.mib} MiB ({faults} faults)")
    print(f"  {os.cpu_count()} CPUs, kernel {os.uname().release}, cpuidle driver "
          f"{idle.driver}, governor {idle.governor}, guest_halt_poll_ns {idle.guest_halt_poll_ns}")

    def python_handler(u: UserFaultFd, m: Mapping) -> Callable[[], int]:
        view = memoryview(src)
        base = m.address

        def handler(ev):  # type: ignore[no-untyped-def]
            off = (ev.address - base) & ~(PAGE_SIZE - 1)
            return view[off:off + PAGE_SIZE]

        server = u.serve(handler)

        def stop() -> int:
            server.stop()
            view.release()
            return server.faults
        return stop

    def native(follow: bool) -> Callable[[UserFaultFd, Mapping], Callable[[], int]]:
        def start(u: UserFaultFd, m: Mapping) -> Callable[[], int]:
            server = u.serve_from(src, follow=follow)

            def stop() -> int:
                server.stop()
                return server.faults
            return stop
        return start

    contenders: dict[str, Callable[[UserFaultFd, Mapping], Callable[[], int]]] = {
        "physmem serve_from (C, native thread)": native(False),
        "physmem serve_from(follow=True)": native(True),
        "physmem serve(handler) (Python)": python_handler,
    }
    ref_path = peer_path("libuffd_ref.so")
    if ref_path:
        ref = ctypes.CDLL(ref_path)
        ref.uffd_ref_start.restype = ctypes.c_void_p
        ref.uffd_ref_start.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64,
                                       ctypes.c_uint64, ctypes.c_uint64]
        ref.uffd_ref_stop.restype = ctypes.c_long
        ref.uffd_ref_stop.argtypes = [ctypes.c_void_p]

        def reference(u: UserFaultFd, m: Mapping) -> Callable[[], int]:
            handle = ref.uffd_ref_start(u.fileno(), src.ctypes.data, m.address, size, PAGE_SIZE)
            if not handle:
                raise SystemExit("reference server did not start")
            return lambda: int(ref.uffd_ref_stop(handle))
        contenders["reference C server (poll, read, UFFDIO_COPY)"] = reference

    def populate() -> float:
        with Mapping.anonymous(size, populate=True) as m:
            t = time.perf_counter()
            m.touch()
            return time.perf_counter() - t

    allowed = os.sched_getaffinity(0)
    for placement in ("scheduler-placed", "same CPU"):
        print(f"  [{placement}]")
        if placement == "same CPU":
            os.sched_setaffinity(0, {min(allowed)})  # faulter here; servers inherit it
        fns: dict[str, Callable[[], float]] = {
            name: (lambda s=server: served(s, src, size)) for name, server in contenders.items()}
        fns["baseline: MAP_POPULATE, then the same touch"] = populate
        s = measure(fns, args.rounds, self_timed=True)
        sf = s["physmem serve_from (C, native thread)"]
        rate = faults / sf.median
        info(f"serve_from faults/s ({placement})", f"{rate:,.0f}")
        info(f"Python handler / serve_from ({placement})",
             f"{s['physmem serve(handler) (Python)'].median / sf.median:.2f}x slower")
        if ref_path:
            rs = s["reference C server (poll, read, UFFDIO_COPY)"]
            ref_rate = faults / rs.median
            info(f"reference server faults/s ({placement})", f"{ref_rate:,.0f}")
            v.ratio(f"serve_from / reference C server ({placement})", sf, rs, at_most=1.3)
            if ref_rate >= 150_000:
                v.value(f"serve_from faults/s ({placement}; reference >= 150k/s)", rate,
                        "faults/s", at_least=100_000, fmt="{:,.0f}")
            else:
                v.skip(f"serve_from >= 100k faults/s ({placement})",
                       f"the reference reached only {ref_rate:,.0f}/s (< 150,000/s) here")
        else:
            v.skip(f"serve_from / reference ({placement})", "libuffd_ref.so not built")
    os.sched_setaffinity(0, allowed)
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
