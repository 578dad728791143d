"""``physmem topo``: NUMA nodes, CPUs and PCI locality."""
from __future__ import annotations

import argparse

from . import Command, Exit
from ._output import Output

__all__ = ["EXAMPLE", "run", "TOPO"]

EXAMPLE = """example:
  physmem topo            # nodes with their usable CPUs, memory and distances
  physmem topo --json     # everything: nodes, cpus, pci_devices, cmdline, cpuset, anomalies
"""


def run(args: argparse.Namespace, out: Output) -> Exit:
    from .. import topology
    from ..topology import format_cpulist

    topo = topology.discover(args.sys_root, args.proc_root)
    if out.json:
        out.emit_json(topo.to_dict())
        return Exit.OK
    by_node = topo.cpus_by_node()
    ids = [n.id for n in topo.nodes]
    for n in topo.nodes:
        mem = out.size(n.mem_total) if n.mem_total is not None else "unknown"
        free = out.size(n.mem_free) if n.mem_free is not None else "unknown"
        print(f"node {n.id}: cpus {format_cpulist(by_node[n.id]) or '-'}  memory {mem} "
              f"(free {free})" + ("" if n.has_memory else "  [memory-less]")
              + ("" if n.has_cpu else "  [CPU-less]"))
    print("distances: " + " ".join(f"{i:>4}" for i in ids))
    for n in topo.nodes:
        print(f"  {n.id:>7}: " + " ".join(f"{n.distances.get(i, '-'):>4}" for i in ids))
    if topo.isolated_cpus or topo.cpu_sets.nohz_full:
        print(f"isolated: {format_cpulist(topo.isolated_cpus) or '-'}  "
              f"nohz_full: {format_cpulist(topo.cpu_sets.nohz_full) or '-'}")
    for d in topo.pci_devices:
        if d.numa_node is not None:
            print(f"pci {d.address}: node {d.numa_node}, cpus {format_cpulist(d.local_cpus)}")
    for a in topo.anomalies:
        print(f"anomaly: {a}")
    for note in topo.skipped:   # each file that did not parse, in one line (--json lists them)
        out.error(note)
    return Exit.OK


TOPO = Command(
    help="show NUMA nodes, CPUs and PCI locality",
    description="NUMA nodes with their usable CPUs, memory and distances; isolated and "
                "nohz_full CPUs; the node and local CPUs of each PCI device; anything odd in "
                "the topology. Reads sysfs and procfs (any user).",
    epilog=EXAMPLE, run=run, json="machine-readable output", roots=True)
