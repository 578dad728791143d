"""Hugepages: the kernel's pools (_pools.py), growing them on purpose (reservation.py, guarded
against the grower's death by guard.py), and who holds their pages (holders.py)."""
from __future__ import annotations

from .guard import PoolGuard
from .holders import (
                      Audit,
                      Cleanup,
                      HugetlbfsFile,
                      HugetlbFd,
                      HugetlbMapping,
                      KeptFile,
                      PoolAudit,
                      audit,
                      remove_orphans,
                      require_every_process,
                      sees_every_process,
)
from ._pools import Pool, default_size, node_pools, pools, supported_sizes
from .reservation import (
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
           "set_pool_size", "PoolGuard", "Audit", "HugetlbfsFile", "HugetlbFd", "HugetlbMapping",
           "PoolAudit", "audit", "remove_orphans", "Cleanup", "KeptFile",
           "require_every_process", "sees_every_process"]
