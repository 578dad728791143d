"""``physmem doctor``: check the kernel setup and print what to fix.

Exit status: 0 clean (information only), 1 warnings, 2 errors.
"""
from __future__ import annotations

import argparse

from ..validate import SECTIONS, validate
from .topo import add_roots

EXAMPLE = """example:
  physmem doctor                      # every section
  physmem doctor --section isolation --json
exit status: 0 clean, 1 warnings, 2 errors
"""


def run(args: argparse.Namespace) -> int:
    report = validate(args.section, sys_root=args.sys_root, proc_root=args.proc_root)
    if args.json:
        print(report.to_json(indent=2))
    else:
        for f in report.findings:
            print(f"{f.severity.name:<7} {f.id}: {f.message}")
            if f.fix:
                print(f"        fix: {f.fix}")
        print("ok" if report.ok else f"worst: {report.worst.name.lower()}")
    return int(report.worst)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("doctor", help="validate the kernel setup, say what to fix",
                              description=__doc__, epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", action="append", choices=list(SECTIONS),
                   help="only this section (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_roots(p)
    p.set_defaults(func=run)
