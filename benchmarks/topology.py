"""Topology and validator timings, and physmem's topology command beside lscpu and numactl.

Targets: topology.discover() on the 256-CPU POWER fixture and validate() on this
machine each well under 100 ms (median). Command against command (``physmem topo --json``
vs ``lscpu -J`` and ``numactl --hardware``) is reported beside them: those are C programs
that start in a millisecond, so the line shows what physmem's Python start-up costs.
"""
from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import (  # noqa: E402
    Verdicts, check_command_origin, info, measure, physmem_command, rounds, run_command)

from physmem import topology  # noqa: E402
import physmem.validate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def fixture(name: str) -> Path | None:
    # The vendored hwloc trees the tests use.
    for base in (REPO / "tests" / "data" / "sysfs",):
        if (base / name).exists():
            return base / name
    return None


def run_validate() -> object:
    fn = getattr(physmem.validate, "run", None) or getattr(physmem.validate, "validate")
    return fn()


def main() -> int:
    v = Verdicts("topology and validator")
    archive = fixture("256ppc-8n8s4t.tar.bz2")
    contenders = {"validate() this machine": run_validate,
                  "topology.discover() this machine": topology.discover}
    with tempfile.TemporaryDirectory() as tmp:
        if archive:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="tar")
            (root,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
            sys_root, proc_root = str(root / "sys"), str(root / "proc")
            topo = topology.discover(sys_root, proc_root)
            print(f"POWER fixture: {len(topo.cpus)} CPUs, {len(topo.nodes)} nodes")
            contenders["topology.discover() 256ppc-8n8s4t"] = lambda: topology.discover(sys_root, proc_root)
        s = measure(contenders, rounds(20))
    for name, stats in s.items():
        v.value(name, stats.median * 1e3, "ms", at_most=100.0)
    if not archive:
        v.skip("topology.discover() 256ppc-8n8s4t", "fixture not found")
    check_command_origin()
    commands = {"physmem topo --json": physmem_command("topo", "--json")}
    for peer, cmd in (("lscpu -J", ["lscpu", "-J"]), ("numactl --hardware", ["numactl", "--hardware"])):
        if shutil.which(cmd[0]):
            commands[peer] = cmd
        else:
            v.skip(peer, f"{cmd[0]} is not installed (benchmarks/peers/setup.sh)")
    c = measure({k: (lambda cmd=cmd: run_command(cmd)) for k, cmd in commands.items()},
                rounds(10))
    for peer in commands:
        if peer != "physmem topo --json":
            info(f"physmem topo --json / {peer} (command, start to exit)",
                 f"{c['physmem topo --json'].median / c[peer].median:.1f}x")
    return v.finish()


if __name__ == "__main__":
    sys.exit(main())
