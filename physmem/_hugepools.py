"""Hugepage pools as the kernel keeps them: one global pool per size, and per-NUMA-node pools.

sysfs is the truth: ``/sys/kernel/mm/hugepages/hugepages-<N>kB`` lists every size this kernel
can allocate, gigantic (1 GiB, 16 GiB) ones included, whereas ``HugePages_*`` in
/proc/meminfo only covers the default size.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ._sysfs import listdir, read_int

__all__ = ["Pool", "supported_sizes", "default_size", "pools", "node_pools"]

_SIZE_DIR = re.compile(r"hugepages-(\d+)kB\Z")


@dataclass(frozen=True)
class Pool:
    """One hugepage pool; counts are pages. ``node`` is ``None`` for the global pool.

    Per-node pools have no reserved/overcommit counters in sysfs: those are ``None``.
    """

    size: int
    node: int | None
    total: int
    free: int
    reserved: int | None
    surplus: int
    overcommit: int | None

    @property
    def gigantic(self) -> bool:
        """Larger than the buddy allocator's biggest block: reserve at boot to be sure."""
        return self.size >= 1 << 30


def _sizes_in(directory: str) -> list[int]:
    return sorted(int(m.group(1)) * 1024 for m in map(_SIZE_DIR.match, listdir(directory)) if m)


def supported_sizes(sys_root: str = "/sys") -> list[int]:
    """Huge page sizes in bytes this kernel offers, ascending (empty without hugetlbfs)."""
    return _sizes_in(f"{sys_root}/kernel/mm/hugepages")


# The running kernel's default size, set at boot (``default_hugepagesz=``): read once.
_default_cache: dict[str, int | None] = {}


def default_size(proc_root: str = "/proc") -> int | None:
    """``Hugepagesize`` from /proc/meminfo in bytes; ``None`` if the kernel has no hugetlb."""
    if proc_root in _default_cache:
        return _default_cache[proc_root]
    from .proc import meminfo  # the shared /proc/meminfo parser

    size = meminfo(proc_root=proc_root).get("Hugepagesize")
    if proc_root == "/proc":  # a copied tree may change under the same path: not cached
        _default_cache[proc_root] = size
    return size


def _pool(directory: str, size: int, node: int | None) -> Pool:
    def count(name: str) -> int | None:
        return read_int(f"{directory}/{name}")

    return Pool(size=size, node=node, total=count("nr_hugepages") or 0,
                free=count("free_hugepages") or 0, reserved=count("resv_hugepages"),
                surplus=count("surplus_hugepages") or 0,
                overcommit=count("nr_overcommit_hugepages"))


def node_pools(node: int, sys_root: str = "/sys") -> list[Pool]:
    """The pools of one NUMA node, by size."""
    base = f"{sys_root}/devices/system/node/node{node}/hugepages"
    return [_pool(f"{base}/hugepages-{s // 1024}kB", s, node) for s in _sizes_in(base)]


def pools(sys_root: str = "/sys", proc_root: str = "/proc") -> list[Pool]:
    """Global pools (``node=None``) then every node's pools, each ordered by size.

    ``proc_root`` is accepted for symmetry with the other readers; sysfs has everything.
    """
    del proc_root
    base = f"{sys_root}/kernel/mm/hugepages"
    out = [_pool(f"{base}/hugepages-{s // 1024}kB", s, None) for s in supported_sizes(sys_root)]
    node_base = f"{sys_root}/devices/system/node"
    nodes = sorted(int(n[4:]) for n in listdir(node_base) if n.startswith("node") and n[4:].isdigit())
    for node in nodes:
        out.extend(node_pools(node, sys_root))
    return out
