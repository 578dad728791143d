"""Timing of topology.read() on the 256-CPU POWER fixture and validate() on this machine.

Target (issue 6): both well under 100 ms. Run: python benchmarks/topology.py
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from physmem import topology
from physmem.validate import validate

TARGET_MS = 100.0
# The vendored hwloc trees the tests use (tests/data/sysfs).
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "sysfs"


def timed(fn, repeat: int = 20) -> tuple[float, float]:
    """(first call, median of the following calls) in milliseconds."""
    t0 = time.perf_counter()
    fn()
    first = (time.perf_counter() - t0) * 1e3
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1e3)
    return first, statistics.median(runs)


def report(name: str, first: float, median: float) -> bool:
    ok = median < TARGET_MS
    print(f"{name:<40} first {first:7.2f} ms  median {median:7.2f} ms  "
          f"ratio to target {median / TARGET_MS:5.3f}  {'OK' if ok else 'MISSED'}")
    return ok


def main() -> int:
    ok = True
    archive = FIXTURES / "256ppc-8n8s4t.tar.bz2"
    if archive.exists():
        with tempfile.TemporaryDirectory() as tmp:
            if shutil.which("tar"):
                subprocess.run(["tar", "-xjf", str(archive), "-C", tmp], check=True)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="tar")
            (root,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
            sys_root, proc_root = str(root / "sys"), str(root / "proc")
            topo = topology.read(sys_root, proc_root)
            print(f"POWER fixture: {len(topo.cpus)} CPUs, {len(topo.nodes)} nodes")
            ok &= report("topology.read() 256ppc-8n8s4t", *timed(lambda: topology.read(sys_root, proc_root)))
    else:
        print(f"fixture {archive} not found ; skipping POWER timing")
    ok &= report("validate() this machine", *timed(validate))
    ok &= report("topology.read() this machine", *timed(topology.read))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
