"""CPU placement for a DPDK-style application: which CPUs for what, and why.

Control loops want an isolated CPU (isolcpus / cgroup v2 isolated partition, ideally also
nohz_full) on the NUMA node of the device they drive, one per physical core so no
hyper-thread sibling steals cycles. The kernel's housekeeping and the watchdog belong on
the CPUs that are *not* isolated. :func:`plan` only computes; it moves nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ._args import as_iterable, as_nonneg, as_text
from .errors import InvalidArgument
from .topology import Topology, format_cpulist

__all__ = ["Reason", "Placement", "plan"]


@dataclass(frozen=True)
class Reason:
    role: str  # housekeeping, watchdog, control_loop, background, device_local
    cpus: frozenset[int]
    why: str


@dataclass(frozen=True)
class Placement:
    housekeeping: frozenset[int]
    watchdog: frozenset[int]
    control_loops: tuple[int, ...]
    background: frozenset[int]
    device_local: dict[str, frozenset[int]] = field(hash=False)
    node: int | None
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "housekeeping": format_cpulist(self.housekeeping),
            "watchdog": format_cpulist(self.watchdog),
            "control_loops": list(self.control_loops),
            "background": format_cpulist(self.background),
            "device_local": {k: format_cpulist(v) for k, v in self.device_local.items()},
            "reasons": [{"role": r.role, "cpus": format_cpulist(r.cpus), "why": r.why}
                        for r in self.reasons],
        }


def _core(topo: Topology, cpu: int) -> tuple[object, ...]:
    c = topo.cpu(cpu)
    if c.core_id is None:
        return ("cpu", cpu)
    return (c.package_id, c.core_id)


def plan(topology: Topology, *, devices: Sequence[str] = (), control_loops: int = 1) -> Placement:
    """Place ``control_loops`` loops near ``devices`` (PCI addresses) on ``topology``."""
    if not isinstance(topology, Topology):
        raise InvalidArgument("topology must be a Topology (from physmem.topology.discover()), got "
                              f"{type(topology).__name__} {topology!r:.60}")
    topo = topology
    control_loops = as_nonneg(control_loops, "control_loops")
    # A str is a sequence too: "0000:03:00.0" would be twelve one-character devices.
    what = "a list of PCI addresses such as ['0000:03:00.0']"
    devices = tuple(as_text(d, "devices entry") for d in as_iterable(devices, "devices", what))
    valid = topo.valid_cpus
    if not valid:
        raise InvalidArgument("this process may run on no online CPU; nothing to plan")
    reasons: list[Reason] = []
    quiet = (topo.isolated_cpus | topo.cpu_sets.nohz_full) & valid

    housekeeping = valid - quiet
    if not housekeeping:
        housekeeping = frozenset({min(valid)})
        reasons.append(Reason("housekeeping", housekeeping,
                              "every usable CPU is isolated; the lowest one has to do the "
                              "kernel's housekeeping anyway"))
    else:
        reasons.append(Reason("housekeeping", housekeeping,
                              "not isolated and not nohz_full: kernel threads, IRQs and other "
                              "processes belong here"))
    watchdog = housekeeping
    reasons.append(Reason("watchdog", watchdog,
                          f"kernel.watchdog_cpumask={format_cpulist(watchdog)} keeps the "
                          "lockup detector off isolated CPUs"))

    by_node = topo.cpus_by_node()
    device_local: dict[str, frozenset[int]] = {}
    node: int | None = None
    for address in devices:
        dev = next((d for d in topo.pci_devices if d.address == address), None)
        if dev is None:
            raise InvalidArgument(f"no PCI device {address!r} (expected e.g. 0000:03:00.0)")
        if dev.numa_node is not None and dev.numa_node in by_node:
            local = by_node[dev.numa_node]
            why = f"node {dev.numa_node}, where firmware places {address}"
            node = dev.numa_node if node is None else node
        else:
            local = dev.local_cpus & valid
            why = f"{address} reports no NUMA node; its local_cpulist is used"
        device_local[address] = local
        reasons.append(Reason("device_local", local, why))
    if node is None:
        # No device with a node: the node with most quiet CPUs, then most usable CPUs.
        node = max(by_node, key=lambda n: (len(by_node[n] & quiet), len(by_node[n]), -n))
    near = by_node.get(node, frozenset()) if not devices or node in by_node else valid
    if devices and not near:
        near = frozenset().union(*device_local.values()) & valid

    loops: list[int] = []
    used_cores: set[tuple[object, ...]] = set()

    def take(candidates: list[int], why: str) -> None:
        for cpu in candidates:
            if len(loops) == control_loops:
                return
            core = _core(topo, cpu)
            if core in used_cores:
                continue
            used_cores.add(core)
            loops.append(cpu)
            reasons.append(Reason("control_loop", frozenset({cpu}), why))

    def sharing(cpu: int) -> tuple[int, int, int]:
        # Least shared first: fewer online siblings, not a housekeeping CPU others favour, high id.
        sib = len(topo.cpu(cpu).thread_siblings & valid)
        return (sib, int(cpu == min(housekeeping)), -cpu)

    nohz = topo.cpu_sets.nohz_full
    take(sorted(near & quiet, key=lambda c: (c not in nohz, c)),
         f"isolated CPU on node {node}, near the device's memory")
    take(sorted(near - quiet - {min(housekeeping)}, key=sharing),
         f"no isolated CPU left on node {node}: least shared CPU there (isolate it with "
         f"isolcpus= or a cgroup v2 isolated partition)")
    take(sorted(valid & quiet - near, key=lambda c: (c not in nohz, c)),
         f"node {node} has no suitable CPU left: isolated CPU on another node (remote memory)")
    take(sorted(valid - quiet - near - {min(housekeeping)}, key=sharing),
         f"remote, shared CPU: the machine has too few CPUs for {control_loops} loop(s)")
    if len(loops) < control_loops:
        raise InvalidArgument(f"cannot place {control_loops} control loops one per core: only "
                              f"{len(loops)} core(s) available to this process")

    loop_cores = {_core(topo, c) for c in loops}
    background = frozenset(c for c in housekeeping if _core(topo, c) not in loop_cores)
    near_bg = background & near
    background = near_bg or background
    reasons.append(Reason("background", background,
                          "housekeeping CPUs not sharing a core with a control loop"
                          + (f", on node {node}" if near_bg else "")))
    return Placement(housekeeping=housekeeping, watchdog=watchdog, control_loops=tuple(loops),
                     background=background, device_local=device_local, node=node,
                     reasons=tuple(reasons))
