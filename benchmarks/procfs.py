"""physmem.proc against a raw read and against psutil, records against records, on a helper
process with about 2,600 mappings.

Targets: maps parse <= 1.5x a raw read, smaps parse <= 2x a raw read;
``list(proc.smaps())`` >= 3.5x faster than psutil ``memory_maps(grouped=False)`` (both build
every record); ``smaps_rollup`` >= 20x faster than ``memory_maps(grouped=True)``.
Every contender runs the same number of rounds, interleaved in shuffled order (see _bench);
the raw reads are contenders of their own, not timed right after a parse.
"""
from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import Verdicts, info, measure  # noqa: E402

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


def raw(path: str) -> bytes:
    """What any reader must at least do: open, read to the end, close."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
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
        }, 40)
        v.ratio("proc.maps / raw read", s["physmem: proc.maps (columns)"], s["raw read of maps"],
                at_most=1.5)
        info("list(proc.maps) / raw read", f"{s['physmem: list(proc.maps) (records)'].median / s['raw read of maps'].median:.2f}x")
        s = measure({
            "raw read of smaps": lambda: raw(f"/proc/{pid}/smaps"),
            "physmem: proc.smaps (columns)": lambda: proc.smaps(pid),
            "physmem: list(proc.smaps) (records)": lambda: list(proc.smaps(pid)),
            "psutil: memory_maps(grouped=False) (records)":
                lambda: ps.memory_maps(grouped=False),
            "raw read of smaps_rollup": lambda: raw(f"/proc/{pid}/smaps_rollup"),
            "physmem: proc.smaps_rollup": lambda: proc.smaps_rollup(pid),
            "psutil: memory_maps(grouped=True)": lambda: ps.memory_maps(grouped=True),
            "physmem: statm + smaps_rollup": lambda: (proc.statm(pid), proc.smaps_rollup(pid)),
            "psutil: memory_full_info()": ps.memory_full_info,
        }, 15)
    finally:
        p.kill()
        p.wait()
    v.ratio("proc.smaps / raw read", s["physmem: proc.smaps (columns)"], s["raw read of smaps"],
            at_most=2.0)
    v.ratio("psutil records / list(proc.smaps) records",
            s["psutil: memory_maps(grouped=False) (records)"],
            s["physmem: list(proc.smaps) (records)"], at_least=3.5)
    v.ratio("psutil memory_maps(grouped=True) / smaps_rollup",
            s["psutil: memory_maps(grouped=True)"], s["physmem: proc.smaps_rollup"], at_least=20)
    info("psutil memory_full_info / physmem statm+smaps_rollup",
         f"{s['psutil: memory_full_info()'].median / s['physmem: statm + smaps_rollup'].median:.2f}x")
    info("proc.smaps_rollup / raw read of smaps_rollup",
         f"{s['physmem: proc.smaps_rollup'].median / s['raw read of smaps_rollup'].median:.2f}x")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
