"""NUMA section: node shape, firmware inconsistencies, distances, automatic balancing."""
from __future__ import annotations

from ..errors import FeatureUnavailable, PhysmemError
from ..numa.autobalance import balancing
from ..topology import Anomaly, format_cpulist
from .context import Context
from ..findings import Finding, Severity

__all__ = ["check"]

S = "numa"

# Finding id of each topology anomaly code; any other is "numa.inconsistent".
_ANOMALY_IDS = {Anomaly.CPU_IN_SEVERAL_NODES: "numa.cpu_in_several_nodes",
                Anomaly.DISTANCE_NOT_ABOVE_LOCAL: "numa.distance_not_above_local",
                Anomaly.CPUS_WITHOUT_NODE: "numa.cpus_without_node"}


def check(ctx: Context) -> list[Finding]:
    topo = ctx.topology
    out: list[Finding] = []
    grouped: dict[str, list[str]] = {}
    for anomaly in topo.anomalies:
        fid = _ANOMALY_IDS.get(anomaly.code, "numa.inconsistent")
        grouped.setdefault(fid, []).append(anomaly)
    for fid, texts in grouped.items():
        more = f" (and {len(texts) - 3} more)" if len(texts) > 3 else ""
        out.append(Finding(fid, S, Severity.WARNING,
                           "firmware NUMA data is inconsistent: " + "; ".join(texts[:3]) + more,
                           "update the BIOS/firmware; until then treat node locality as unknown"))
    if topo.skipped:
        more = f" (and {len(topo.skipped) - 3} more)" if len(topo.skipped) > 3 else ""
        out.append(Finding("numa.files_skipped", S, Severity.WARNING,
                           "some topology files could not be parsed and were ignored (each costs "
                           "only its own value): " + "; ".join(topo.skipped[:3]) + more))
    for node in topo.nodes:
        if node.has_cpu and not node.has_memory:
            out.append(Finding("numa.memoryless_node", S, Severity.WARNING,
                               f"node {node.id} has CPUs {format_cpulist(node.cpus)} but no memory: "
                               "their allocations are always remote",
                               "keep latency-critical threads off these CPUs"))
        elif node.has_memory and not node.has_cpu:
            out.append(Finding("numa.cpuless_node", S, Severity.INFO,
                               f"node {node.id} has memory but no online CPU (CXL/PMEM/HBM or "
                               "offline CPUs): only reachable remotely"))
    for a in topo.nodes:
        for b in topo.nodes:
            if a.id < b.id and b.id in a.distances and a.id in b.distances \
                    and a.distances[b.id] != b.distances[a.id]:
                out.append(Finding("numa.asymmetric_distance", S, Severity.WARNING,
                                   f"distance node{a.id}->node{b.id} is {a.distances[b.id]} but "
                                   f"node{b.id}->node{a.id} is {b.distances[a.id]}",
                                   "update the firmware (ACPI SLIT)"))
    try:
        bal = balancing(ctx.sys_root, ctx.proc_root)
    except FeatureUnavailable as exc:
        out.append(Finding("numa.balancing_unavailable", S, Severity.INFO, str(exc)))
    except (PhysmemError, OSError) as exc:
        out.append(Finding("numa.balancing_unreadable", S, Severity.WARNING,
                           f"cannot read NUMA balancing: {exc}"))
    else:
        if bal.enabled:
            multi = sum(1 for n in topo.nodes if n.has_memory) > 1
            out.append(Finding("numa.balancing_on", S, Severity.WARNING if multi else Severity.INFO,
                               f"automatic NUMA balancing is on (mode {int(bal.mode)}): it unmaps "
                               "pages to sample access and migrates them, which adds latency spikes"
                               + ("" if multi else " (one memory node: it has nothing to do)"),
                               "sysctl -w kernel.numa_balancing=0 (boot: numa_balancing=disable)"))
    return out
