"""``physmem dma``: is a process's DMA memory safe where it is (``audit``), and did any of
it move (``watch``)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from . import Command, Exit, stopped_by_signals
from ._options import count_arg, parse_int, pid_arg, seconds_arg
from ._output import Output, plural

__all__ = ["range_arg", "arguments", "run", "DMA"]

if TYPE_CHECKING:
    from ..dma.safety import DmaAudit, Region
    from ..dma.watchdog import Move


def range_arg(text: str) -> tuple[int, int]:
    """``type=`` for ``--range ADDR:LEN``: a start address (0x hex or decimal) and a length
    (bytes or a size such as 2M)."""
    from .._syntax import parse_size

    address, sep, length = text.partition(":")
    try:
        if not sep:
            raise InvalidArgument("give ADDR:LEN, e.g. 0x7f0000000000:2M")
        return parse_int(address), parse_size(length, "LEN")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["audit", "watch"],
                   help="audit: how safe each mapping is as a DMA target; watch: report "
                        "pages that change frame or vanish, as they do")
    p.add_argument("--pid", type=pid_arg, default=None, required=True,
                   help="the process to audit or watch")
    p.add_argument("--range", dest="ranges", type=range_arg, action="append", default=None,
                   metavar="ADDR:LEN",
                   help="only this range of the process (repeatable; page-aligned, mapped). "
                        "Default: audit every mapping; watch the memory the process holds "
                        "resident (pinned, mlocked or hugetlb)")
    p.add_argument("--all", action="store_true",
                   help="audit: list every mapping in the text output (default: those held "
                        "resident, the rest summed in one line; --json always has all)")
    p.add_argument("--interval", type=seconds_arg, default=None, metavar="S",
                   help="watch: seconds between two checks (default 0.1)")
    p.add_argument("--count", type=count_arg, default=None, metavar="N",
                   help="watch: stop after N checks (default: until interrupted or the "
                        "process exits)")


def run(args: argparse.Namespace, out: Output) -> Exit:
    if args.action == "audit":
        for flag in ("interval", "count"):
            if getattr(args, flag) is not None:
                args.parser.error(f"--{flag} applies to `dma watch` only")
        return _audit(args, out)
    if args.all:
        args.parser.error("--all applies to `dma audit` only")
    return _watch(args, out)


# -- audit ------------------------------------------------------------------------------------

def _resident(r: Region) -> bool:
    from ..dma.safety import Backing

    return (r.pinned or r.locked or r.backing is Backing.HUGETLB)


def _backing_text(r: Region) -> str:
    from ..hugepages.sizes import format_size

    if r.backing.value == "hugetlb":
        return f"hugetlb {format_size(r.page_size)}"
    return r.backing.value


def _nodes_text(r: Region) -> str:
    return ",".join(str(n) for n in sorted(r.nodes)) or "-"


def _audit(args: argparse.Namespace, out: Output) -> Exit:
    from ..dma import audit

    report = audit(args.pid, args.ranges)
    if out.json:
        out.emit_json(report.to_dict())
        return Exit.OK
    _print_audit(report, out, every=args.all or args.ranges is not None)
    return Exit.OK


def _print_audit(report: DmaAudit, out: Output, *, every: bool) -> None:
    from ..dma.safety import Verdict

    buffers = report.uring_buffers
    rings = len({b.fd for b in buffers})
    print(f"process {report.pid} ({report.comm}): VmPin {out.size(report.vm_pin)} "
          f"(io_uring fixed buffers {out.size(report.uring_pinned)}, other pins "
          f"{out.size(report.unattributed)}), VmLck {out.size(report.vm_lck)}, "
          f"{plural(len(buffers), 'fixed buffer')} in {plural(rings, 'io_uring ring')}")
    shown = [r for r in report.regions if every or _resident(r)]
    rest = [r for r in report.regions if r not in shown]
    rows = []
    for r in shown:
        runs = "-" if r.runs is None else str(len(r.runs))
        present = "-" if r.present is None else out.size(r.present)
        rows.append([f"{r.start:#x}-{r.end:#x}", out.size(r.size), _backing_text(r),
                     r.verdict_text, ",".join(r.flags) or "-", present, runs,
                     _nodes_text(r), r.path or "[anonymous]"])
    if rows:
        out.table(["range", "size", "backing", "verdict", "flags", "present", "runs", "nodes",
                   "mapping"], rows, align="lrlllrrll")
    if rest:
        print(f"{plural(len(rest), 'other region')} ({out.size(sum(r.size for r in rest))}) "
              "neither pinned, mlocked nor hugetlb: --all lists them")
    totals = report.by_verdict()
    print("verdicts: " + ", ".join(f"{v.text} {out.size(totals[v])}" for v in Verdict))
    for what, why in report.not_checked:
        print(f"not checked: {what}: {why}")


# -- watch ------------------------------------------------------------------------------------

def _watched_ranges(pid: int) -> list[tuple[int, int]]:
    """The memory ``pid`` holds resident: pinned, mlocked or hugetlb regions."""
    from ..dma import audit

    ranges = [(r.start, r.size) for r in audit(pid, pages=False).regions if _resident(r)]
    if not ranges:
        raise InvalidArgument(f"process {pid} holds no pinned, mlocked or hugetlb memory to "
                              "watch; give --range ADDR:LEN")
    return ranges


def _show(move: Move, out: Output) -> None:
    if out.json:
        print(json.dumps(move.as_json()), flush=True)
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(move.time)) + f".{int(move.time * 1e3) % 1000:03d}"
    old = "none" if move.old is None else f"{move.old:#x}"
    new = "none" if move.new is None else f"{move.new:#x}"
    print(f"{stamp} pid {move.pid} {move.address:#x} {out.size(move.size)} {move.kind}: "
          f"{old} -> {new}", flush=True)


def _watch(args: argparse.Namespace, out: Output) -> Exit:
    from ..dma import watch

    interval = 0.1 if args.interval is None else args.interval
    ranges = args.ranges if args.ranges is not None else _watched_ranges(args.pid)
    moved = False
    with stopped_by_signals() as stop, watch(*ranges, pid=args.pid) as w:
        print(f"physmem dma watch: {plural(w.pages, 'page')} ({out.size(w.bytes)}) of process "
              f"{args.pid}, checked every {interval:g} s"
              + ("" if args.count is None else f", {plural(args.count, 'check')}"),
              file=sys.stderr, flush=True)
        checks = 0
        due = time.monotonic()
        while not stop.is_set() and (args.count is None or checks < args.count):
            for move in w.check():
                moved = True
                _show(move, out)
            checks += 1
            if w.exited:
                print(f"physmem dma watch: process {args.pid} exited", file=sys.stderr,
                      flush=True)
                return Exit.NOT_FOUND
            if args.count is not None and checks >= args.count:
                break
            due += interval
            now = time.monotonic()
            if due < now:
                due = now   # a slow check: carry on from now rather than catch up in a burst
            stop.wait(due - now)
    return Exit.MOVED if moved else Exit.OK


DMA = Command(
    help="DMA safety of a process's memory (audit) and a move watchdog (watch)",
    description="audit: for each mapping of a process (or each --range), what backs it "
                "(hugetlb and its page size, transparent huge pages, 4 KiB anonymous, shmem, "
                "file), whether it is mlocked, pinned for the long term (io_uring fixed "
                "buffers; VmPin counts RDMA and VFIO pins too), excluded from fork children "
                "(DONTFORK, WIPEONFORK), KSM-mergeable or THP-eligible, its physical runs and "
                "NUMA nodes, and a verdict: stable (pinned), locked but movable (memory "
                "offline, compaction and migration still move it), copy-on-write risk after "
                "fork, or unlocked. Physical runs need CAP_SYS_ADMIN.\n\n"
                "watch: read the frame of every watched page every --interval seconds (one "
                "pagemap entry per huge page) and print each page that moved, vanished or "
                "appeared, one line each as it happens (--json: one JSON object per line). "
                "Without --range it watches what the process holds resident. Needs "
                "CAP_SYS_ADMIN.",
    epilog="examples:\n"
           "  physmem dma audit --pid 1234\n"
           "  physmem dma audit --pid 1234 --range 0x7f3a5c000000:64M --json\n"
           "  physmem dma watch --pid 1234 --interval 0.05\n"
           "  physmem dma watch --pid 1234 --range 0x7f3a5c000000:2M --count 100 --json\n"
           "exit status: watch ends 0 when nothing moved, 9 when a watched page moved, "
           "vanished or\nappeared, 5 when the process exited (its pages are reported vanished "
           "first)",
    arguments=arguments, run=run,
    json="audit: one JSON document (every region, with its runs); watch: one JSON object "
         "per line, per move ({time, pid, kind, address, size, old, new})")
