"""DMA-able memory: hugetlb pages chosen to be physically contiguous (allocate.py), the
buffer that holds them (buffer.py), a block allocator carved from one (pool.py), a watchdog
over pages that must not move (watchdog.py) and a DMA-safety audit of any process
(safety.py)."""
from __future__ import annotations

from .allocate import allocate_contiguous, allocate_scatter, longest_contiguous, virtual_alignment
from .buffer import DmaBuffer
from .pool import DmaBlock, DmaBlocks, DmaPool
from .safety import Backing, DmaAudit, Region, Verdict, audit
from .watchdog import Move, Watch, watch

__all__ = ["allocate_contiguous", "allocate_scatter", "longest_contiguous", "DmaBuffer",
           "DmaPool", "DmaBlock", "DmaBlocks", "virtual_alignment", "Move", "Watch", "watch",
           "Backing", "DmaAudit", "Region", "Verdict", "audit"]
