"""DMA-able memory: hugetlb pages chosen to be physically contiguous (allocate.py), the
buffer that holds them (buffer.py) and a block allocator carved from one (pool.py)."""
from __future__ import annotations

from .allocate import allocate_contiguous, allocate_scatter, longest_contiguous, virtual_alignment
from .buffer import DmaBuffer
from .pool import DmaBlock, DmaBlocks, DmaPool

__all__ = ["allocate_contiguous", "allocate_scatter", "longest_contiguous", "DmaBuffer",
           "DmaPool", "DmaBlock", "DmaBlocks", "virtual_alignment"]
