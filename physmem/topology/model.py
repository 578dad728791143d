"""The machine's topology in one object: nodes, CPUs, PCI devices, boot parameters, cpusets."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .. import _sysfs
from .._args import as_int
from ..errors import FileMissing, InvalidArgument, ParseError
from .cmdline import Cmdline, read_cmdline
from .._syntax import format_cpulist
from .cpus import Cpu, CpuSets, read_cpu_sets, read_cpus
from .cpusets import Affinity, Cpuset, read_affinity, read_cpuset
from .nodes import Anomaly, Node, NodeSets, read_node_sets, read_nodes
from .pci import PciDevice, read_pci_devices

__all__ = ["Topology", "discover"]

LOCAL_DISTANCE = 10  # ACPI SLIT: a node's distance to itself


@dataclass(frozen=True)
class Topology:
    """A snapshot; build it with :func:`discover`. ``anomalies`` lists data that does not add up
    (firmware bugs such as a CPU claimed by two nodes), each a message with a ``code``; the
    validator reports them."""

    nodes: tuple[Node, ...]
    cpus: tuple[Cpu, ...]
    cpu_sets: CpuSets
    node_sets: NodeSets
    pci_devices: tuple[PciDevice, ...]
    cmdline: Cmdline | None
    affinity: Affinity
    cpuset: Cpuset | None
    anomalies: tuple[Anomaly, ...]
    numa_in_sysfs: bool  # False: no node directories, one node 0 was assumed (as numactl does)
    # Files that exist but could not be parsed ("path: ignored, why"): each cost its one field.
    skipped: tuple[str, ...] = ()

    def node(self, node: int) -> Node:
        node = as_int(node, "node")   # True == 1 and 1.0 == 1 would find node 1 otherwise
        for n in self.nodes:
            if n.id == node:
                return n
        raise InvalidArgument(f"no NUMA node {node} (nodes: {[n.id for n in self.nodes]})")

    def cpu(self, cpu: int) -> Cpu:
        cpu = as_int(cpu, "cpu")
        for c in self.cpus:
            if c.id == cpu:
                return c
        raise InvalidArgument(f"no CPU {cpu} (CPUs: {format_cpulist(c.id for c in self.cpus)})")

    def distance(self, a: int, b: int) -> int | None:
        """Firmware distance from node ``a`` to ``b`` (10 = local), ``None`` if not reported."""
        return self.node(a).distances.get(self.node(b).id)

    def node_of_cpu(self, cpu: int) -> int | None:
        """The node whose cpulist holds ``cpu`` (the lowest, if firmware lists it twice)."""
        return self.cpu(cpu).node

    @property
    def allowed_cpus(self) -> frozenset[int]:
        """CPUs this process may run on: affinity, else its cpuset, else all."""
        if self.affinity.cpus is not None:
            return self.affinity.cpus
        if self.cpuset is not None and self.cpuset.cpus is not None:
            return self.cpuset.cpus
        return self.cpu_sets.possible

    @property
    def valid_cpus(self) -> frozenset[int]:
        """possible & present & online & allowed to this process."""
        s = self.cpu_sets
        return s.possible & s.present & s.online & self.allowed_cpus

    def cpus_by_node(self) -> dict[int, frozenset[int]]:
        """Valid CPUs of every node; CPU-less (and memory-less) nodes are kept, empty."""
        valid = self.valid_cpus
        return {n.id: n.cpus & valid for n in self.nodes}

    @property
    def isolated_cpus(self) -> frozenset[int]:
        """isolcpus (domain) CPUs plus cgroup v2 isolated partitions: isolated right now."""
        extra = self.cpuset.isolated if self.cpuset and self.cpuset.isolated else frozenset()
        return self.cpu_sets.isolated | extra

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; CPU sets are kernel-style list strings ("0-3,8"), sizes in bytes."""
        def conv(v: Any) -> Any:
            if isinstance(v, frozenset):
                return format_cpulist(v)
            if isinstance(v, dict):
                return {str(k): conv(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [conv(x) for x in v]
            if dataclasses.is_dataclass(v):
                return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if hasattr(v, "_asdict"):
                return {k: conv(x) for k, x in v._asdict().items()}
            return v

        out: dict[str, Any] = conv({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        out["cpus_by_node"] = conv(self.cpus_by_node())
        out["valid_cpus"] = format_cpulist(self.valid_cpus)
        out["isolated_cpus"] = format_cpulist(self.isolated_cpus)
        return out


def _system_memory(proc_root: str, skipped: list[str]) -> tuple[int | None, int | None]:
    from .._sysfs import note_skipped
    from ..proc._meminfo import parse_meminfo  # the shared /proc/meminfo parser
    from ..proc._read import read_optional

    path = f"{proc_root}/meminfo"
    data = read_optional(path)
    info: dict[str, int] = {}
    try:
        info = {} if data is None else parse_meminfo(data, path)
    except ParseError as exc:
        note_skipped(skipped, path, exc)
    return info.get("MemTotal"), info.get("MemFree")


def discover(sys_root: str = "/sys", proc_root: str = "/proc") -> Topology:
    """Read the topology of the machine whose /sys and /proc are given."""
    cpu_dir = os.path.join(sys_root, "devices", "system", "cpu")
    if not _sysfs.is_dir(cpu_dir):
        # Every kernel with sysfs has this directory: a wrong root, not a small machine.
        raise FileMissing(f"no CPUs under {cpu_dir}: is {sys_root!r} a sysfs tree? Pass "
                          "sys_root= the directory that holds devices/system/cpu",
                          path=cpu_dir)
    # A kernel quirk or damaged file costs its one field; what was skipped is listed.
    skipped: list[str] = []
    cpu_sets = read_cpu_sets(sys_root, skipped=skipped)
    node_sets = read_node_sets(sys_root, skipped=skipped)
    nodes, anomalies = read_nodes(sys_root, sets=node_sets, online_cpus=cpu_sets.online,
                                  skipped=skipped)
    numa = bool(nodes)
    if not numa:
        total, free = _system_memory(proc_root, skipped)
        present = cpu_sets.present
        nodes = [Node(id=0, cpus=present, mem_total=total, mem_free=free,
                      distances={0: LOCAL_DISTANCE}, has_cpu=bool(present & cpu_sets.online),
                      has_memory=bool(total))]
    owners: dict[int, list[int]] = {}
    for n in nodes:
        for c in n.cpus:
            owners.setdefault(c, []).append(n.id)
    for cpu, ids in sorted(owners.items()):
        if len(ids) > 1:
            anomalies.append(Anomaly(Anomaly.CPU_IN_SEVERAL_NODES,
                                     f"cpu{cpu} is listed by nodes {ids}", cpus=(cpu,), nodes=ids))
    for n in nodes:
        if n.distances and n.distances.get(n.id) is not None:
            for other, d in n.distances.items():
                if other != n.id and d <= n.distances[n.id]:
                    anomalies.append(Anomaly(
                        Anomaly.DISTANCE_NOT_ABOVE_LOCAL,
                        f"node{n.id}->node{other} distance {d} is not above the "
                        f"local distance {n.distances[n.id]}", nodes=(n.id, other)))
    orphans = cpu_sets.online - owners.keys()
    if orphans:
        # Their node is offline or absent (firmware hid it): no memory is local to them.
        anomalies.append(Anomaly(
            Anomaly.CPUS_WITHOUT_NODE,
            f"online CPUs {format_cpulist(orphans)} belong to no online NUMA node", cpus=orphans))
    node_of = {c: ids[0] for c, ids in owners.items()}
    cpus = read_cpus(sys_root, sets=cpu_sets, node_of=node_of, skipped=skipped)
    possible = cpu_sets.possible
    pci = read_pci_devices(sys_root, skipped=skipped)
    affinity = read_affinity(proc_root, skipped=skipped)
    cpuset = read_cpuset(proc_root, skipped=skipped)
    return Topology(
        nodes=tuple(nodes), cpus=tuple(cpus), cpu_sets=cpu_sets, node_sets=node_sets,
        pci_devices=tuple(pci), cmdline=read_cmdline(proc_root, possible), affinity=affinity,
        cpuset=cpuset, anomalies=tuple(anomalies), numa_in_sysfs=numa, skipped=tuple(skipped),
    )
