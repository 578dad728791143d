"""physmem: Linux physical memory for Python.

Where memory physically lives (pagemap, kpageflags), memory a device can DMA into, and the
/proc and /sys views that explain both. See README.md for a tour.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import errors
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

__version__ = "0.1.0"

# Everything but the errors loads on first use (``physmem.PageMap``, ``physmem.dma``...):
# ``import physmem`` and the CLI's start-up pay only for what they touch (numpy alone costs
# about 100 ms), which matters for a command that runs for half a second.
_LAZY = ("addressing", "analysis", "dma", "findings", "hugepages", "kpageflags", "mapping",
         "memfd", "numa", "overcommit", "pagemap", "placement", "proc", "sysctl", "topology",
         "track", "userfaultfd", "validate")
_LAZY_NAMES = {
    "page_size": "addressing",
    "KPF": "kpageflags", "KPageCgroup": "kpageflags", "KPageCount": "kpageflags",
    "KPageFlags": "kpageflags",
    "Mapping": "mapping", "MemFd": "memfd",
    "PageMap": "pagemap", "PagemapEntries": "pagemap",
    "virt_to_phys": "pagemap",
    "UserFaultFd": "userfaultfd",
}

if TYPE_CHECKING:  # what __getattr__ returns, so type checkers see the real modules
    from . import (addressing, analysis, dma, findings, hugepages, kpageflags, mapping, memfd,
                   numa, overcommit, pagemap, placement, proc, sysctl, topology, track,
                   userfaultfd, validate)
    from .addressing import page_size
    from .kpageflags import KPF, KPageCgroup, KPageCount, KPageFlags
    from .mapping import Mapping
    from .memfd import MemFd
    from .pagemap import PageMap, PagemapEntries, virt_to_phys
    from .userfaultfd import UserFaultFd


def _load(name: str) -> object:
    import importlib

    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    globals()[name] = value  # found once; later lookups skip __getattr__
    return value


if not TYPE_CHECKING:  # type checkers see the imports above: a misspelt name is an error
    def __getattr__(name: str) -> object:
        if name in _LAZY or name in _LAZY_NAMES:
            return _load(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # The API only: not TYPE_CHECKING, annotations or the loader's own names.
    return sorted({"__version__", *__all__, *_LAZY})


__all__ = [
    "errors",
    "page_size",
    "KPF",
    "KPageCgroup",
    "KPageCount",
    "KPageFlags",
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
