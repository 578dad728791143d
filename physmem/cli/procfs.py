"""``physmem maps|smaps|numa-maps|meminfo|buddyinfo``: the /proc memory files, typed."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from . import Command, Exit
from ._options import add_pid
from ._output import Output

__all__ = ["maps", "smaps", "numa_maps", "meminfo", "buddyinfo", "MAPS", "SMAPS", "NUMA_MAPS",
           "MEMINFO", "BUDDYINFO"]


def _vma(v: Any) -> dict[str, Any]:
    return {"start": v.start, "end": v.end, "prot": "".join(
        c if v.prot & f else "-" for c, f in (("r", 1), ("w", 2), ("x", 4))),
        "shared": v.shared, "offset": v.offset, "device": [v.device.major, v.device.minor],
        "inode": v.inode, "path": v.path, "kind": v.kind.value, "deleted": v.deleted}


def _show(out: Output, data: Any, text: Callable[[], None]) -> Exit:
    """``data`` as the JSON document under --json, else ``text()`` prints it for people."""
    if out.json:
        out.emit_json(data)
    else:
        text()
    return Exit.OK


def _lines(lines: list[str]) -> Callable[[], None]:
    return lambda: print("\n".join(lines))


def maps(args: argparse.Namespace, out: Output) -> Exit:
    from .. import proc

    data = [_vma(v) for v in proc.maps(args.pid)]
    return _show(out, data, _lines([
        f"{d['start']:x}-{d['end']:x} {d['prot']}{'s' if d['shared'] else 'p'} "
        f"{d['kind']:<10} {d['path']}" for d in data]))


def smaps(args: argparse.Namespace, out: Output) -> Exit:
    from .. import proc

    data = [dict(_vma(s.vma), fields=s.fields, vm_flags=sorted(s.vm_flags))
            for s in proc.smaps(args.pid)]
    return _show(out, data, _lines([
        f"{d['start']:x}-{d['end']:x} rss={out.size(d['fields'].get('Rss', 0))} "
        f"pss={out.size(d['fields'].get('Pss', 0))} {d['path']}" for d in data]))


def numa_maps(args: argparse.Namespace, out: Output) -> Exit:
    from .. import proc

    data = [dict(n._asdict(), nodes={str(k): v for k, v in n.nodes.items()})
            for n in proc.numa_maps(args.pid)]
    return _show(out, data, _lines([_numa_maps_line(d) for d in data]))


def meminfo(args: argparse.Namespace, out: Output) -> Exit:
    from .. import proc

    data = proc.meminfo()
    # HugePages_* are page counts; every other field is a size in bytes.
    return _show(out, data, _lines([
        f"{k:<20} {v if k.startswith('HugePages_') else out.size(v)}" for k, v in data.items()]))


def buddyinfo(args: argparse.Namespace, out: Output) -> Exit:
    from .. import proc

    data = [{"node": b.node, "zone": b.zone, "free": list(b.free), "free_pages": b.free_pages}
            for b in proc.buddyinfo()]
    return _show(out, data, lambda: _buddyinfo_table(out, data))


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


def _buddyinfo_table(out: Output, rows: list[dict[str, Any]]) -> None:
    """Free blocks per order, each column headed by its block size, and the zone's total."""
    from ..addressing import page_size

    page = page_size()
    orders = max((len(r["free"]) for r in rows), default=0)
    out.table(["node", "zone", *[out.size(page << k).replace(".0 ", " ") for k in range(orders)],
               "free"],
              [[r["node"], r["zone"], *r["free"], out.size(r["free_pages"] * page)] for r in rows],
              align="ll" + "r" * (orders + 1))
    print("(free blocks of each size per zone, from /proc/buddyinfo)")


def _pid(p: argparse.ArgumentParser) -> None:
    add_pid(p, "process (default: physmem)")


def _proc_file(name: str, run: Callable[[argparse.Namespace, Output], Exit], description: str,
               epilog: str, *, per_process: bool) -> Command:
    return Command(help=f"/proc {name}, parsed", description=description, epilog=epilog,
                   run=run, arguments=_pid if per_process else None,
                   json="JSON output (sizes in bytes)")


MAPS = _proc_file(
    "maps", maps, per_process=True,
    description="The mappings of a process from /proc/PID/maps: range, protection, kind "
                "(heap, stack, file, anonymous, ...) and path.",
    epilog="example: physmem maps --pid $$ --json | jq '.[] | select(.kind==\"heap\")'")
SMAPS = _proc_file(
    "smaps", smaps, per_process=True,
    description="Each mapping of a process from /proc/PID/smaps with its resident and "
                "proportional sizes (Rss, Pss); --json gives every smaps field in bytes and "
                "the VmFlags.",
    epilog="example: physmem smaps --pid $$ --json | jq 'map(.fields.Rss) | add'")
NUMA_MAPS = _proc_file(
    "numa_maps", numa_maps, per_process=True,
    description="The NUMA policy of each mapping of a process and its pages per node, from "
                "/proc/PID/numa_maps (N0=12 is 12 pages on node 0).",
    epilog="example: physmem numa-maps --json | jq '.[] | .nodes'")
MEMINFO = _proc_file(
    "meminfo", meminfo, per_process=False,
    description="System memory totals from /proc/meminfo; HugePages_* are page counts, every "
                "other field a size.",
    epilog="example: physmem meminfo --json | jq .MemAvailable")
BUDDYINFO = _proc_file(
    "buddyinfo", buddyinfo, per_process=False,
    description="Free memory per zone from /proc/buddyinfo: how many free blocks of each "
                "size (4K, 8K, ... 4M on x86) the buddy allocator holds, and their total.",
    epilog="example: physmem buddyinfo --json | jq '.[] | {zone, free_pages}'")
