"""``physmem maps|smaps|numa-maps|meminfo|buddyinfo``: the /proc memory files, typed."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import proc
from ._output import size_text

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
        text = [f"{d['address']:x} {d['policy']} pages={sum(d['nodes'].values())} "
                f"nodes={d['nodes']} {d['file'] or ''}" for d in data]
    elif cmd == "meminfo":
        data = proc.meminfo()
        # HugePages_* are page counts; every other field is a size in bytes.
        text = [f"{k:<20} {v if k.startswith('HugePages_') else size_text(v)}"
                for k, v in data.items()]
    else:
        data = [{"node": b.node, "zone": b.zone, "free": list(b.free),
                 "free_pages": b.free_pages} for b in proc.buddyinfo()]
        text = [f"node {d['node']} {d['zone']:<8} " + " ".join(map(str, d["free"]))
                for d in data]
    if args.json:
        json.dump(data, sys.stdout, indent=None)
        sys.stdout.write("\n")
    else:
        print("\n".join(text))
    return 0


def register(sub: Any) -> None:
    for name in ("maps", "smaps", "numa-maps", "meminfo", "buddyinfo"):
        p = sub.add_parser(name, help=f"/proc {name.replace('-', '_')}, parsed",
                           epilog=_EPILOG[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in ("maps", "smaps", "numa-maps"):
            p.add_argument("--pid", type=int, default=None, help="process (default: physmem)")
        p.add_argument("--json", action="store_true", help="JSON output (sizes in bytes)")
        p.set_defaults(func=_run)
