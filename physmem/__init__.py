"""physmem: Linux physical memory for Python.

Where memory physically lives (pagemap, kpageflags), memory a device can DMA into, and the
/proc and /sys views that explain both. See README.md for a tour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
from .addressing import page_size
from .errors import (
    FeatureUnavailable,
    InvalidArgument,
    PageNotPresent,
    ParseError,
    PermissionDenied,
    PfnUnavailable,
    PhysmemError,
    ProcessGone,
)
from .kpageflags import KPF, KPageCgroup, KPageCount, KPageFlags, describe, summarize
from .mapping import Mapping
from .memfd import MemFd
from .pagemap import PM, PageMap, PagemapEntries, virt_to_phys
from .userfaultfd import UserFaultFd

__version__ = "0.1.0"

# Subpackages load on first use (``physmem.validate.run()``, ``physmem.dma``...), so that
# ``import physmem`` stays cheap for callers that only translate addresses.
_LAZY = ("cpus", "dma", "fragmentation", "hugepages", "numa", "overcommit", "physmap", "proc",
         "sysctl", "topology", "validate")

if TYPE_CHECKING:  # what __getattr__ returns, so type checkers see the real modules
    from . import (cpus, dma, fragmentation, hugepages, numa, overcommit, physmap, proc,
                   sysctl, topology, validate)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "errors",
    "page_size",
    "KPF",
    "KPageCgroup",
    "KPageCount",
    "KPageFlags",
    "describe",
    "summarize",
    "PM",
    "PageMap",
    "PagemapEntries",
    "virt_to_phys",
    "Mapping",
    "MemFd",
    "UserFaultFd",
    "FeatureUnavailable",
    "InvalidArgument",
    "PageNotPresent",
    "ParseError",
    "PermissionDenied",
    "PfnUnavailable",
    "PhysmemError",
    "ProcessGone",
]
