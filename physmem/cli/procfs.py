"""``physmem maps|smaps|numa-maps|meminfo|buddyinfo``: the /proc memory files, typed."""
from __future__ import annotations

import argparse
from typing import Any

from .. import proc
from ..addressing import page_size
from ._output import emit_json, pid_arg, print_table, size_text

_EPILOG = {
    "maps": "example: physmem maps --pid $$ --json | jq '.[] | select(.kind==\"heap\")'",
    "smaps": "example: physmem smaps --pid $$ --json | jq 'map(.fields.Rss) | add'",
    "numa-maps": "example: physmem numa-maps --json | jq '.[] | .nodes'",
    "meminfo": "example: physmem meminfo --json | jq .MemAvailable",
    "buddyinfo": "example: physmem buddyinfo --json | jq '.[] | {zone, free_pages}'",
}


def _vma(v: Any) -> dict[str, Any]:
    return {"start": v.start, "end": v.end, "prot": "".join(
        c if v.prot & f else "-" for c, f in (("r", 1), ("w", 2), ("x", 4))),
        "shared": v.shared, "offset": v.offset, "device": [v.device.major, v.device.minor],
        "inode": v.inode, "path": v.path, "kind": v.kind.value, "deleted": v.deleted}


def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    pid = getattr(args, "pid", None)
    if cmd == "maps":
        data: Any = [_vma(v) for v in proc.maps(pid)]
        text = [f"{d['start']:x}-{d['end']:x} {d['prot']}{'s' if d['shared'] else 'p'} "
                f"{d['kind']:<10} {d['path']}" for d in data]
    elif cmd == "smaps":
        data = [dict(_vma(s.vma), fields=s.fields, vm_flags=sorted(s.vm_flags))
                for s in proc.smaps(pid)]
        text = [f"{d['start']:x}-{d['end']:x} rss={size_text(d['fields'].get('Rss', 0))} "
                f"pss={size_text(d['fields'].get('Pss', 0))} {d['path']}" for d in data]
    elif cmd == "numa-maps":
        data = [dict(n._asdict(), nodes={str(k): v for k, v in n.nodes.items()})
                for n in proc.numa_maps(pid)]
        text = [_numa_maps_line(d) for d in data]
    elif cmd == "meminfo":
        data = proc.meminfo()
        # HugePages_* are page counts; every other field is a size in bytes.
        text = [f"{k:<20} {v if k.startswith('HugePages_') else size_text(v)}"
                for k, v in data.items()]
    else:
        data = [{"node": b.node, "zone": b.zone, "free": list(b.free),
                 "free_pages": b.free_pages} for b in proc.buddyinfo()]
        if not args.json:
            _buddyinfo_table(data)
            return 0
        text = []
    if args.json:
        emit_json(data)
    else:
        print("\n".join(text))
    return 0


def _numa_maps_line(d: dict[str, Any]) -> str:
    """One mapping in the kernel's words and order: address, policy, what is mapped
    (file=PATH, heap or stack), huge, then the pages and the pages per node (N0=12 N1=3)."""
    words = [f"{d['address']:x}", d["policy"]]
    if d["file"] is not None:
        words.append(f"file={d['file']}")
    words += [label for label in ("heap", "stack", "huge") if d[label]]
    words.append(f"pages={sum(d['nodes'].values())}")
    words += [f"N{k}={v}" for k, v in d["nodes"].items()]
    return " ".join(words)


def _buddyinfo_table(rows: list[dict[str, Any]]) -> None:
    """Free blocks per order, each column headed by its block size, and the zone's total."""
    page = page_size()
    orders = max((len(r["free"]) for r in rows), default=0)
    print_table(["node", "zone", *[size_text(page << k).replace(".0 ", " ") for k in range(orders)],
                 "free"],
                [[r["node"], r["zone"], *r["free"], size_text(r["free_pages"] * page)] for r in rows],
                align="ll" + "r" * (orders + 1))
    print("(free blocks of each size per zone, from /proc/buddyinfo)")


_DESCRIPTION = {
    "maps": "The mappings of a process from /proc/PID/maps: range, protection, kind (heap, "
            "stack, file, anonymous, ...) and path.",
    "smaps": "Each mapping of a process from /proc/PID/smaps with its resident and "
             "proportional sizes (Rss, Pss); --json gives every smaps field in bytes and the "
             "VmFlags.",
    "numa-maps": "The NUMA policy of each mapping of a process and its pages per node, from "
                 "/proc/PID/numa_maps (N0=12 is 12 pages on node 0).",
    "meminfo": "System memory totals from /proc/meminfo; HugePages_* are page counts, every "
               "other field a size.",
    "buddyinfo": "Free memory per zone from /proc/buddyinfo: how many free blocks of each "
                 "size (4K, 8K, ... 4M on x86) the buddy allocator holds, and their total.",
}


def register(sub: Any) -> None:
    for name in ("maps", "smaps", "numa-maps", "meminfo", "buddyinfo"):
        p = sub.add_parser(name, help=f"/proc {name.replace('-', '_')}, parsed",
                           description=_DESCRIPTION[name], epilog=_EPILOG[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in ("maps", "smaps", "numa-maps"):
            p.add_argument("--pid", type=pid_arg, default=None, help="process (default: physmem)")
        p.add_argument("--json", action="store_true", help="JSON output (sizes in bytes)")
        p.set_defaults(func=_run)
