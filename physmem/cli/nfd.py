"""``physmem nfd``: Kubernetes node labels from the contiguity forecast, as a Node Feature
Discovery feature file."""
from __future__ import annotations

import argparse

from . import Command, Exit
from ._options import check_directory, refused, seconds_arg
from ._output import Output

__all__ = ["DESCRIPTION", "EXAMPLE", "arguments", "run", "NFD"]

DESCRIPTION = ("Write what this node's kernel could hand out (hugepages per size, now and after "
               "compaction, the longest contiguous run) and whether DMA memory can be pinned, "
               "as a feature file of Node Feature Discovery's local source: NFD's worker turns "
               "it into node labels physmem.io/..., which pods select with nodeAffinity. Needs "
               "root (the forecast scans /proc/kpageflags).")

EXAMPLE = """examples:
  physmem nfd                          # /etc/kubernetes/node-feature-discovery/features.d/physmem
  physmem nfd --dir DIR --interval 300 # rerun every 300 s (cron): labels lapse after 900 s
  physmem nfd --json                   # the labels, written nowhere
  physmem exporter --nfd DIR           # rewrite the file after every background forecast
"""


def arguments(p: argparse.ArgumentParser) -> None:
    from ..nfd import DEFAULT_DIR

    p.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR",
                   help=f"NFD's features.d directory (default {DEFAULT_DIR})")
    p.add_argument("--interval", type=seconds_arg, default=60.0, metavar="S",
                   help="how often the file is rewritten (default 60): the labels expire after "
                        "three intervals (at least 180 s) without a rewrite")


def run(args: argparse.Namespace, out: Output) -> Exit:
    from .. import nfd
    from ..analysis.contiguity import forecast

    if not out.json:
        check_directory(args.dir, "--dir")
    node_labels = nfd.labels(nfd.obtainable(forecast(proc_root=args.proc_root,
                                                     sys_root=args.sys_root)),
                             dma=nfd.dma_pinning())
    if out.json:
        out.emit_json(node_labels)
        return Exit.OK
    try:
        print(nfd.write(args.dir, node_labels, interval=args.interval))
    except OSError as exc:
        raise refused(f"cannot write into --dir {args.dir}", exc) from None
    return Exit.OK


NFD = Command(
    help="Kubernetes node labels from the forecast, for Node Feature Discovery",
    description=DESCRIPTION, epilog=EXAMPLE, arguments=arguments, run=run,
    json="print the labels as a JSON object instead of writing the file", roots=True)
