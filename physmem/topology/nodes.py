"""NUMA nodes from /sys/devices/system/node: CPUs, memory, distances and hugepage pools."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .._sysfs import listdir, note_skipped, read_parsed
from .._syntax import parse_cpulist, parse_cpumask
from ..errors import ParseError
from .._hugepools import Pool, node_pools

__all__ = ["Anomaly", "Node", "NodeSets", "read_node_sets", "read_nodes"]

_NODE_DIR = re.compile(r"node(\d+)\Z")


class Anomaly(str):
    """Topology data that does not add up (a firmware bug, usually), for people and programs.

    It reads as its message; ``code`` (one of the constants below) says which inconsistency
    it is and ``cpus``/``nodes`` what it concerns, so a check never parses the message.
    """

    CPU_IN_SEVERAL_NODES = "cpu_in_several_nodes"  # cpus: the CPU; nodes: those listing it
    DISTANCE_NOT_ABOVE_LOCAL = "distance_not_above_local"  # nodes: (from, to)
    CPUS_WITHOUT_NODE = "cpus_without_node"  # cpus: online CPUs no online node lists
    DISTANCE_TABLE_SIZE = "distance_table_size"  # nodes: the node whose table was ignored

    code: str
    cpus: frozenset[int]
    nodes: tuple[int, ...]

    def __new__(cls, code: str, message: str, cpus: Iterable[int] = (),
                nodes: Iterable[int] = ()) -> Anomaly:
        self = super().__new__(cls, message)
        self.code, self.cpus, self.nodes = code, frozenset(cpus), tuple(nodes)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, str(self), self.cpus, self.nodes))


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


def read_node_sets(sys_root: str = "/sys", *, skipped: list[str] | None = None) -> NodeSets:
    """The node masks; with ``skipped``, an unreadable file reads as missing, noted there."""
    base = f"{sys_root}/devices/system/node"

    def _mask(name: str) -> frozenset[int] | None:
        return read_parsed(f"{base}/{name}", parse_cpulist, skipped)

    has_memory = _mask("has_memory")
    if has_memory is None:  # before 2.6.35 (or !CONFIG_HIGHMEM copies): normal memory is all
        has_memory = _mask("has_normal_memory")
    return NodeSets(_mask("possible"), _mask("online"), _mask("has_cpu"), has_memory)


def _node_cpus(path: str, skipped: list[str] | None) -> frozenset[int]:
    cpus = read_parsed(f"{path}/cpulist", parse_cpulist, skipped)
    if cpus is None:  # before 2.6.29 only the hex mask existed
        cpus = read_parsed(f"{path}/cpumap", parse_cpumask, skipped)
    return cpus or frozenset()


def _node_memory(path: str, skipped: list[str] | None) -> tuple[int | None, int | None]:
    from ..proc._meminfo import parse_meminfo  # the shared meminfo parser

    info = read_parsed(f"{path}/meminfo", parse_meminfo, skipped)
    if info is None:
        return None, None
    return info.get("MemTotal"), info.get("MemFree")


def _distances(data: bytes, path: str) -> list[int]:
    try:
        return [int(v) for v in data.split()]
    except ValueError:
        raise ParseError("not a distance list", path=path, line=data) from None


def _pools(nid: int, sys_root: str, skipped: list[str] | None) -> tuple[Pool, ...]:
    try:
        return tuple(node_pools(nid, sys_root))
    except ParseError as exc:
        note_skipped(skipped, f"node{nid} hugepage pools", exc)
        return ()


def _distance_columns(count: int, dirs: list[int], sets: NodeSets) -> list[int] | None:
    # The distance file has one column per online node (per possible node on some older
    # kernels); match on length rather than trusting either.
    for candidate in (dirs, sets.online, sets.possible):
        if candidate is not None and len(candidate) == count:
            return sorted(candidate)
    return None


def read_nodes(sys_root: str = "/sys", *, sets: NodeSets | None = None,
               online_cpus: frozenset[int] | None = None,
               skipped: list[str] | None = None) -> tuple[list[Node], list[Anomaly]]:
    """Every node with a sysfs directory, by id, and notes on data that did not add up.

    ``has_cpu`` means an *online* CPU when ``online_cpus`` is given, as the kernel's N_CPU does.
    A node without ``meminfo`` (or with one that does not parse, given ``skipped``) has
    ``mem_total``/``mem_free`` ``None``; without ``distance``, empty distances.
    """
    base = f"{sys_root}/devices/system/node"
    sets = sets or read_node_sets(sys_root, skipped=skipped)
    dirs = sorted(int(m.group(1)) for m in map(_NODE_DIR.match, listdir(base)) if m)
    notes: list[Anomaly] = []
    nodes = []
    for nid in dirs:
        path = f"{base}/node{nid}"
        cpus = _node_cpus(path, skipped)
        mem_total, mem_free = _node_memory(path, skipped)
        distances: dict[int, int] = {}
        values = read_parsed(f"{path}/distance", _distances, skipped)
        if values:
            cols = _distance_columns(len(values), dirs, sets)
            if cols is None:
                notes.append(Anomaly(Anomaly.DISTANCE_TABLE_SIZE,
                                     f"node{nid}/distance has {len(values)} entries for "
                                     f"{len(dirs)} nodes; distances ignored", nodes=(nid,)))
            else:
                distances = dict(zip(cols, values))
        has_memory = (mem_total > 0) if mem_total is not None else (
            sets.has_memory is not None and nid in sets.has_memory)
        nodes.append(Node(
            id=nid, cpus=cpus, mem_total=mem_total, mem_free=mem_free, distances=distances,
            has_cpu=bool(cpus & online_cpus if online_cpus is not None else cpus),
            has_memory=has_memory, hugepages=_pools(nid, sys_root, skipped),
            online=sets.online is None or nid in sets.online,
        ))
    return nodes, notes
