"""``physmem contig``: will it fit? Hugepages obtainable now, after compaction, and why not."""
from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from . import Command, Exit
from ._options import add_node, add_png, add_threads, check_node, check_threads
from ._output import Output, write_png

__all__ = ["arguments", "parse_want", "verdict_json", "VERDICT_EXIT", "run", "print_forecast",
           "CONTIG"]

if TYPE_CHECKING:
    from ..analysis.contiguity import Forecast, Verdict


def arguments(p: argparse.ArgumentParser) -> None:
    add_node(p, "only this NUMA node")
    p.add_argument("--size", action="append", default=None, metavar="SIZE",
                   help="hugepage size to forecast (2M, 1G; repeat for several; default all)")
    p.add_argument("--want", metavar="REQUEST", default=None,
                   help="COUNTxSIZE pages (16x1G) or SIZE of one contiguous buffer (256M)")
    p.add_argument("--no-drain", action="store_true",
                   help="leave the CPUs' free lists alone (by default they are given back to "
                        "the buddy allocator first, as the kernel does before a gigantic "
                        "allocation: the free pages on them are otherwise invisible)")
    add_threads(p)
    add_png(p, "write a picture of the blockers per size (needs physmem[plot])")


_WANT = re.compile(r"\s*(\d+)\s*[xX*]\s*(\S+)\s*")


def parse_want(text: str) -> tuple[int | None, int]:
    """``16x1G`` -> (16, 1 GiB); ``256M`` -> (None, 256 MiB): one contiguous buffer."""
    from .._syntax import parse_size

    m = _WANT.fullmatch(text)
    try:
        if m:
            count, size = int(m[1]), parse_size(m[2])
            if count < 1:
                raise InvalidArgument("count")
            return count, size
        return None, parse_size(text)
    except InvalidArgument:
        raise InvalidArgument(f"--want {text!r} is not a request: give COUNTxSIZE (16x1G) "
                              "or the SIZE of one contiguous buffer (256M)") from None


def verdict_json(v: Verdict) -> dict[str, Any]:
    return v.as_json()


VERDICT_EXIT = {"now": Exit.OK, "after-compaction": Exit.AFTER_COMPACTION,
                "no": Exit.NOT_OBTAINABLE}


def run(args: argparse.Namespace, out: Output) -> Exit:
    # Imported here: every physmem command builds this parser, few run the forecast.
    from ..analysis.contiguity import forecast
    from .._syntax import parse_size

    sizes = None
    if args.size:
        try:
            sizes = [parse_size(s) for s in args.size]
        except InvalidArgument:
            raise InvalidArgument(f"--size {args.size[-1]!r} is not a size (2M, 1G)") from None
    want = parse_want(args.want) if args.want is not None else None
    if want is not None and want[0] is not None and sizes is not None and want[1] not in sizes:
        sizes.append(want[1])
    check_threads(args.threads)
    try:
        fc = forecast(node=check_node(args.node), sizes=sizes, threads=args.threads,
                      drain=not args.no_drain, proc_root=args.proc_root,
                      sys_root=args.sys_root)
    except InvalidArgument as exc:
        flag = "--node" if "node" in str(exc) else "--size" if "size" in str(exc) else None
        raise InvalidArgument(f"{flag}: {exc}" if flag else str(exc)) from None
    verdict = None
    if want is not None:
        try:
            verdict = fc.want(want[0], want[1]) if want[0] is not None else fc.contiguous(want[1])
        except InvalidArgument as exc:
            raise InvalidArgument(f"--want {args.want}: {exc}") from None
    if args.png:
        from ..analysis.plots import plot_contig

        write_png(plot_contig, fc, args.png)
    code = Exit.OK if verdict is None else VERDICT_EXIT[verdict.verdict]
    if out.json:
        out.emit_json(verdict_json(verdict) if verdict is not None else fc.as_json())
        return code
    print_forecast(out, fc)
    if verdict is not None:
        lo, hi = verdict.obtainable_now_range
        alo, ahi = verdict.obtainable_after_compaction_range
        print(f"\n{verdict.verdict.upper()}: {verdict.advice}")
        what = "buffers" if verdict.contiguous else "pages"
        print(f"  {what} obtainable now {verdict.obtainable_now} (between {lo} and {hi}), "
              f"after compaction {verdict.obtainable_after_compaction} "
              f"(between {alo} and {ahi})")
    if args.png:
        print(f"\nwrote {args.png}")
    return code


def print_forecast(out: Output, fc: Forecast) -> None:
    from ..hugepages.sizes import format_size

    for size in fc.sizes:
        print(f"{format_size(size)} blocks"
              + ("" if fc.node is None else f" on node {fc.node}") + ":")
        def rng(r: tuple[int, int] | list[int]) -> str:
            return f"{r[0]}-{r[1]}" if r[0] != r[1] else str(r[0])

        rows = [[z.node, z.zone, z.blocks, z.free_now, z.pool, z.after_compaction,
                 z.uninitialised, z.blocked, z.obtainable_now, rng(z.obtainable_now_range),
                 z.obtainable_after_compaction, rng(z.obtainable_after_compaction_range),
                 out.size(z.longest_run_now)] for z in fc.rows(size)]
        t = fc.totals(size)
        rows.append(["", "total", t["blocks"], t["free_now"], t["pool"], t["after_compaction"],
                     t["uninitialised"], t["blocked"], t["obtainable_now"],
                     rng(t["obtainable_now_range"]), t["obtainable_after_compaction"],
                     rng(t["obtainable_after_compaction_range"]),
                     out.size(t["longest_run_now"])])
        out.table(["node", "zone", "blocks", "free", "pool", "compact", "uninit", "blocked",
                   "get now", "range", "get after", "range", "longest run"], rows,
                  align="llrrrrrrrrrrr")
        blockers: dict[str, int] = {}
        for z in fc.rows(size):
            for k, v in z.blockers.items():
                blockers[k] = blockers.get(k, 0) + v
        if blockers:
            top = sorted(blockers.items(), key=lambda kv: -kv[1])[:5]
            print("  blocked by (blocks): " + ", ".join(f"{k} {v}" for k, v in top))
        near = [n for n in fc.nearly_free if n.size == size][:3]
        for n in near:
            fr = n.frames[0]
            owner = f", cgroup {fr.cgroup or fr.cgroup_ino}" if fr.cgroup_ino else ""
            print(f"  nearly free: {n.start_pfn:#x} ({n.zone}) blocked by {n.blockers} "
                  f"frame(s), first {fr.pfn:#x} {fr.cls}{owner}")
        print()
    notes = ["get now / get after: best estimates of the pages a pool growth gives now and "
             "after compaction (pool pages included); range: what the kernel may give instead, "
             "where user space cannot know the state (free pages on the CPUs' lists, memory "
             "that moved during the scan, how much page cache the kernel reclaims as it grows "
             "the pool)"]
    if any(z.uninitialised for z in fc.zones):
        notes.append("uninit: memory the kernel has not initialised yet (deferred init); it "
                     "does so on demand for ordinary allocations, so 2M pages can come from "
                     "it, but not gigantic ones")
    if not fc.pool_exact:
        notes.append("pool: free hugetlb pages could not be told from pages held in "
                     "hugetlbfs files; pool counts are estimates")
    for note in notes:
        print(note)


CONTIG = Command(
    help="will it fit: hugepages obtainable now / after compaction, and blockers",
    description="Class every naturally aligned block of each hugepage size as free now, a "
                "free hugetlb page, free after compaction, not yet initialised or blocked (and "
                "by what), from one scan of /proc/kpageflags (root), per node and zone; "
                "predict how many pages of each size the kernel can give now and after "
                "compaction, each with the range the kernel may give where the state cannot be known "
                "from user space; with --want, a verdict for a request, also in the exit "
                "status: 0 now, 7 only after compaction, 8 not without a reboot.",
    epilog="examples:\n  physmem contig\n  physmem contig --want 16x1G\n"
           "  physmem contig --want 256M --json\n  physmem contig --size 2M --png contig.png",
    arguments=arguments, run=run, roots=True)
