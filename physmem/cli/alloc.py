"""``physmem alloc``: get physically contiguous (or scatter) DMA memory and show where it is."""
from __future__ import annotations

import argparse

from . import Command, Exit
from ._options import add_node, check_node, check_page_size
from ._output import Output, plural

__all__ = ["arguments", "run", "ALLOC"]


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("size", metavar="SIZE",
                   help="bytes (4096, 0x200000) or with a binary unit: 64M, 1.5G, 64MiB")
    p.add_argument("--page-size", default=None, help="hugepage size: 2M or 1G (default: the kernel's default)")
    add_node(p, "NUMA node to take the pages from")
    p.add_argument("--scatter", action="store_true", help="accept several physical segments")
    p.add_argument("--reserve", action="store_true",
                   help="grow the hugepage pool by what is needed (root); the pages go back "
                        "to the system when physmem exits, however it exits")
    p.add_argument("--force", action="store_true",
                   help="with --reserve: grow the pool even into the memory margin the "
                        "system needs")
    p.add_argument("--max-growth", metavar="SIZE", default=None,
                   help="with --reserve: grow the pool by at most SIZE for this buffer "
                        "(default: 8 times SIZE and 1G more)")
    p.add_argument("--pin", choices=("auto", "yes", "no"), default="auto",
                   help="pin the pages for the long term, so that memory offline, compaction "
                        "and NUMA migration cannot move them: auto (default) pins where the "
                        "kernel allows and says why not; yes fails if it cannot; no does not "
                        "pin")


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..dma import allocate_contiguous, allocate_scatter
    from ..dma.pin import PinMode
    from ..hugepages import parse_size

    if args.force and not args.reserve:
        # --force overrides the memory margin of a pool growth; without --reserve there is none.
        args.parser.error("--force applies with --reserve only")
    if args.max_growth is not None and not args.reserve:
        args.parser.error("--max-growth applies with --reserve only")
    size = parse_size(args.size, "SIZE", positive=True)
    max_growth = None if args.max_growth is None else parse_size(args.max_growth, "--max-growth",
                                                                      positive=True)
    make = allocate_scatter if args.scatter else allocate_contiguous
    page_size = check_page_size(args.page_size, "--page-size")
    node = check_node(args.node)
    pin: PinMode = "auto" if args.pin == "auto" else args.pin == "yes"
    buf = make(size, page_size=page_size, node=node, reserve=args.reserve, force=args.force,
               pin=pin, max_growth=max_growth)
    with buf:
        segments = [{"vaddr": int(v), "paddr": int(p), "nbytes": int(n)}
                    for v, p, n in buf.segments.tolist()]
        # Allocation verified the buffer already; report exactly what that covered.
        checked = buf.verification
        if out.json:
            out.emit_json({"size": buf.size, "page_size": buf.page_size, "node": buf.node,
                           "contiguous": buf.is_contiguous, "segments": segments,
                           "verified": checked.complete, "verification": checked.as_json()})
            return Exit.OK
        kind = "contiguous" if buf.is_contiguous else f"in {plural(len(segments), 'segment')}"
        where = "" if buf.node is None else f" on node {buf.node}"
        pages = plural(buf.size // buf.page_size, f"x {out.size(buf.page_size)} page",
                       f"x {out.size(buf.page_size)} pages")
        print(f"allocated {out.size(buf.size)} {kind}: {pages}{where}")
        out.table(["virtual", "physical", "size"],
                  [[f"{s['vaddr']:#x}", f"{s['paddr']:#x}", out.size(s["nbytes"])] for s in segments],
                  align="rrr")
        print("\n".join(checked.lines()))
    return Exit.OK


ALLOC = Command(
    help="allocate DMA memory from hugepages and print its physical segments",
    description="Allocate SIZE bytes of hugetlb memory that is physically contiguous (or, "
                "with --scatter, in as few segments as possible), pin it where the kernel "
                "allows (--pin), verify it with pagemap and kpageflags, print the segments "
                "and which checks ran (kpageflags is root only) and whether it is pinned, "
                "and free it on exit. Needs CAP_SYS_ADMIN to see physical addresses.",
    epilog="examples:\n  physmem alloc 64M --reserve\n"
           "  physmem alloc 2M --pin yes\n"
           "  physmem alloc 64M --reserve --max-growth 128M\n"
           "  physmem alloc 1G --page-size 1G --reserve --json\n"
           "  physmem alloc 256M --scatter --json",
    arguments=arguments, run=run,
    json="JSON: {size, page_size, node, contiguous, segments: [{vaddr, paddr, nbytes}], "
         "verified (every check ran), verification: {pagemap, kpageflags, pinned, pin_error "
         "(why not pinned, null when pinned or --pin no), not_checked: {check: why}}}")
