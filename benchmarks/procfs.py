"""physmem.proc against a raw read and against psutil, records against records, on a helper
process with about 4,300 mappings.

Targets: maps parse <= 1.5x a raw read, smaps parse <= 2x a raw read;
``list(proc.smaps())`` >= 3.5x faster than psutil ``memory_maps(grouped=False)`` (both build
every record); ``proc.smaps_rollup()`` faster than psutil's own rollup call,
``memory_full_info()`` (>= 1.0x), on the helper and on a small process (``sleep``), the
records checked equal first. psutil's call also reads statm: physmem's ``statm()`` plus
``smaps_rollup()``, the same two files, is reported beside it, and so are the raw reads of
both files, the floor either library stands on.
Every contender runs the same number of rounds, interleaved in shuffled order (see _bench);
the raw reads are contenders of their own, not timed right after a parse.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Stats, Verdicts, info, measure, rounds  # noqa: E402

from physmem import proc  # noqa: E402

HELPER = r'''
import ctypes, mmap, sys, tempfile
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
P = mmap.PAGESIZE
n = 4000
m = mmap.mmap(-1, n * P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
a = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(0, n, 2):
    m[i * P] = 1
    libc.mprotect(a + i * P, P, mmap.PROT_READ)
f = tempfile.NamedTemporaryFile()
f.truncate(400 * P)
keep = [mmap.mmap(f.fileno(), P, offset=i * P) for i in range(0, 400, 2)]
print("ready", flush=True)
sys.stdin.read()
'''


READY = bytearray(16 << 20)  # the ready buffer of the raw reads, faulted in once
READY[::4096] = b"\1" * len(READY[::4096])


def raw(path: str) -> int:
    """What any reader must at least do: open, read to the end into a ready buffer (no
    allocation, no copy), close. Returns the bytes read."""
    view = memoryview(READY)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        while n := os.readv(fd, [view[got:]]):
            got += n
        if got == len(READY):
            raise SystemExit(f"{path} is larger than the raw reads' buffer")
        return got
    finally:
        os.close(fd)


def main() -> int:
    try:
        import psutil
    except ImportError:
        print("psutil is not installed: run benchmarks/peers/setup.sh")
        return 2
    v = Verdicts("procfs: /proc/PID/maps and smaps")
    p = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        p.stdout.readline()
        pid = p.pid
        ps = psutil.Process(pid)
        print(f"helper mappings: {len(proc.maps(pid))}; psutil {psutil.__version__}")
        # Same records, checked once: psutil and physmem agree on the Rss of every mapping.
        ours = sorted((s.start, s.rss) for s in proc.smaps(pid))
        theirs = sorted((int(m.addr.split("-")[0], 16), m.rss)
                        for m in ps.memory_maps(grouped=False))
        assert ours == theirs, "psutil and physmem disagree on smaps"
        s = measure({
            "raw read of maps": lambda: raw(f"/proc/{pid}/maps"),
            "physmem: proc.maps (columns)": lambda: proc.maps(pid),
            "physmem: list(proc.maps) (records)": lambda: list(proc.maps(pid)),
        }, rounds(40))
        v.ratio("proc.maps / raw read", s["physmem: proc.maps (columns)"], s["raw read of maps"],
                at_most=1.5)
        info("list(proc.maps) / raw read", f"{s['physmem: list(proc.maps) (records)'].median / s['raw read of maps'].median:.2f}x")
        s = measure({
            "raw read of smaps": lambda: raw(f"/proc/{pid}/smaps"),
            "physmem: proc.smaps (columns)": lambda: proc.smaps(pid),
            "physmem: list(proc.smaps) (records)": lambda: list(proc.smaps(pid)),
            "psutil: memory_maps(grouped=False) (records)":
                lambda: ps.memory_maps(grouped=False),
        }, rounds(15))
        rollup = {"helper, 4,300 mappings": rollup_rounds(psutil, pid, rounds(301))}
    finally:
        p.kill()
        p.wait()
    small = subprocess.Popen(["sleep", "1000"])
    try:
        settled(small.pid)
        rollup["small process (sleep)"] = rollup_rounds(psutil, small.pid, rounds(3001))
    finally:
        small.kill()
        small.wait()
    v.ratio("proc.smaps / raw read", s["physmem: proc.smaps (columns)"], s["raw read of smaps"],
            at_most=2.0)
    v.ratio("psutil records / list(proc.smaps) records",
            s["psutil: memory_maps(grouped=False) (records)"],
            s["physmem: list(proc.smaps) (records)"], at_least=3.5)
    for where, r in rollup.items():
        full = r["psutil: memory_full_info() (statm + smaps_rollup)"]
        v.ratio(f"psutil memory_full_info() / proc.smaps_rollup(), {where}", full,
                r["physmem: proc.smaps_rollup()"], at_least=1.0)
        info(f"  psutil memory_full_info() / physmem statm() + smaps_rollup(), {where}",
             f"{full.median / r['physmem: proc.statm() + proc.smaps_rollup()'].median:.2f}x")
        floor = r["raw read of statm and smaps_rollup"].median
        info(f"  beyond the raw reads of both files, {where}: psutil / physmem (2 files)",
             f"{(full.median - floor) * 1e6:.1f} / "
             f"{(r['physmem: proc.statm() + proc.smaps_rollup()'].median - floor) * 1e6:.1f} us")
    return v.finish()


def settled(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` sleeps: after its exec, with its libraries mapped."""
    deadline = time.monotonic() + timeout
    while proc.stat(pid).state != "S":
        if time.monotonic() > deadline:
            raise SystemExit(f"process {pid} did not settle in {timeout} s")
        time.sleep(0.01)


def rollup_rounds(psutil: Any, pid: int, n: int) -> dict[str, Stats]:
    """psutil's rollup call against physmem's, records checked equal, then timed."""
    ps = psutil.Process(pid)
    full = ps.memory_full_info()
    rollup = proc.smaps_rollup(pid)
    statm = proc.statm(pid)
    private = sum(v for k, v in rollup.items() if k.startswith("Private_"))
    # Pss moves when another process maps or unmaps a shared page: compare the rest.
    same = (full.uss == private and full.swap == rollup["Swap"] and full.rss == statm.resident
            and full.vms == statm.size)
    if not same:
        raise SystemExit(f"psutil and physmem disagree on process {pid}: {full} vs "
                         f"{rollup}, {statm}")
    print(f"  process {pid}: {len(proc.maps(pid))} mappings; psutil's uss, swap, rss and vms "
          "equal physmem's")
    return measure({
        "raw read of statm and smaps_rollup":
            lambda: (raw(f"/proc/{pid}/statm"), raw(f"/proc/{pid}/smaps_rollup")),
        "physmem: proc.smaps_rollup()": lambda: proc.smaps_rollup(pid),
        "physmem: proc.statm() + proc.smaps_rollup()":
            lambda: (proc.statm(pid), proc.smaps_rollup(pid)),
        "psutil: memory_full_info() (statm + smaps_rollup)": ps.memory_full_info,
    }, n, scale=1e6, unit="us")


if __name__ == "__main__":
    sys.exit(main())
