"""Hugepages: the kernel's pools (pools.py). Reservation and DMA buffers build on these."""
from __future__ import annotations

from .pools import Pool, default_size, node_pools, pools, supported_sizes

__all__ = ["Pool", "default_size", "node_pools", "pools", "supported_sizes"]
