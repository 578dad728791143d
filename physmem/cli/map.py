"""``physmem map``: all physical memory as cells coloured by what their frames hold."""
from __future__ import annotations

import argparse
import functools
from typing import TYPE_CHECKING, Any

from . import Command, Exit
from ._options import add_pid, add_png, add_threads, check_threads
from ._output import Output, Progress, plural, write_png

__all__ = ["STRIP_WIDTH", "arguments", "to_json", "run", "MAP"]

if TYPE_CHECKING:
    import numpy as np

    from ..analysis.physmap import CellMap

STRIP_WIDTH = 64


def arguments(p: argparse.ArgumentParser) -> None:
    add_png(p, "write a picture (needs physmem[plot])")
    add_pid(p, "outline the cells holding this process's pages")
    p.add_argument("--cell", default="2M", help="bytes per cell (default 2M, a pageblock)")
    p.add_argument("--blockers", action="store_true",
                   help="also class each block of the largest hugepage size (1 GiB on x86-64) "
                        "as free, free after compaction, uninitialised or blocked, with its "
                        "number of blocking frames (outlined in the PNG)")
    add_threads(p)


def to_json(cm: CellMap) -> dict[str, Any]:
    from ..analysis.classes import CLASS_INFO, PageClass

    pages, cells = cm.pages_per_class(), cm.cells_per_class()
    return {
        "cell_bytes": cm.cell_bytes, "page_size": cm.page_size, "frames": cm.frames,
        "cells": len(cm.counts), "free_tails_marked": cm.free_tails_marked,
        "classes": [{"code": int(c), "name": c.name.lower(), "label": CLASS_INFO[c][0],
                     "cells": int(cells[c]), "pages": int(pages[c]),
                     "bytes": int(pages[c]) * cm.page_size} for c in PageClass],
        "zones": [z._asdict() for z in cm.zones],
        "unmanaged": cm.unmanaged.tolist(),
        "dominant": cm.dominant.tolist(),
        "pid": cm.pid,
        "pid_pages": None if cm.pid_pages is None else int(cm.pid_pages.sum()),
        "pid_cells": None if cm.pid_pages is None else cm.pid_pages.nonzero()[0].tolist(),
    }


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..hugepages import parse_size
    from ..analysis.physmap import CLASS_INFO, PageClass, cell_map

    check_threads(args.threads)
    with Progress("scanning /proc/kpageflags", 1) as bar:
        cm = cell_map(parse_size(args.cell, "--cell"), pid=args.pid, progress=bar,
                      threads=args.threads)
    fc = None
    if getattr(args, "blockers", False):
        from ..analysis.contiguity import forecast
        from .._hugepools import supported_sizes

        sizes = supported_sizes()
        fc = forecast(sizes=sizes[-1:] or None, threads=args.threads)
    if args.png:
        from ..analysis.plots import plot_map

        write_png(functools.partial(plot_map, blockers=fc), cm, args.png)
    if out.json:
        data = to_json(cm)
        if fc is not None:
            data["blockers"] = _blocks_json(fc)
        out.emit_json(data)
        return Exit.OK
    pages, cells = cm.pages_per_class(), cm.cells_per_class()
    out.table(["state", "cells", "pages", "size"],
              [[CLASS_INFO[c][0], cells[c], pages[c], out.size(int(pages[c]) * cm.page_size)]
               for c in PageClass if pages[c]], align="lrrr")
    print(f"{plural(len(cm.counts), 'cell')} of {out.size(cm.cell_bytes)}, {plural(cm.frames, 'frame')}")
    per_char = -(-len(cm.counts) // (STRIP_WIDTH * 16))
    dom = cm.dominant
    key = "  ".join(f"'{CLASS_INFO[c][2]}'={c.name.lower()}" for c in PageClass if cells[c])
    print(f"\none character = {out.size(per_char * cm.cell_bytes)} (most common state); {key}")
    chars = []
    for i in range(0, len(dom), per_char):
        group = dom[i:i + per_char]
        chars.append(CLASS_INFO[PageClass(_mode(group))][2])
    for r in range(0, len(chars), STRIP_WIDTH):
        print(f"{r * per_char * cm.cell_bytes:#14x} |{''.join(chars[r:r + STRIP_WIDTH])}|")
    if cm.pid_pages is not None:
        print(f"\npid {cm.pid}: {out.size(int(cm.pid_pages.sum()) * cm.page_size)} "
              f"in {plural(int((cm.pid_pages > 0).sum()), 'cell')}")
    if fc is not None:
        _print_blocks(out, fc)
    if args.png:
        print(f"wrote {args.png}")
    return Exit.OK


def _blocks_json(fc: Any) -> dict[str, Any]:
    from ..analysis.classes import BLOCK_STATE_INFO, BlockState

    size = max(fc.sizes)
    n = size // fc.page_size
    return {"size": size, "blocks": [
        {"start_pfn": i * n, "state": BlockState(int(st)).name.lower(),
         "label": BLOCK_STATE_INFO[BlockState(int(st))][0], "blockers": int(b)}
        for i, (st, b) in enumerate(zip(fc.states[size], fc.blockers[size]))]}


def _print_blocks(out: Output, fc: Any) -> None:
    import numpy as np

    from ..analysis.classes import BLOCK_STATE_INFO, FIRST_BLOCKER, FRAME_INFO, BlockState, Frame

    size = max(fc.sizes)
    n = size // fc.page_size
    print(f"\n{out.size(size)} blocks: state and blocking frames")
    rows = []
    for i, (st, b) in enumerate(zip(fc.states[size].tolist(), fc.blockers[size].tolist())):
        seg = fc.frame_class[i * n:(i + 1) * n]
        counts = np.bincount(seg, minlength=len(Frame))
        top = sorted(((int(counts[k]), FRAME_INFO[Frame(k)][0]) for k in range(FIRST_BLOCKER, len(Frame))
                      if counts[k]), reverse=True)[:3]
        rows.append([f"{i * size:#x}", BLOCK_STATE_INFO[BlockState(st)][0], b,
                     ", ".join(f"{name} {c}" for c, name in top) or "-"])
    out.table(["address", "state", "blockers", "most common blockers (frames)"], rows,
              align="llrl")


def _mode(group: np.ndarray) -> int:
    import numpy as np

    from ..analysis.classes import PageClass

    return int(np.bincount(group, minlength=len(PageClass)).argmax())


MAP = Command(
    help="picture of all physical memory by page state",
    description="Classify every page frame from /proc/kpageflags (root only) as free, "
                "anonymous, page cache, slab, page tables, hugetlb, reserved, no flags, not "
                "yet managed or hole, and show each cell's dominant state: a table and a text "
                "strip, or a PNG with --png.",
    epilog="examples:\n  physmem map\n  physmem map --png map.png --pid $$\n"
           "  physmem map --cell 64M --json | jq .classes",
    arguments=arguments, run=run)
