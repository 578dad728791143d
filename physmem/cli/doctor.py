"""``physmem doctor``: check the kernel setup and print what to fix."""
from __future__ import annotations

import argparse

from .. import validate
from ..validate import SECTIONS, Severity
from . import Exit
from ._output import emit_json
from .topo import add_roots

EXAMPLE = """example:
  physmem doctor                      # every section
  physmem doctor --section isolation --json
exit status: 0 clean (information only), 3 warnings, 4 errors
"""

_STATUS = {Severity.INFO: Exit.OK, Severity.WARNING: Exit.WARNINGS, Severity.ERROR: Exit.ERRORS}


def run(args: argparse.Namespace) -> Exit:
    report = validate.run(args.section, sys_root=args.sys_root, proc_root=args.proc_root)
    if args.json:
        emit_json(report.to_dict())
    else:
        for f in report.findings:
            print(f"{f.severity.name:<7} {f.id}: {f.message}")
            if f.fix:
                print(f"        fix: {f.fix}")
        print("ok" if report.ok else f"worst: {report.worst.name.lower()}")
    return _STATUS[report.worst]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("doctor", help="validate the kernel setup, say what to fix",
                              description="Check the kernel's setup for physical memory work "
                                          "(hugepages, NUMA, CPU isolation, access to the "
                                          "page tables) and print each finding with the "
                                          "exact fix.", epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", action="append", choices=list(SECTIONS),
                   help="only this section (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_roots(p)
    p.set_defaults(func=run)
