"""Benchmark: the contiguity forecast and longest_contiguous().

Run as root: ``python benchmarks/contig.py``. Each against its baseline, same rounds,
interleaved (see _bench):

* ``forecast()`` of the whole machine <= 1.3x one raw single-threaded read of
  /proc/kpageflags (``preadv`` into a ready buffer);
* ``longest_contiguous()`` at 1024 free 2 MiB pool pages >= 20x faster than faulting them
  all in (the old method), with the same answer. The pool is restored afterwards.

The whole-machine ``physmem kpageflags --summary`` command is in benchmarks/kpageflags.py.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure, need_root, rounds  # noqa: E402

from physmem import KPageFlags  # noqa: E402
from physmem.analysis.contiguity import forecast  # noqa: E402
from physmem.dma import longest_contiguous  # noqa: E402
from physmem.hugepages import reserve  # noqa: E402

M2 = 2 << 20


def faulting_longest() -> int:
    """The old method: fault every free pool page into a memfd and sort physical addresses."""
    from physmem.dma.allocate import _Candidates, _runs

    free = int(open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read())
    c = _Candidates(M2, None)
    try:
        c.grow(free)
        return int(_runs(c.paddr, M2)[2].max()) * M2 if len(c) else 0
    finally:
        c.close()


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("contiguity: forecast and longest_contiguous")
    frames = KPageFlags().max_pfn()
    buf = np.empty(frames, dtype=np.uint64)
    buf[:] = 0
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    print(f"  {frames} frames; {len(os.sched_getaffinity(0))} CPUs for this process")
    s = measure({"raw: one single-threaded preadv of /proc/kpageflags":
                 lambda: os.preadv(fd, [buf], 0),
                 "physmem: forecast() of the whole machine": forecast}, rounds(7))
    os.close(fd)
    v.ratio("forecast() / raw read", s["physmem: forecast() of the whole machine"],
            s["raw: one single-threaded preadv of /proc/kpageflags"], at_most=1.3)

    with reserve(1024, "2M", allow_partial=True) as res:
        print(f"  2 MiB pool: {res.free} free pages (asked for 1024; restored afterwards)")
        answers: dict[str, set[int]] = {"old": set(), "new": set()}
        # Cold: the first fault of fresh pool pages on a VM includes the host backing guest
        # memory; reported apart, then every contender runs warm, the same number of rounds.
        cold = measure({"old, cold (first fault of fresh pool pages)":
                        lambda: answers["old"].add(faulting_longest())}, 1)
        s = measure({
            "old: fault every free pool page, sort": lambda: answers["old"].add(faulting_longest()),
            "physmem: longest_contiguous() from kpageflags":
                lambda: answers["new"].add(longest_contiguous(M2)),
        }, rounds(5))
        same = answers["old"] == answers["new"] and len(answers["new"]) == 1
        v.check("longest_contiguous() equals the faulting answer", same,
                f"{sorted(answers['new'])} vs {sorted(answers['old'])}", "equal")
        v.ratio("faulting / longest_contiguous()", s["old: fault every free pool page, sort"],
                s["physmem: longest_contiguous() from kpageflags"], at_least=20)
        info("longest run", f"{max(answers['new']) >> 20} MiB")
        info("cold faulting / longest_contiguous() (information)",
             f"{cold['old, cold (first fault of fresh pool pages)'].median / s['physmem: longest_contiguous() from kpageflags'].median:.0f}x")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
