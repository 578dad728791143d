"""``physmem doctor``: check the kernel setup and print what to fix."""
from __future__ import annotations

import argparse
from typing import Iterator

from . import Command, Exit
from ._output import Output

__all__ = ["EXAMPLE", "arguments", "run", "DOCTOR"]

EXAMPLE = """example:
  physmem doctor                      # every section
  physmem doctor --section isolation --json
exit status: 0 clean (information only), 3 warnings, 4 errors
"""

class _Sections:
    """``--section``'s choices: physmem.validate.SECTIONS, looked up only when argparse
    checks a value or shows the choices (importing validate loads numpy, which building the
    parser for ``physmem --help`` must not)."""

    def __iter__(self) -> Iterator[str]:
        from ..validate import SECTIONS

        return iter(SECTIONS)

    def __contains__(self, name: object) -> bool:
        from ..validate import SECTIONS

        return name in SECTIONS


def arguments(p: argparse.ArgumentParser) -> None:
    section = p.add_argument("--section", action="append", help="only this section (repeatable)")
    # Set after add_argument, which formats the choices once to check the metavar.
    section.choices = _Sections()


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..findings import Severity
    from ..validate import run as validate

    status = {Severity.INFO: Exit.OK, Severity.WARNING: Exit.WARNINGS,
              Severity.ERROR: Exit.ERRORS}
    report = validate(args.section, sys_root=args.sys_root, proc_root=args.proc_root)
    if out.json:
        out.emit_json(report.to_dict())
    else:
        for f in report.findings:
            print(f"{f.severity.name:<7} {f.id}: {f.message}")
            if f.fix:
                print(f"        fix: {f.fix}")
        print("ok" if report.ok else f"worst: {report.worst.name.lower()}")
    return status[report.worst]


DOCTOR = Command(
    help="validate the kernel setup, say what to fix",
    description="Check the kernel's setup for physical memory work (hugepages, NUMA, CPU "
                "isolation, access to the page tables) and print each finding with the exact "
                "fix.",
    epilog=EXAMPLE, arguments=arguments, run=run, json="machine-readable output", roots=True)
