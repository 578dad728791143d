"""Parse hwloc's ``lstopo`` text output: the independent expectations for the fixture trees."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_OBJ = re.compile(r"^(\s*)(\w+)(?:\([^)]*\))? (?:L#(\d+) )?\(?([^)]*)\)?")
_PHYS = re.compile(r"P#(\d+)")
_LOCAL = re.compile(r"\blocal=(\d+)(KiB|MiB|GiB|TiB|B)\b")
_TOTAL = re.compile(r"\btotal=(\d+)(KiB|MiB|GiB|TiB|B)\b")
_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


@dataclass
class LstopoNode:
    os_index: int
    local: tuple[int, str]  # (value, unit) exactly as printed
    cpus: set[int] = field(default_factory=set)


@dataclass
class Lstopo:
    nodes: dict[int, LstopoNode]
    machine_total: tuple[int, str] | None
    pus: dict[int, dict[str, int | None]]  # PU os index -> {"core": P#, "package": P#}
    distances: dict[tuple[int, int], int]  # by node os index
    hidden_pus: set[int]


def matches(size_bytes: int, printed: tuple[int, str]) -> bool:
    """hwloc prints sizes rounded to its unit; accept within one unit either way."""
    value, unit = printed
    return abs(size_bytes / _UNIT[unit] - value) <= 1


def parse(text: str) -> Lstopo:
    lines = text.splitlines()
    # (indent, kind, os_index, attrs) for the object lines of the tree.
    objs = []
    for line in lines:
        m = _OBJ.match(line)
        if not m or line.startswith(("depth", " depth", "Special", "Relative", "Topology")):
            continue
        if not m.group(2)[0].isupper() or m.group(2) == "index":
            continue
        attrs = line[line.find("(") :] if "(" in line else ""
        pm = _PHYS.search(attrs.split("(", 2)[-1] if m.group(2).startswith("Group") else attrs)
        objs.append((len(m.group(1)), m.group(2), int(pm.group(1)) if pm else None, attrs))
    nodes: dict[int, LstopoNode] = {}
    logical_nodes: list[int] = []
    pus: dict[int, dict[str, int | None]] = {}
    machine_total = None
    for i, (indent, kind, pidx, attrs) in enumerate(objs):
        if kind == "Machine":
            t = _TOTAL.search(attrs)
            machine_total = (int(t.group(1)), t.group(2)) if t else None
        if kind == "NUMANode":
            lm = _LOCAL.search(attrs)
            node = LstopoNode(pidx, (int(lm.group(1)), lm.group(2)))
            # A NUMA node is attached to its parent: its CPUs are the PUs below that parent.
            parent = max((j for j in range(i) if objs[j][0] < indent), default=None)
            pindent = objs[parent][0] if parent is not None else -1
            for j in range((parent if parent is not None else -1) + 1, len(objs)):
                if objs[j][0] <= pindent:
                    break
                if objs[j][1] == "PU":
                    node.cpus.add(objs[j][2])
            nodes[pidx] = node
            logical_nodes.append(pidx)
        if kind == "PU":
            ctx: dict[str, int | None] = {"core": None, "package": None}
            level = indent
            for j in range(i - 1, -1, -1):
                if objs[j][0] < level:
                    level = objs[j][0]
                    if objs[j][1] == "Core" and ctx["core"] is None:
                        ctx["core"] = objs[j][2]
                    if objs[j][1] == "Package" and ctx["package"] is None:
                        ctx["package"] = objs[j][2]
            pus[pidx] = ctx
    distances: dict[tuple[int, int], int] = {}
    for k, line in enumerate(lines):
        if line.startswith("Relative latency matrix"):
            header = lines[k + 1].split()[1:]
            for row in lines[k + 2 : k + 2 + len(header)]:
                cells = row.split()
                for col, value in zip(header, cells[1:]):
                    a, b = logical_nodes[int(cells[0])], logical_nodes[int(col)]
                    distances[(a, b)] = int(value)
    hidden: set[int] = set()
    for line in lines:
        m = re.match(r"\d+ processors not represented in topology: (0x[0-9a-f,x]+)", line)
        if m:
            mask = int(m.group(1).replace(",0x", "").replace(",", ""), 16)
            hidden = {b for b in range(mask.bit_length()) if mask >> b & 1}
    return Lstopo(nodes, machine_total, pus, distances, hidden)
