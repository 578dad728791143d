"""System topology: NUMA nodes, CPUs, PCI locality, boot parameters and cpusets.

``discover()`` gathers everything into a :class:`Topology`; the modules hold one source each
(nodes.py, cpus.py, pci.py, cmdline.py, cpusets.py, model.py).
"""
from __future__ import annotations

from .cmdline import Cmdline, HugepageRequest, parse_cmdline, read_cmdline
from .._syntax import format_cpulist, parse_cpulist, parse_cpumask
from .cpus import Cpu, CpuSets
from .cpusets import Affinity, Cpuset, read_affinity, read_cpuset
from .model import Topology, discover
from .nodes import Anomaly, Node, NodeSets
from .pci import PciDevice, read_pci_device, read_pci_devices

__all__ = [
    "Affinity", "Anomaly", "Cmdline", "Cpu", "CpuSets", "Cpuset", "HugepageRequest", "Node", "NodeSets",
    "PciDevice", "Topology", "format_cpulist", "parse_cmdline", "parse_cpulist",
    "parse_cpumask", "discover", "read_affinity", "read_cmdline", "read_cpuset",
    "read_pci_device", "read_pci_devices",
]
