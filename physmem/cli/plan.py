"""``physmem plan``: which CPUs for housekeeping, the watchdog, control loops and background."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import InvalidArgument
from . import Command, Exit
from ._options import count_arg
from ._output import Output

__all__ = ["EXAMPLE", "arguments", "run", "PLAN"]

EXAMPLE = """example:
  physmem plan --device 0000:03:00.0 --loops 2
  physmem plan --json
"""


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", action="append", metavar="PCI_ADDR",
                   help="PCI address the loops drive (repeatable), e.g. 0000:03:00.0")
    p.add_argument("--loops", type=count_arg, default=1, metavar="N", help="control loops (default 1)")


def run(args: argparse.Namespace, out: Output) -> Exit:
    from .. import placement, topology
    from .._syntax import format_cpulist
    from ..topology.pci import PCI_ADDRESS

    topo = topology.discover(args.sys_root, args.proc_root)
    known = {d.address for d in topo.pci_devices}
    devices = [d.lower() for d in args.device or ()]  # sysfs names are lower case
    for dev in devices:
        if dev in known:
            continue
        if not PCI_ADDRESS.fullmatch(dev):
            raise InvalidArgument(f"--device {dev!r} is not a PCI address: give "
                                  "domain:bus:device.function, e.g. 0000:03:00.0 (lspci -D)")
        raise InvalidArgument(f"--device {dev}: PCI device {dev} does not exist on this "
                              f"machine (it is not in {os.path.join(args.sys_root, 'bus/pci/devices')}"
                              "; lspci -D lists those that do)")
    plan = placement.plan(topo, devices=devices, control_loops=args.loops)
    d: dict[str, Any] = plan.to_dict()  # JSON-shaped: each key has its own type
    if out.json:
        out.emit_json(d)
        return Exit.OK
    # CPU lists in the kernel's range syntax (0-3,8), as the other roles already are; "-"
    # for none.
    text = dict(d, control_loops=format_cpulist(d["control_loops"]))
    for key in ("node", "housekeeping", "watchdog", "control_loops", "background"):
        print(f"{key}: {'-' if text[key] in ('', None) else text[key]}")
    for dev, local in d["device_local"].items():
        print(f"device {dev}: {local}")
    print("why:")
    for r in d["reasons"]:
        print(f"  {r['role']} {r['cpus']}: {r['why']}")
    return Exit.OK


PLAN = Command(
    help="plan CPU placement for control loops near a device",
    description="Which CPUs to use for housekeeping, the watchdog, control loops and "
                "background work: loops on isolated CPUs of the node of the device they "
                "drive, one per physical core, with the reason for each choice.",
    epilog=EXAMPLE, arguments=arguments, run=run, json="machine-readable output", roots=True)
