"""``physmem v2p``: translate virtual addresses of a process to physical addresses."""
from __future__ import annotations

import argparse

from ..errors import InvalidArgument, PageNotPresent
from ..pagemap import PageMap
from . import Exit
from ._output import emit_json, parse_int, pid_arg, print_error, print_table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "v2p", help="translate virtual addresses to physical addresses",
        description="Translate virtual addresses of a process to physical addresses "
                    "through /proc/PID/pagemap (needs CAP_SYS_ADMIN to see PFNs).",
        epilog="example: physmem v2p --pid 1234 0x7f3a5c000000 0x7f3a5c001000\n"
               "exit status 5 if any address has no page present",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("addresses", metavar="ADDRESS", nargs="+", help="virtual address (0x hex or decimal)")
    p.add_argument("--pid", type=pid_arg, default=None, help="process to look into (default: physmem itself)")
    p.add_argument("--json", action="store_true", help="JSON output: a list of {vaddr, paddr, present}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Exit:
    try:
        addresses = [parse_int(a) for a in args.addresses]
    except ValueError as exc:
        raise InvalidArgument(f"not an address: {exc}") from None
    results: list[dict[str, object]] = []
    status = Exit.OK
    with PageMap(args.pid) as pm:
        for addr in addresses:
            try:
                results.append({"vaddr": addr, "paddr": pm.translate(addr), "present": True})
            except PageNotPresent as exc:
                results.append({"vaddr": addr, "paddr": None, "present": False, "error": str(exc)})
                status = Exit.NOT_FOUND
    if args.json:
        emit_json(results)
    else:
        print_table(["virtual", "physical"],
                    [[f"{r['vaddr']:#x}", f"{r['paddr']:#x}" if r["present"] else "not present"]
                     for r in results])
        for r in results:
            if not r["present"]:
                print_error(str(r["error"]))
    return status
