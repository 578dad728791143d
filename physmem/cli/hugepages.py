"""``physmem hugepages``: list the hugepage pools, grow one, release its free pages, or audit
who holds them (and remove the files crashed applications left behind)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidArgument
from . import Command, Exit
from ._options import add_node, check_node, check_page_size, count_arg
from ._output import Output, Progress, plural, printable

__all__ = ["arguments", "run", "HUGEPAGES"]


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list",
                   choices=["list", "reserve", "release", "audit"])
    p.add_argument("count", nargs="?", type=count_arg, metavar="COUNT",
                   help="reserve: pages to have free; release: most free pages to give back")
    p.add_argument("--size", default=None, help="page size: 2M, 1G (default: the kernel's "
                   "default for reserve and release COUNT; every size otherwise)")
    add_node(p, "NUMA node (default: the global pool)")
    p.add_argument("--partial", action="store_true", help="reserve: keep what the kernel gave even if short")
    p.add_argument("--force", action="store_true",
                   help="reserve: grow the pool even into the memory margin the system needs")
    p.add_argument("--clean", action="store_true",
                   help="audit: remove orphan hugetlbfs files (nobody maps or holds them)")
    p.add_argument("--yes", action="store_true",
                   help="audit --clean: do not ask (required when stdin is not a terminal)")
    p.add_argument("--ignore-pid-namespace", action="store_true",
                   help="audit --clean: remove orphans even from a pid namespace that does "
                   "not see every process (a container); files open or mapped anywhere are "
                   "still kept")


def _pool_rows() -> list[dict[str, Any]]:
    from ..hugepages import pools

    return [{"size": p.size, "node": p.node, "total": p.total, "free": p.free,
             "reserved": p.reserved, "surplus": p.surplus, "overcommit": p.overcommit}
            for p in pools()]


def _selection(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """--size and --node checked against what exists; an error names what does."""
    return check_page_size(args.size, "--size"), check_node(args.node)


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..hugepages.sizes import format_size

    for flag, allowed in (("clean", "audit"), ("yes", "audit"), ("force", "reserve"),
                          ("partial", "reserve"), ("ignore_pid_namespace", "audit")):
        if getattr(args, flag) and args.action != allowed:
            args.parser.error(f"--{flag.replace('_', '-')} applies to `hugepages {allowed}` only")
    if args.ignore_pid_namespace and not args.clean:
        args.parser.error("--ignore-pid-namespace applies to `hugepages audit --clean` only")
    if args.count is not None and args.action not in ("reserve", "release"):
        args.parser.error(f"`hugepages {args.action}` takes no COUNT")
    size, node = _selection(args)
    if args.action == "reserve":
        return _reserve(args, out, size)
    if args.action == "release":
        return _release(args, out, size, node)
    if args.action == "audit":
        return _audit(args, out)
    rows = [r for r in _pool_rows() if (size is None or r["size"] == size)
            and (node is None or r["node"] == node)]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(["size", "node", "total", "free", "reserved", "surplus"],
                  [[format_size(r["size"]), "all" if r["node"] is None else r["node"], r["total"],
                    r["free"], "-" if r["reserved"] is None else r["reserved"], r["surplus"]]
                   for r in rows], align="rrrrrr")
    return Exit.OK


def _reserve(args: argparse.Namespace, out: Output, size: int | None) -> Exit:
    from ..hugepages import default_size, reserve
    from ..hugepages.sizes import format_size
    from ..proc import meminfo

    if args.count is None:
        args.parser.error("reserve needs a COUNT")
    # No pool can hold more than the machine has: a usage error, as for `physmem alloc`,
    # not a refusal by the memory margin (which --force would override).
    page = size or default_size()
    memory = meminfo()["MemTotal"]
    if page is not None and args.count * page > memory:
        raise InvalidArgument(
            f"COUNT {args.count} pages of {format_size(page)} ({out.size(args.count * page)}) "
            f"is more than this machine's memory ({out.size(memory)}): ask for fewer")
    with Progress("reserving hugepages", args.count) as bar:
        res = reserve(args.count, args.size, args.node, allow_partial=args.partial,
                      force=args.force, progress=bar)
    result = {"size": res.size, "node": res.node, "previous": res.previous,
              "total": res.total, "free": res.free}
    if out.json:
        out.emit_json(result)
    else:
        print(f"{format_size(res.size)} pool{'' if res.node is None else f' (node {res.node})'}: "
              f"{res.previous} -> {plural(res.total, 'page')}, {res.free} free")
    return Exit.OK


def _release(args: argparse.Namespace, out: Output, size: int | None, node: int | None) -> Exit:
    from ..hugepages import default_size, set_pool_size
    from ..hugepages.sizes import format_size

    if args.count is not None and size is None:
        size = default_size()
    rows = [r for r in _pool_rows() if r["node"] == node and (size is None or r["size"] == size)]
    for r in rows:
        give = r["free"] if args.count is None else min(r["free"], args.count)
        if give:
            set_pool_size(r["total"] - r["surplus"] - give, r["size"], node)
    acted = {r["size"] for r in rows}
    after = [r for r in _pool_rows() if r["node"] == node and r["size"] in acted]
    if out.json:
        out.emit_json(after)
    else:
        where = "" if node is None else f" (node {node})"
        for r in after:
            print(f"{format_size(r['size'])} pool{where}: {plural(r['total'], 'page')}, "
                  f"{r['free']} free")
    return Exit.OK


def _orphan_line(out: Output, f: Any) -> str:
    from ..hugepages.sizes import format_size

    return (f"  {printable(f.path)}  {out.size(f.bytes)} ({f.pages} x "
            f"{format_size(f.page_size)})")


def _audit(args: argparse.Namespace, out: Output) -> Exit:
    from ..hugepages.holders import audit, remove_orphans, require_every_process
    from ..hugepages.sizes import format_size

    if args.clean and not args.ignore_pid_namespace:
        require_every_process()  # before anything is asked
    report = audit()
    cleanup = None
    if args.clean and report.orphans:
        if not out.json:
            print("orphan hugetlbfs files to remove (nobody maps or holds them):")
            for f in report.orphans:
                print(_orphan_line(out, f))
        if not args.yes:
            if not sys.stdin.isatty():
                raise InvalidArgument("--clean asks before removing files; stdin is not a "
                                      "terminal, so pass --yes to remove them")
            answer = input(f"remove {len(report.orphans)} file(s)? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing removed")
                return Exit.OK
        cleanup = remove_orphans(report, ignore_pid_namespace=args.ignore_pid_namespace)
        report = audit()
    freed = {}
    if args.clean and any(p.stuck for p in report.pools):
        from ..hugepages import free_stuck_surplus

        # Pages nobody holds: no question to ask, nothing of anyone's is touched.
        freed = {p.size: free_stuck_surplus(p.size) for p in report.pools if p.stuck}
        report = audit()
    if out.json:
        document = report.to_dict()
        if cleanup is not None:
            document["removed"] = [{"path": f.path, "bytes": f.bytes} for f in cleanup.removed]
            document["kept"] = [{"path": k.file.path, "bytes": k.file.bytes, "reason": k.reason}
                                for k in cleanup.kept]
        if args.clean:
            document["freed_stuck"] = {str(size): n for size, n in freed.items()}
        out.emit_json(document)
        return Exit.OK
    out.table(["size", "node", "total", "free", "rsvd", "surp", "in use", "held", "orphaned",
               "unattributed", "surp unheld"],
              [[format_size(p.size), "all" if p.node is None else p.node, p.total, p.free,
                "-" if p.reserved is None else p.reserved, p.surplus, p.in_use, p.held,
                "-" if p.orphaned is None else p.orphaned, p.unattributed,
                "-" if p.surplus_unheld is None else p.surplus_unheld]
               for p in report.pools], align="rrrrrrrrrrr")
    if report.mappings:
        print("\nmappings:")
        out.table(["pid", "comm", "page size", "pages", "reserved", "shared", "path"],
                  [[m.pid, printable(m.comm), format_size(m.page_size), m.pages, m.reserved,
                    "yes" if m.shared else "no", printable(m.path) or "(anonymous)"]
                   for m in report.mappings], align="rlrrrll")
    if report.fds:
        print("\nopen hugetlbfs files and memfds:")
        out.table(["pid", "comm", "fd", "pages", "file"],
                  [[f.pid, printable(f.comm), f.fd, f.pages, printable(f.target)]
                   for f in report.fds], align="rlrrl")
    if cleanup is not None:
        print(f"\nremoved {len(cleanup.removed)} orphan file(s)"
              + "".join(f"\n  {printable(f.path)} ({out.size(f.bytes)})"
                        for f in cleanup.removed))
        if cleanup.kept:
            print(f"kept {len(cleanup.kept)}:" + "".join(
                f"\n  {printable(k.file.path)}: {k.reason}" for k in cleanup.kept))
    for size, n in freed.items():
        print(f"\nfreed {plural(n, 'stuck surplus page')} of {format_size(size)}")
    for p in report.pools:
        if p.stuck:
            print(f"\n{format_size(p.size)} pool: {plural(p.stuck, 'free page')} counted as "
                  "surplus that the kernel will never free (no user holds them; writing "
                  "nr_hugepages does not free them); `physmem hugepages audit --clean` frees "
                  "them")
    if report.orphans:
        print("\norphan files (nobody maps or holds them; `physmem hugepages audit --clean` "
              "removes them):")
        for f in report.orphans:
            print(_orphan_line(out, f))
    if report.unreachable_mounts:
        print("\nhugetlbfs mounts not examined (another mount covers them, or they moved): "
              + ", ".join(printable(p) for p in report.unreachable_mounts))
    if report.unreadable:
        print(f"\n{len(report.unreadable)} process(es) could not be read (not root, or "
              "protected): their pages show as unattributed")
    return Exit.OK


HUGEPAGES = Command(
    help="hugepage pools: list, reserve N, release, audit",
    description="List hugepage pools (every size, global and per NUMA node), make at "
                "least N free pages available (the pool keeps them after physmem exits), "
                "release a pool's free pages back to the kernel, or audit who holds the "
                "pages in use (processes, memfds, hugetlbfs files) and find orphan files "
                "left by crashed applications (--clean removes them).",
    epilog="examples:\n  physmem hugepages list --json\n"
           "  physmem hugepages list --size 2M --node 0\n"
           "  physmem hugepages reserve 512 --size 2M\n"
           "  physmem hugepages reserve 4 --size 1G --node 0\n"
           "  physmem hugepages release --size 2M\n"
           "  physmem hugepages release 16 --size 2M\n"
           "  physmem hugepages audit\n"
           "  physmem hugepages audit --clean --yes --json\n"
           "  physmem hugepages audit --clean --yes --ignore-pid-namespace",
    arguments=arguments, run=run)
