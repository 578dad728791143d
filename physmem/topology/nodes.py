"""NUMA nodes from /sys/devices/system/node: CPUs, memory, distances and hugepage pools."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .._sysfs import listdir, read_optional
from ..errors import ParseError
from ..hugepages.pools import Pool, node_pools
from .cpulist import parse_cpulist, parse_cpumask

__all__ = ["Node", "NodeSets", "read_node_sets", "read_nodes"]

_NODE_DIR = re.compile(r"node(\d+)\Z")


@dataclass(frozen=True)
class Node:
    """One NUMA node. ``cpus`` is the kernel's raw cpulist (offline CPUs included).

    ``distances`` maps node id -> the firmware's relative distance (10 = local).
    ``mem_total``/``mem_free`` are bytes, ``None`` if the node has no meminfo file.
    """

    id: int
    cpus: frozenset[int]
    mem_total: int | None
    mem_free: int | None
    distances: dict[int, int] = field(hash=False)
    has_cpu: bool
    has_memory: bool
    hugepages: tuple[Pool, ...] = ()
    online: bool = True


@dataclass(frozen=True)
class NodeSets:
    """The kernel's node state masks; ``None`` where the file is missing (old kernels, no NUMA)."""

    possible: frozenset[int] | None
    online: frozenset[int] | None
    has_cpu: frozenset[int] | None
    has_memory: frozenset[int] | None


def _mask(base: str, name: str) -> frozenset[int] | None:
    data = read_optional(f"{base}/{name}")
    return None if data is None else parse_cpulist(data, f"{base}/{name}")


def read_node_sets(sys_root: str = "/sys") -> NodeSets:
    base = f"{sys_root}/devices/system/node"
    has_memory = _mask(base, "has_memory")
    if has_memory is None:  # before 2.6.35 (or !CONFIG_HIGHMEM copies): normal memory is all
        has_memory = _mask(base, "has_normal_memory")
    return NodeSets(_mask(base, "possible"), _mask(base, "online"), _mask(base, "has_cpu"),
                    has_memory)


def _node_cpus(path: str) -> frozenset[int]:
    data = read_optional(f"{path}/cpulist")
    if data is not None:
        return parse_cpulist(data, f"{path}/cpulist")
    data = read_optional(f"{path}/cpumap")  # before 2.6.29 only the hex mask existed
    return parse_cpumask(data, f"{path}/cpumap") if data is not None else frozenset()


def _node_memory(path: str) -> tuple[int | None, int | None]:
    from ..proc.meminfo import parse_meminfo  # the shared meminfo parser

    data = read_optional(f"{path}/meminfo")
    if data is None:
        return None, None
    info = parse_meminfo(data, f"{path}/meminfo")
    return info.get("MemTotal"), info.get("MemFree")


def _distance_columns(count: int, dirs: list[int], sets: NodeSets) -> list[int] | None:
    # The distance file has one column per online node (per possible node on some older
    # kernels); match on length rather than trusting either.
    for candidate in (dirs, sets.online, sets.possible):
        if candidate is not None and len(candidate) == count:
            return sorted(candidate)
    return None


def read_nodes(sys_root: str = "/sys", *, sets: NodeSets | None = None,
               online_cpus: frozenset[int] | None = None) -> tuple[list[Node], list[str]]:
    """Every node with a sysfs directory, by id, and notes on data that did not add up.

    ``has_cpu`` means an *online* CPU when ``online_cpus`` is given, as the kernel's N_CPU does.
    """
    base = f"{sys_root}/devices/system/node"
    sets = sets or read_node_sets(sys_root)
    dirs = sorted(int(m.group(1)) for m in map(_NODE_DIR.match, listdir(base)) if m)
    notes: list[str] = []
    nodes = []
    for nid in dirs:
        path = f"{base}/node{nid}"
        cpus = _node_cpus(path)
        mem_total, mem_free = _node_memory(path)
        distances: dict[int, int] = {}
        raw = read_optional(f"{path}/distance")
        if raw is not None:
            try:
                values = [int(v) for v in raw.split()]
            except ValueError:
                raise ParseError("not a distance list", path=f"{path}/distance", line=raw) from None
            cols = _distance_columns(len(values), dirs, sets)
            if cols is None:
                notes.append(f"node{nid}/distance has {len(values)} entries for "
                             f"{len(dirs)} nodes; distances ignored")
            else:
                distances = dict(zip(cols, values))
        has_memory = (mem_total > 0) if mem_total is not None else (
            sets.has_memory is not None and nid in sets.has_memory)
        nodes.append(Node(
            id=nid, cpus=cpus, mem_total=mem_total, mem_free=mem_free, distances=distances,
            has_cpu=bool(cpus & online_cpus if online_cpus is not None else cpus), has_memory=has_memory, hugepages=tuple(node_pools(nid, sys_root)),
            online=sets.online is None or nid in sets.online,
        ))
    return nodes, notes
