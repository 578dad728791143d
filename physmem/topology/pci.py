"""PCI devices and their NUMA locality, from /sys/bus/pci/devices."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .._sysfs import listdir, parse_int, read_parsed
from .._syntax import parse_cpulist, parse_cpumask
from .._args import as_text
from ..errors import InvalidArgument

__all__ = ["PciDevice", "read_pci_devices", "read_pci_device", "PCI_ADDRESS"]

# domain:bus:device.function, as lspci -D and /sys/bus/pci/devices name them
PCI_ADDRESS = re.compile(r"[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


@dataclass(frozen=True)
class PciDevice:
    """``class_`` is the 24-bit class code (0x020000 = Ethernet). ``numa_node`` is ``None``
    when firmware gives none (-1); ``local_cpus`` is what the kernel says is near it."""

    address: str
    class_: int | None
    vendor: int | None
    device: int | None
    numa_node: int | None
    local_cpus: frozenset[int]


def read_pci_device(address: str, sys_root: str = "/sys", *,
                    skipped: list[str] | None = None) -> PciDevice | None:
    """One device by its ``domain:bus:slot.function`` address, or ``None`` if absent.

    With ``skipped``, a file that does not parse reads as missing and is noted there.
    Anything but such an address is InvalidArgument ("" would read the devices directory).
    """
    if not PCI_ADDRESS.fullmatch(as_text(address, "address")):
        raise InvalidArgument(f"{address!r:.60} is not a PCI address: give domain:bus:"
                              "device.function in lower case, e.g. 0000:03:00.0 (lspci -D)")
    path = f"{sys_root}/bus/pci/devices/{address}"

    def num(name: str) -> int | None:
        return read_parsed(f"{path}/{name}", parse_int, skipped)

    vendor = num("vendor")
    if vendor is None and not listdir(path):
        return None
    node = num("numa_node")
    local = read_parsed(f"{path}/local_cpulist", parse_cpulist, skipped)
    if local is None:
        local = read_parsed(f"{path}/local_cpus", parse_cpumask, skipped)
    return PciDevice(address=address, class_=num("class"), vendor=vendor, device=num("device"),
                     numa_node=None if node is None or node < 0 else node,
                     local_cpus=local or frozenset())


def read_pci_devices(sys_root: str = "/sys", *,
                     skipped: list[str] | None = None) -> list[PciDevice]:
    """All PCI functions, sorted by address (empty if the machine has no PCI bus)."""
    out = []
    for address in sorted(listdir(f"{sys_root}/bus/pci/devices")):
        if not PCI_ADDRESS.fullmatch(address):   # not a device (a stray file in a capture)
            continue
        dev = read_pci_device(address, sys_root, skipped=skipped)
        if dev is not None:
            out.append(dev)
    return out
