"""``physmem frag``: free memory per zone by block size and migrate type, and what large
pages it could still give."""
from __future__ import annotations

import argparse

from . import Command, Exit
from ._options import add_node, add_png, add_threads, check_node, check_threads
from ._output import Output, write_png

__all__ = ["arguments", "run", "FRAG"]


def arguments(p: argparse.ArgumentParser) -> None:
    add_node(p, "only this NUMA node")
    add_png(p, "write a chart of free memory by buddy order and migrate type (needs "
               "physmem[plot])")
    add_threads(p)


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..analysis.fragmentation import zone_fragmentation

    check_threads(args.threads)
    node = check_node(args.node)
    records = zone_fragmentation(node, threads=args.threads)
    if args.png:
        from ..analysis.plots import plot_frag

        write_png(plot_frag, records, args.png)
    if out.json:
        out.emit_json([r.as_json() for r in records])
        return Exit.OK

    def q(v: object, fmt: str = "{}") -> str:
        return "?" if v is None else fmt.format(v)

    if not records:  # an online node without memory has no zones to show
        print(f"node {args.node} has no memory")
        return Exit.OK
    out.table(
        ["node", "zone", "free", "largest block", "largest run", ">=2M", ">=1G", "2M pages", "1G pages"],
        [[r.node, r.zone, out.size(r.free_pages * r.page_size),
          out.size(r.largest_block_pages * r.page_size),
          q(None if r.largest_run_pages is None else out.size(r.largest_run_pages * r.page_size)),
          f"{r.share_2m:.1%}", q(r.share_1g, "{:.1%}"), r.available_2m, q(r.available_1g)]
         for r in records], align="llrrrrrrr")
    for r in records:
        if not r.by_type or not r.free_pages:
            continue
        print(f"\nnode {r.node} {r.zone}: free blocks per order and migrate type")
        orders = range(len(r.free_blocks))
        out.table(["type", *[str(k) for k in orders]],
                  [[t, *v] for t, v in r.by_type.items() if any(v)], align="l" + "r" * len(orders))
    if args.png:
        print(f"\nwrote {args.png}")
    return Exit.OK


FRAG = Command(
    help="fragmentation of free memory per zone",
    description="Free memory per zone by buddy order and migrate type (buddyinfo, "
                "pagetypeinfo), the largest free run, the share of free memory in blocks of "
                "at least 2 MiB and runs of at least 1 GiB, and how many 2 MiB and 1 GiB pages "
                "the free memory holds now. Runs and 1 GiB figures read /proc/kpageflags "
                "(root); without it they show as '?'.",
    epilog="examples:\n  physmem frag\n  physmem frag --node 0 --png frag.png\n"
           "  physmem frag --json | jq '.[] | {zone, available_2m}'",
    arguments=arguments, run=run)
