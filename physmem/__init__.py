"""physmem: Linux physical memory for Python.

Where memory physically lives (pagemap, kpageflags), memory a device can DMA into, and the
/proc and /sys views that explain both. See README.md for a tour.
"""
from __future__ import annotations

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

__all__ = [
    "errors",
    "FeatureUnavailable",
    "InvalidArgument",
    "PageNotPresent",
    "ParseError",
    "PermissionDenied",
    "PfnUnavailable",
    "PhysmemError",
    "ProcessGone",
]
