"""PCI devices and their NUMA locality, from /sys/bus/pci/devices."""
from __future__ import annotations

from dataclasses import dataclass

from .._sysfs import listdir, read_int, read_optional
from .cpulist import parse_cpulist, parse_cpumask

__all__ = ["PciDevice", "read_pci_devices", "read_pci_device"]


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


def read_pci_device(address: str, sys_root: str = "/sys") -> PciDevice | None:
    """One device by its ``domain:bus:slot.function`` address, or ``None`` if absent."""
    path = f"{sys_root}/bus/pci/devices/{address}"
    vendor = read_int(f"{path}/vendor")
    if vendor is None and not listdir(path):
        return None
    node = read_int(f"{path}/numa_node")
    cpus = read_optional(f"{path}/local_cpulist")
    if cpus is not None:
        local = parse_cpulist(cpus, f"{path}/local_cpulist")
    else:
        mask = read_optional(f"{path}/local_cpus")
        local = parse_cpumask(mask, f"{path}/local_cpus") if mask is not None else frozenset()
    return PciDevice(address=address, class_=read_int(f"{path}/class"), vendor=vendor,
                     device=read_int(f"{path}/device"),
                     numa_node=None if node is None or node < 0 else node, local_cpus=local)


def read_pci_devices(sys_root: str = "/sys") -> list[PciDevice]:
    """All PCI functions, sorted by address (empty if the machine has no PCI bus)."""
    out = []
    for address in sorted(listdir(f"{sys_root}/bus/pci/devices")):
        dev = read_pci_device(address, sys_root)
        if dev is not None:
            out.append(dev)
    return out
