"""physmem.proc vs a raw read and psutil, on a helper process with >= 2,000 mappings.

Targets (issue 3): smaps parse <= 2x raw read and >= 2.5x faster than psutil
memory_maps(grouped=False); maps parse <= 1.5x raw read. Prints best-of-N times (baseline
and physmem interleaved round by round) and ratios.

maps()/smaps() fill numpy columns and build records only when asked, so the "records"
lines also time building every Vma/Smaps, which is what code that iterates all pays.
"""
from __future__ import annotations

import os
import subprocess
import sys

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import best_interleaved  # noqa: E402

from physmem import proc
from physmem.proc._read import read_bytes

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


def main() -> int:
    p = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        nvma = len(proc.maps(p.pid))
        ps = psutil.Process(p.pid)
        # Each contender timed in turn, round after round, so drift in the machine's speed
        # falls on baseline and physmem alike; best of the rounds for each.
        raw_maps, our_maps, all_maps = best_interleaved([
            lambda: read_bytes(f"/proc/{p.pid}/maps"), lambda: proc.maps(p.pid),
            lambda: list(proc.maps(p.pid))], 50)
        raw_smaps, our_smaps, all_smaps = best_interleaved([
            lambda: read_bytes(f"/proc/{p.pid}/smaps"), lambda: proc.smaps(p.pid),
            lambda: list(proc.smaps(p.pid))], 20)
        (ps_smaps,) = best_interleaved([lambda: ps.memory_maps(grouped=False)], 5)
        # Back to back, a raw read finds the previous identical read's state still warm and
        # runs ~15% faster than inside a parse; show that variant too, to hide nothing.
        seq = [best_interleaved([fn], 50)[0] for fn in (
            lambda: read_bytes(f"/proc/{p.pid}/maps"), lambda: proc.maps(p.pid),
            lambda: read_bytes(f"/proc/{p.pid}/smaps"), lambda: proc.smaps(p.pid))]
    finally:
        p.kill()
        p.wait()
    print(f"helper mappings: {nvma}")
    print(f"maps : raw read {raw_maps * 1e3:.2f} ms, physmem.proc.maps {our_maps * 1e3:.2f} ms, "
          f"ratio {our_maps / raw_maps:.2f}x raw (target <= 1.5x)")
    print(f"smaps: raw read {raw_smaps * 1e3:.2f} ms, physmem.proc.smaps {our_smaps * 1e3:.2f} ms,"
          f" ratio {our_smaps / raw_smaps:.2f}x raw (target <= 2.0x)")
    print(f"smaps: psutil memory_maps(grouped=False) {ps_smaps * 1e3:.2f} ms, physmem "
          f"{ps_smaps / our_smaps:.2f}x faster (target >= 2.5x)")
    print(f"back to back (each timed alone): maps {seq[1] / seq[0]:.2f}x raw, "
          f"smaps {seq[3] / seq[2]:.2f}x raw")
    print(f"records: list(maps) {all_maps * 1e3:.2f} ms ({all_maps / raw_maps:.2f}x raw), "
          f"list(smaps) {all_smaps * 1e3:.2f} ms ({all_smaps / raw_smaps:.2f}x raw, "
          f"{ps_smaps / all_smaps:.2f}x faster than psutil)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
