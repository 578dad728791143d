"""Whole-machine kpageflags summary: physmem's command against the kernel's page-types and
against one raw single-threaded read of /proc/kpageflags.

Targets: ``physmem kpageflags --summary`` (the command, start to exit)
<= 0.75x page-types' wall time, and <= 0.75x one raw single-threaded read of the file;
``KPageFlags.summary()`` in process <= 1.2x the raw read. The CLI's own start-up time
(``physmem --help``: Python, numpy and the extension loading) is reported beside them.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure, need_root, peer_path  # noqa: E402

from physmem import KPageFlags  # noqa: E402

CLI = [sys.executable, "-m", "physmem.cli"]


def main() -> int:
    if not need_root():
        return 2
    v = Verdicts("kpageflags: whole-machine summary")
    kf = KPageFlags()
    frames = kf.max_pfn()
    buf = np.empty(frames, dtype=np.uint64)
    buf[:] = 0  # the ready buffer
    fd = os.open("/proc/kpageflags", os.O_RDONLY)

    def raw_read() -> None:
        os.preadv(fd, [buf], 0)

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)

    contenders = {
        "raw: one single-threaded preadv of /proc/kpageflags": raw_read,
        "physmem: KPageFlags.summary() in process": kf.summary,
        "physmem kpageflags --summary (command)": lambda: run(CLI + ["kpageflags", "--summary"]),
        "physmem --help (command start-up)": lambda: run(CLI + ["--help"]),
    }
    page_types = peer_path("page-types")
    if page_types:
        contenders["page-types (command, whole machine)"] = lambda: run([page_types])
    print(f"{frames} frames ({frames * 8 >> 20} MiB of kpageflags), {os.cpu_count()} CPUs")
    s = measure(contenders, 11)
    cmd = s["physmem kpageflags --summary (command)"]
    raw = s["raw: one single-threaded preadv of /proc/kpageflags"]
    if page_types:
        v.ratio("physmem kpageflags --summary / page-types (commands)", cmd,
                s["page-types (command, whole machine)"], at_most=0.75)
    else:
        v.skip("physmem kpageflags --summary / page-types", "page-types not built")
    v.ratio("physmem kpageflags --summary (command) / raw read", cmd, raw, at_most=0.75)
    v.ratio("KPageFlags.summary() / raw read", s["physmem: KPageFlags.summary() in process"],
            raw, at_most=1.2)
    info("CLI start-up (physmem --help)",
         f"{s['physmem --help (command start-up)'].median * 1e3:.0f} ms")
    os.close(fd)
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
