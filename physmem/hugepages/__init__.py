"""Hugepages: the kernel's pools (read by physmem/_hugepools.py, below every user of page
sizes), changing them under one system-wide lock with a ledger of what each process
changed (_ledger.py, settled by guard.py's guardian if it dies), growing them on purpose
(reservation.py) or for one buffer with nothing left behind (growth.py), and who holds
their pages (holders.py)."""
from __future__ import annotations

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
from .._hugepools import Pool, default_size, node_pools, pools, supported_sizes
from .._syntax import parse_size
from .reservation import (
                      HugetlbfsMount,
                      Reservation,
                      compact,
                      demote,
                      demote_size,
                      free_stuck_surplus,
                      hugetlbfs_mounts,
                      release_free,
                      reserve,
                      set_pool_size,
                      stuck_surplus,
)

__all__ = ["Pool", "default_size", "node_pools", "pools", "supported_sizes", "HugetlbfsMount",
           "Reservation", "compact", "demote", "demote_size", "hugetlbfs_mounts", "parse_size",
           "reserve",
           "set_pool_size", "release_free", "stuck_surplus", "free_stuck_surplus", "Audit",
           "HugetlbfsFile", "HugetlbFd", "HugetlbMapping", "PoolAudit", "audit", "remove_orphans",
           "Cleanup", "KeptFile", "require_every_process", "sees_every_process"]
