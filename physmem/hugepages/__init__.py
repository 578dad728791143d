"""Hugepages: the kernel's pools (pools.py) and growing them on purpose (reserve.py)."""
from __future__ import annotations

from .pools import Pool, default_size, node_pools, pools, supported_sizes
from .reserve import (
                      HugetlbfsMount,
                      Reservation,
                      compact,
                      demote,
                      demote_size,
                      mounts,
                      parse_size,
                      reserve,
                      set_pool_size,
)

__all__ = ["Pool", "default_size", "node_pools", "pools", "supported_sizes", "HugetlbfsMount",
           "Reservation", "compact", "demote", "demote_size", "mounts", "parse_size", "reserve",
           "set_pool_size"]
