"""``physmem kpageflags``: flags of page frames, or a page-types style summary of all memory."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidArgument
from . import Command, Exit
from ._options import int_arg, parse_int
from ._output import Output, Progress, plural

__all__ = ["arguments", "run", "KPAGEFLAGS"]


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pfns", metavar="PFN", nargs="*", help="page frame number (0x hex or decimal)")
    p.add_argument("--summary", action="store_true", help="table of distinct flag sets")
    p.add_argument("--start", type=int_arg, default=None, help="first PFN to summarise (default 0)")
    p.add_argument("--count", type=int_arg, default=None, help="number of frames to summarise")


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..proc.zones import zones_end_pfn

    if args.summary == bool(args.pfns):
        raise InvalidArgument("give PFNs or --summary (one of the two)")
    if not args.summary and (args.start is not None or args.count is not None):
        args.parser.error("--start and --count apply to --summary only")
    # Every value is judged before /proc/kpageflags (root only) is opened, so a wrong one is
    # a usage error for anyone; the end of memory comes from zoneinfo, which anyone may read.
    end = zones_end_pfn()
    if args.summary:
        start = args.start or 0
        for flag, value in (("--start", start), ("--count", args.count)):
            if value is not None and value < 0:
                raise InvalidArgument(f"{flag} {value} is negative: give a number of frames "
                                      "or a PFN (0x hex or decimal)")
        # Checked here too only to name the flag; the library raises the same refusal.
        if end is not None and start >= end and args.count != 0:
            raise InvalidArgument(f"--start {start:#x} is beyond the last PFN ({end - 1:#x})")
        # The numpy-free core: this command starts without numpy (~80 ms of its run time).
        from .._kpfcore import FlagsFile, summary

        with FlagsFile() as kf, Progress("scanning /proc/kpageflags", 1) as bar:
            rows = summary(kf, start, args.count, progress=bar)
        if out.json:
            out.emit_json([{"flags": r.flags, "pages": r.pages, "bytes": r.bytes,
                            "names": list(r.names)} for r in rows])
        else:
            out.table(["flags", "pages", "size", "names"],
                      [[f"{r.flags:#018x}", r.pages, out.size(r.bytes), ",".join(r.names) or "-"]
                       for r in rows], align="rrrl")
            total = sum(r.pages for r in rows)
            print(f"total: {plural(total, 'frame')} ({out.size(sum(r.bytes for r in rows))})")
        return Exit.OK
    from ..kpageflags import KPageCount, KPageFlags, _as_pfn_array, describe

    try:
        pfns = [parse_int(p) for p in args.pfns]
    except ValueError as exc:
        raise InvalidArgument(f"not a PFN: {exc}") from None
    top = int(_as_pfn_array(pfns).max())
    if end is not None and top >= end:
        raise InvalidArgument(f"PFN {top:#x} is beyond the end of physical memory (the last "
                              f"page frame is {end - 1:#x})")
    with KPageFlags() as kf, KPageCount() as kc:
        flags = kf.read(pfns)
        counts = kc.read(pfns)
    # Not "rows": that name holds FlagSummary records above.
    frames: list[dict[str, Any]] = [
        {"pfn": p, "flags": int(f), "names": list(describe(int(f))), "mapcount": int(c)}
        for p, f, c in zip(pfns, flags, counts)]
    if out.json:
        out.emit_json(frames)
    else:
        out.table(["pfn", "flags", "mapcount", "names"],
                  [[f"{r['pfn']:#x}", f"{r['flags']:#018x}", r["mapcount"], ",".join(r["names"]) or "-"]
                   for r in frames], align="rrrl")
    return Exit.OK


KPAGEFLAGS = Command(
    help="page flags per frame, or a summary of all physical memory",
    description="Read /proc/kpageflags (root only). With PFNs, show each frame's flags "
                "and map count; with --summary, count frames per distinct flag set over "
                "all of physical memory (or --start/--count), like the kernel's page-types.",
    epilog="examples:\n  physmem kpageflags 0x1000 0x1001\n  physmem kpageflags --summary --json",
    arguments=arguments, run=run)
