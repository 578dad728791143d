"""``physmem v2p``: translate virtual addresses of a process to physical addresses."""
from __future__ import annotations

import argparse

from ..errors import InvalidArgument, PageNotPresent
from . import Command, Exit
from ._options import add_pid, parse_int
from ._output import Output

__all__ = ["arguments", "run", "V2P"]


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("addresses", metavar="ADDRESS", nargs="+", help="virtual address (0x hex or decimal)")
    add_pid(p, "process to look into (default: physmem itself)")


def run(args: argparse.Namespace, out: Output) -> Exit:
    from ..pagemap import PageMap

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
    if out.json:
        out.emit_json(results)
    else:
        out.table(["virtual", "physical"],
                  [[f"{r['vaddr']:#x}", f"{r['paddr']:#x}" if r["present"] else "not present"]
                   for r in results])
        for r in results:
            if not r["present"]:
                out.error(str(r["error"]))
    return status


V2P = Command(
    help="translate virtual addresses to physical addresses",
    description="Translate virtual addresses of a process to physical addresses "
                "through /proc/PID/pagemap (needs CAP_SYS_ADMIN to see PFNs).",
    epilog="example: physmem v2p --pid 1234 0x7f3a5c000000 0x7f3a5c001000\n"
           "exit status 5 if any address has no page present",
    arguments=arguments, run=run,
    json="JSON output: a list of {vaddr, paddr, present}")
