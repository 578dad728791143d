"""``physmem hugepages``: list the hugepage pools, grow one, or release its free pages."""
from __future__ import annotations

import argparse

from ..hugepages import parse_size, pools, reserve, set_pool_size
from ..hugepages.sizes import format_size
from ._output import Progress, emit_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hugepages", help="hugepage pools: list, reserve N, release",
        description="List hugepage pools (every size, global and per NUMA node), make at "
                    "least N free pages available (the pool keeps them after physmem exits), "
                    "or release a pool's free pages back to the kernel.",
        epilog="examples:\n  physmem hugepages list --json\n"
               "  physmem hugepages reserve 512 --size 2M\n"
               "  physmem hugepages reserve 4 --size 1G --node 0\n"
               "  physmem hugepages release --size 2M",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", default="list", choices=["list", "reserve", "release"])
    p.add_argument("count", nargs="?", type=int, help="pages to have free (reserve)")
    p.add_argument("--size", default=None, help="page size: 2M, 1G (default: the kernel's default)")
    p.add_argument("--node", type=int, default=None, help="NUMA node (default: the global pool)")
    p.add_argument("--partial", action="store_true", help="reserve: keep what the kernel gave even if short")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=run, parser=p)


def _pool_rows() -> list[dict]:
    return [{"size": p.size, "node": p.node, "total": p.total, "free": p.free,
             "reserved": p.reserved, "surplus": p.surplus, "overcommit": p.overcommit}
            for p in pools()]


def run(args: argparse.Namespace) -> int:
    if args.action == "reserve":
        if args.count is None:
            args.parser.error("reserve needs a COUNT")
        with Progress("reserving hugepages", args.count) as bar:
            res = reserve(args.count, args.size, args.node, allow_partial=args.partial,
                          progress=bar)
        result = {"size": res.size, "node": res.node, "previous": res.previous,
                  "total": res.total, "free": res.free}
        if args.json:
            emit_json(result)
        else:
            print(f"{format_size(res.size)} pool{'' if res.node is None else f' (node {res.node})'}: "
                  f"{res.previous} -> {res.total} pages, {res.free} free")
        return 0
    if args.action == "release":
        size = parse_size(args.size) if args.size else None
        rows = [r for r in _pool_rows() if r["node"] == args.node
                and (size is None or r["size"] == size) and r["free"] > 0]
        for r in rows:
            set_pool_size(r["total"] - r["free"], r["size"], args.node)
        after = [r for r in _pool_rows() if r["node"] == args.node]
        if args.json:
            emit_json(after)
        else:
            for r in after:
                print(f"{format_size(r['size'])} pool: {r['total']} pages, {r['free']} free")
        return 0
    rows = _pool_rows()
    if args.json:
        emit_json(rows)
    else:
        print_table(["size", "node", "total", "free", "reserved", "surplus"],
                    [[format_size(r["size"]), "all" if r["node"] is None else r["node"], r["total"],
                      r["free"], "-" if r["reserved"] is None else r["reserved"], r["surplus"]]
                     for r in rows], align="rrrrrr")
    return 0
