"""``physmem plan``: which CPUs for housekeeping, the watchdog, control loops and background."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import cpus, topology
from .topo import add_roots

EXAMPLE = """example:
  physmem plan --device 0000:03:00.0 --loops 2
  physmem plan --json
"""


def run(args: argparse.Namespace) -> int:
    topo = topology.read(args.sys_root, args.proc_root)
    placement = cpus.plan(topo, devices=args.device or (), control_loops=args.loops)
    d: dict[str, Any] = placement.to_dict()  # JSON-shaped: each key has its own type
    if args.json:
        print(json.dumps(d, indent=2, sort_keys=True))
        return 0
    for key in ("node", "housekeeping", "watchdog", "control_loops", "background"):
        print(f"{key}: {d[key]}")
    for dev, local in d["device_local"].items():
        print(f"device {dev}: {local}")
    print("why:")
    for r in d["reasons"]:
        print(f"  {r['role']} {r['cpus']}: {r['why']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("plan", help="plan CPU placement for control loops near a device",
                              description=__doc__, epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", metavar="PCI_ADDR",
                   help="PCI address the loops drive (repeatable), e.g. 0000:03:00.0")
    p.add_argument("--loops", type=int, default=1, metavar="N", help="control loops (default 1)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_roots(p)
    p.set_defaults(func=run)
