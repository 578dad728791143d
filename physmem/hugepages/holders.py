"""Who holds the hugepages: reconcile every pool's counters with the processes and files
that hold its pages, and find the orphans (hugetlbfs files nobody maps or holds open).

Sources, all read through :mod:`physmem.proc`: ``/proc/<pid>/smaps`` (hugetlb mappings: the
``ht`` VmFlag, ``KernelPageSize``, ``Shared_Hugetlb``/``Private_Hugetlb``; ``nr`` marks
MAP_NORESERVE), ``/proc/<pid>/numa_maps`` (pages per node), ``/proc/<pid>/fd`` and
``map_files`` (which file: device, inode and its allocated pages), and every hugetlbfs
mount (reached through descriptors only, see :mod:`._hugetlbfs`). Crashed DPDK or SPDK
applications leave ``rtemap_*``/``spdk*`` files behind on hugetlbfs; their pages stay out of
the pool until the files are removed.

The pages a process holds are counted once per file (shared memory, memfds, files) plus
the private copies in MAP_PRIVATE mappings. ``Rsvd`` is attributed to the mappings whose
pages are not faulted in yet (not MAP_NORESERVE; a shared file's once): the kernel shows no
per-mapping reservation, and a file's reservation outlives its mappings, so this is exact
only while every reserving mapping is alive.
"""
from __future__ import annotations

import errno
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from .._records import hex_fields
from ..errors import PermissionDenied, PhysmemError
from ..proc.fds import FileStat, mapped_file, namespace, open_files, pids
from ._hugetlbfs import Remover, Staged, hugetlbfs_mounts, mount_files, open_mount
from .._hugepools import pools, supported_sizes

__all__ = ["HugetlbMapping", "HugetlbFd", "HugetlbfsFile", "PoolAudit", "Audit", "Cleanup",
           "KeptFile", "audit", "remove_orphans", "require_every_process", "sees_every_process"]

FileId = tuple[int, int]  # (st_dev, st_ino)

# The inode number of the initial pid namespace: fixed by the kernel since Linux 3.8
# (PROC_PID_INIT_INO), whatever the machine; every other namespace gets one above 0xF0000000.
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC
# Files leased at once by remove_orphans: one scan of the processes re-checks them all.
_BATCH = 64


@hex_fields("start", "end")
@dataclass(frozen=True)
class HugetlbMapping:
    """A hugetlb mapping of a process. ``pages`` are faulted in (of ``page_size``);
    ``reserved`` the unfaulted pages it holds a reservation for (estimate)."""

    pid: int
    comm: str
    start: int
    end: int
    page_size: int
    path: str
    device: int
    inode: int
    shared: bool
    pages: int
    private_pages: int
    reserved: int
    nodes: dict[int, int]


@dataclass(frozen=True)
class HugetlbFd:
    """A hugetlbfs file (memfd, or a file on a mount) a process holds open."""

    pid: int
    comm: str
    fd: int
    target: str
    page_size: int
    device: int
    inode: int
    size: int
    pages: int


@dataclass(frozen=True)
class HugetlbfsFile:
    """A file on a hugetlbfs mount, the pages it holds, and who maps or holds it. A file
    with several names (hard links, or mounts of one hugetlbfs at several places) is
    listed once."""

    path: str
    mount: str
    device: int
    inode: int
    page_size: int
    size: int
    bytes: int
    pages: int
    holders: tuple[int, ...]

    @property
    def orphan(self) -> bool:
        return not self.holders


@dataclass(frozen=True)
class PoolAudit:
    """One pool (``node`` None: the whole size) reconciled with what holds its pages.

    ``in_use`` is total - free; ``held`` the pages attributed to processes (mappings and
    open files); ``orphaned`` the pages of orphan files; ``unattributed`` what is in use
    and neither (negative only if attribution overcounts, for example COW pages shared
    after fork). ``surplus_unheld`` surplus pages no process holds. For node pools only the
    pages processes map on that node are known (from numa_maps): files and memfds are not
    placed by node, so ``orphaned`` and ``surplus_unheld`` are None there. ``stuck`` counts
    free pages the kernel calls surplus yet will never free, as no user will let go of them
    (surplus beyond the pages in use and reserved: a write of ``nr_hugepages`` does not free
    them; ``audit --clean`` does, see :func:`~physmem.hugepages.free_stuck_surplus`); None
    for node pools, which have no reserved count."""

    size: int
    node: int | None
    total: int
    free: int
    reserved: int | None
    surplus: int
    in_use: int
    held: int
    orphaned: int | None
    unattributed: int
    surplus_unheld: int | None
    reserved_attributed: int | None
    stuck: int | None = None


@dataclass(frozen=True)
class Audit:
    """The result of :func:`audit`. ``to_dict()`` is the ``--json`` form."""

    pools: tuple[PoolAudit, ...]
    mappings: tuple[HugetlbMapping, ...]
    fds: tuple[HugetlbFd, ...]
    files: tuple[HugetlbfsFile, ...]
    unreadable: tuple[int, ...] = field(default=())  # pids whose files could not be read
    # hugetlbfs mount points whose path does not lead to the mount (another mount on top,
    # or moved meanwhile): their files are not listed
    unreachable_mounts: tuple[str, ...] = field(default=())

    @property
    def orphans(self) -> tuple[HugetlbfsFile, ...]:
        return tuple(f for f in self.files if f.orphan)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["orphans"] = [asdict(f) for f in self.orphans]
        for m in out["mappings"]:
            m["nodes"] = {str(k): v for k, v in m["nodes"].items()}
        return out


def _comm(pid: int, proc_root: str) -> str:
    from ..proc import stat

    try:
        return stat(pid, proc_root=proc_root).comm
    except PhysmemError:
        return "?"


def _scan_process(pid: int, proc_root: str, base_page: int, sizes: set[int]
                  ) -> tuple[list[HugetlbMapping], list[HugetlbFd], dict[FileId, FileStat]]:
    from ..proc import numa_maps, smaps

    comm = _comm(pid, proc_root)
    maps: list[HugetlbMapping] = []
    stats: dict[FileId, FileStat] = {}
    vmas = [v for v in smaps(pid, proc_root=proc_root) if "ht" in v.vm_flags]
    nodes: dict[int, dict[int, int]] = {}
    if vmas:
        try:
            nodes = {n.address: n.nodes for n in numa_maps(pid, proc_root=proc_root) if n.huge}
        except PhysmemError:
            nodes = {}  # a kernel without NUMA: no placement, the rest still holds
    for v in vmas:
        ps = v.get("KernelPageSize", base_page) or base_page
        faulted = (v.get("Shared_Hugetlb", 0) + v.get("Private_Hugetlb", 0)) // ps
        private = v.get("Private_Hugetlb", 0) // ps if not v.shared else 0
        device = os.makedev(v.device.major, v.device.minor)
        try:
            st = mapped_file(pid, v.start, v.end, proc_root)
            device = st.device
            stats[(st.device, st.inode)] = st
        except PhysmemError:
            pass
        # Pages of the mapping not faulted in yet hold a reservation unless MAP_NORESERVE
        # ("nr"). For a shared mapping the reservation is the file's: counted once per file.
        noreserve = "nr" in v.vm_flags
        reserved = 0 if noreserve else max(0, (v.end - v.start) // ps - faulted)
        maps.append(HugetlbMapping(pid, comm, v.start, v.end, ps, v.path, device, v.inode,
                                   v.shared, faulted, private, reserved,
                                   dict(nodes.get(v.start, {}))))
    fds: list[HugetlbFd] = []
    for f in open_files(pid, proc_root):
        if f.stat.block_size <= base_page or f.stat.block_size not in sizes:
            continue  # hugetlbfs reports its page size as the block size; nothing else does
        stats[(f.stat.device, f.stat.inode)] = f.stat
        fds.append(HugetlbFd(pid, comm, f.fd, f.target, f.stat.block_size, f.stat.device,
                             f.stat.inode, f.stat.size, f.stat.allocated // f.stat.block_size))
    return maps, fds, stats


class _Processes(NamedTuple):
    mappings: list[HugetlbMapping]
    fds: list[HugetlbFd]
    stats: dict[FileId, FileStat]
    holders: dict[FileId, set[int]]
    unreadable: list[int]


def _scan_processes(proc_root: str, sys_root: str) -> _Processes:
    base_page = os.sysconf("SC_PAGE_SIZE")
    sizes = set(supported_sizes(sys_root))
    found = _Processes([], [], {}, defaultdict(set), [])
    for pid in pids(proc_root):
        try:
            m, f, s = _scan_process(pid, proc_root, base_page, sizes)
        except PermissionDenied:
            found.unreadable.append(pid)
            continue
        except PhysmemError:
            continue  # gone, or a kernel thread
        found.mappings.extend(m)
        found.fds.extend(f)
        found.stats.update(s)
        for x in m:
            found.holders[(x.device, x.inode)].add(pid)
        for y in f:
            found.holders[(y.device, y.inode)].add(pid)
    return found


def audit(proc_root: str = "/proc", sys_root: str = "/sys") -> Audit:
    """Reconcile every hugepage pool with the processes and files holding its pages.

    Needs root to see other processes' mappings and open files; processes it cannot read
    are listed in ``unreadable``. A process that exits meanwhile is skipped.
    """
    procs = _scan_processes(proc_root, sys_root)
    files = []
    unreachable = []
    seen: set[FileId] = set()
    for mnt in hugetlbfs_mounts(proc_root):
        root = open_mount(mnt, proc_root)
        if root is None:
            unreachable.append(mnt.path)
            continue
        try:
            for rel, st in mount_files(mnt, root, proc_root):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                nbytes = st.st_blocks * 512
                ps = st.st_blksize  # hugetlbfs gives its page size as the block size
                procs.stats[key] = FileStat(st.st_dev, st.st_ino, st.st_size, nbytes, ps)
                files.append(HugetlbfsFile(os.path.join(mnt.path, *rel), mnt.path,
                                           st.st_dev, st.st_ino, ps, st.st_size, nbytes,
                                           nbytes // ps if ps else 0,
                                           tuple(sorted(procs.holders.get(key, ())))))
        finally:
            os.close(root)
    return Audit(_reconcile(procs.mappings, procs.stats, procs.holders, files, sys_root),
                 tuple(procs.mappings), tuple(procs.fds), tuple(files),
                 tuple(procs.unreadable), tuple(unreachable))


def _reconcile(mappings: list[HugetlbMapping], stats: dict[FileId, FileStat],
               holders: dict[FileId, set[int]], files: list[HugetlbfsFile],
               sys_root: str) -> tuple[PoolAudit, ...]:
    held: dict[int, int] = defaultdict(int)
    orphaned: dict[int, int] = defaultdict(int)
    reserved: dict[int, int] = defaultdict(int)
    for key, st in stats.items():
        if st.block_size and key in holders:
            held[st.block_size] += st.allocated // st.block_size  # once per file
    for f in files:
        if f.orphan:
            orphaned[f.page_size] += f.pages
    on_node: dict[tuple[int, int], int] = defaultdict(int)
    counted: set[tuple[FileId, int]] = set()
    shared_reserved: dict[tuple[int, FileId], int] = {}
    for m in mappings:
        held[m.page_size] += m.private_pages  # private copies are in no file
        if m.shared:
            key2 = (m.page_size, (m.device, m.inode))
            shared_reserved[key2] = max(shared_reserved.get(key2, 0), m.reserved)
        else:
            reserved[m.page_size] += m.reserved
        for node, n in m.nodes.items():
            if m.shared and ((m.device, m.inode), node) in counted:
                continue  # shared pages: once per file and node
            counted.add(((m.device, m.inode), node))
            on_node[(m.page_size, node)] += n
    for (ps, _), n in shared_reserved.items():
        reserved[ps] += n
    out = []
    for p in pools(sys_root):
        in_use = p.total - p.free
        if p.node is None:
            unattributed = in_use - held[p.size] - orphaned[p.size]
            unheld = min(p.surplus, max(0, orphaned[p.size] + max(0, unattributed)))
            stuck = max(0, p.surplus - in_use - (p.reserved or 0))
            out.append(PoolAudit(p.size, None, p.total, p.free, p.reserved, p.surplus, in_use,
                                 held[p.size], orphaned[p.size], unattributed, unheld,
                                 reserved[p.size], stuck))
        else:
            mapped = on_node[(p.size, p.node)]
            out.append(PoolAudit(p.size, p.node, p.total, p.free, p.reserved, p.surplus,
                                 in_use, mapped, None, in_use - mapped, None, None))
    return tuple(out)


@dataclass(frozen=True)
class KeptFile:
    """An orphan :func:`remove_orphans` left in place, and why."""

    file: HugetlbfsFile
    reason: str


@dataclass(frozen=True)
class Cleanup:
    """What :func:`remove_orphans` did: the files removed and the files kept."""

    removed: tuple[HugetlbfsFile, ...]
    kept: tuple[KeptFile, ...]


def sees_every_process(proc_root: str = "/proc") -> bool:
    """Whether ``proc_root`` lists every process of the machine: it does when this process
    is in the initial pid namespace and visible there (a /proc shows the processes of its
    own pid namespace and those below; this process is visible only in its own namespace and
    those above, and nothing is above the initial one). False in a container's pid
    namespace, and where it cannot be told."""
    try:
        return namespace("pid", None, proc_root) == _INITIAL_PID_NAMESPACE
    except PhysmemError:
        return False


def require_every_process(proc_root: str = "/proc") -> None:
    """PermissionDenied unless :func:`sees_every_process`: what :func:`remove_orphans` checks
    first, for callers that want to refuse before they ask anything."""
    if not sees_every_process(proc_root):
        raise PermissionDenied(
            "refusing to remove hugetlbfs files: this process is not in the initial pid "
            "namespace (a container?), so processes outside it, which may hold these files, "
            "are not seen; run it on the host, or pass ignore_pid_namespace=True (files open "
            "or mapped anywhere are still kept: the kernel refuses their lease)",
            errno=errno.EPERM, path=f"{proc_root}/self/ns/pid")


def _relative(f: HugetlbfsFile) -> tuple[str, ...] | None:
    prefix = f.mount.rstrip("/") + "/"
    if not f.path.startswith(prefix):
        return None
    rel = tuple(f.path[len(prefix):].split("/"))
    return None if any(p in ("", ".", "..") for p in rel) else rel


def remove_orphans(report: Audit, proc_root: str = "/proc", sys_root: str = "/sys", *,
                   ignore_pid_namespace: bool = False) -> Cleanup:
    """Remove the orphan files of ``report`` that are orphans still.

    Each file is reached from its mount through descriptors only (no symlink followed, no
    other mount entered) and must be the very file the audit saw (device and inode). It is
    then leased (the kernel refuses while anyone has it open or mapped, in any pid namespace)
    and renamed to a hidden name, the processes are scanned again while the lease holds, and
    it is removed unless the lease was broken (someone opened it) or a process holds it; a
    file kept gets its name back. Refused (PermissionDenied) when ``proc_root`` may not show
    every process, as in a container's pid namespace, unless ``ignore_pid_namespace``.
    """
    if not ignore_pid_namespace:
        require_every_process(proc_root)
    removed: list[HugetlbfsFile] = []
    kept: list[KeptFile] = []
    orphans = report.orphans
    for start in range(0, len(orphans), _BATCH):
        with Remover(proc_root) as remover:
            staged: list[tuple[HugetlbfsFile, Staged]] = []
            for f in orphans[start:start + _BATCH]:
                rel = _relative(f)
                got = ("not below its mount point" if rel is None
                       else remover.stage(f.mount, f.device, f.inode, rel))
                if isinstance(got, str):
                    kept.append(KeptFile(f, got))
                else:
                    staged.append((f, got))
            if not staged:
                continue
            # While the leases hold: the processes again (this one holds the leased files).
            holders = _scan_processes(proc_root, sys_root).holders
            me = os.getpid()
            for f, s in staged:
                by = tuple(sorted(holders.get((f.device, f.inode), set()) - {me}))
                reason = remover.finish(s, by)
                if reason:
                    kept.append(KeptFile(f, reason))
                else:
                    removed.append(f)
    return Cleanup(tuple(removed), tuple(kept))
