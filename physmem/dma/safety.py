"""A DMA-safety audit of any process: for each mapping (or each range asked), what backs it,
what holds it in place, where it physically is, and what could still move it.

What holds memory in place, from strongest to weakest: a long-term pin (FOLL_LONGTERM: an
io_uring fixed buffer, an RDMA memory registration, a VFIO DMA mapping), which nothing
moves; an mlock (VmFlags ``lo``), which keeps pages resident but lets memory offline,
compaction (``vm.compact_unevictable_allowed``) and NUMA migration move them; nothing, which
also lets reclaim take them. Private writable memory a fork child would share is moved by
the parent's next write after a fork (copy on write) unless excluded from fork children
(MADV_DONTFORK ``dc``, MADV_WIPEONFORK ``wf``); the kernel copies pinned pages for the
child at fork, so pinned memory keeps its frames.

Every reading comes from the kernel's own files: /proc/PID/smaps (VmFlags, page sizes, THP),
/proc/PID/status (VmPin, VmLck), /proc/PID/fdinfo of the process's io_uring rings (the
fixed buffers), /proc/PID/pagemap (frames: CAP_SYS_ADMIN) and move_pages (NUMA nodes).
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._records import hex_fields
from .._args import as_bool, as_pid
from .._runs import RUN_DTYPE, find_runs, run_table
from ..addressing import check_range, page_size
from ..errors import InvalidArgument, PfnUnavailable, PhysmemError
from ..pagemap import PM, PageMap
from ..proc import Prot, Smaps, UringBuffer, VmaKind
from ..proc._read import stat as proc_stat

__all__ = ["Backing", "Verdict", "Region", "DmaAudit", "audit"]


class Backing(enum.Enum):
    """What a mapping's pages are."""

    HUGETLB = "hugetlb"        # hugetlbfs / MAP_HUGETLB pages (``page_size`` says which)
    THP = "thp"                # anonymous memory, partly in transparent huge pages now
    ANONYMOUS = "anonymous"    # anonymous memory in 4 KiB pages
    SHMEM = "shmem"            # shared memory: memfd, shared anonymous, SysV, tmpfs files
    FILE = "file"              # page cache of a file on a disk filesystem
    SPECIAL = "special"        # device memory (VM_IO/VM_PFNMAP), vdso, vvar: not movable pages


class Verdict(enum.Enum):
    """How safe a range is as a DMA target, worst last."""

    STABLE = "stable"                  # pinned (or device memory): the kernel will not move it
    LOCKED_MOVABLE = "locked-movable"  # mlocked or hugetlb: resident, but offline, compaction
                                       # and migration move it
    COW_RISK = "cow-risk"              # resident, but after a fork the parent's next write
                                       # moves it
    UNLOCKED = "unlocked"              # reclaim, swap and migration may all move it

    @property
    def text(self) -> str:
        return _VERDICT_TEXT[self]


_VERDICT_TEXT = {Verdict.STABLE: "stable", Verdict.LOCKED_MOVABLE: "locked but movable",
                 Verdict.COW_RISK: "copy-on-write risk after fork", Verdict.UNLOCKED: "unlocked"}


@hex_fields("start", "end")
@dataclass(frozen=True, eq=False)
class Region:
    """A mapping, or the part of one a range asked for, split where a pin starts or ends.

    ``present`` counts the pages with a frame of their own (a page that still maps the
    shared zero page, memory only read so far, holds nothing and is not counted); ``runs``
    are their physically adjacent pieces (:data:`RUN_DTYPE`, split where the NUMA node
    changes; ``run_nodes`` gives each one's node) and ``nodes`` the bytes on each node.
    ``runs`` is None where frames could not be read (no CAP_SYS_ADMIN) or were not asked
    for; ``present`` None and ``nodes`` empty where pages were not read at all.
    ``locked`` is the VmFlags ``lo`` as the kernel sets it, never on hugetlb mappings (whose
    pages reclaim cannot take anyway: the verdict counts them as resident).
    """

    start: int
    end: int
    path: str
    backing: Backing
    page_size: int          # the kernel's page size for the mapping (the hugepage size for hugetlb)
    shared: bool
    writable: bool
    locked: bool            # VmFlags lo
    pinned: bool            # an io_uring fixed buffer covers it (whole pages)
    dontfork: bool          # VmFlags dc (MADV_DONTFORK)
    wipeonfork: bool        # VmFlags wf (MADV_WIPEONFORK)
    mergeable: bool         # VmFlags mg (MADV_MERGEABLE: KSM may merge its pages)
    thp_eligible: bool | None   # smaps THPeligible (None: the kernel does not say)
    cow_risk: bool          # private, writable, shared with fork children
    verdict: Verdict
    present: int | None = None          # bytes present (None: pages not read)
    runs: np.ndarray | None = None      # RUN_DTYPE
    run_nodes: np.ndarray | None = None  # int32, one per run
    nodes: dict[int, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def verdict_text(self) -> str:
        """The verdict for people, with why a stable region is stable."""
        if self.verdict is Verdict.STABLE:
            return "stable (pinned)" if self.pinned else "stable (special mapping)"
        return self.verdict.text

    @property
    def flags(self) -> tuple[str, ...]:
        """The properties that hold, as words: locked, pinned, dontfork, wipeonfork,
        mergeable, thp-eligible, shared."""
        return tuple(name for name, on in (
            ("locked", self.locked), ("pinned", self.pinned), ("dontfork", self.dontfork),
            ("wipeonfork", self.wipeonfork), ("mergeable", self.mergeable),
            ("thp-eligible", bool(self.thp_eligible)), ("shared", self.shared)) if on)

    def to_dict(self) -> dict[str, Any]:
        runs = None if self.runs is None or self.run_nodes is None else [
            {"vaddr": v, "paddr": p, "nbytes": n, "node": node} for (v, p, n), node in
            zip(self.runs.tolist(), self.run_nodes.tolist())]
        return {"start": self.start, "end": self.end, "size": self.size, "path": self.path,
                "backing": self.backing.value, "page_size": self.page_size,
                "shared": self.shared, "writable": self.writable, "locked": self.locked,
                "pinned": self.pinned, "dontfork": self.dontfork,
                "wipeonfork": self.wipeonfork, "mergeable": self.mergeable,
                "thp_eligible": self.thp_eligible, "cow_risk": self.cow_risk,
                "verdict": self.verdict.value, "present": self.present,
                "nodes": {str(k): v for k, v in sorted(self.nodes.items())}, "runs": runs}


@dataclass(frozen=True, eq=False)
class DmaAudit:
    """The audit of one process: its regions and its pin and lock totals.

    ``vm_pin`` and ``vm_lck`` are the kernel's totals (/proc/PID/status); ``uring_pinned`` is
    what the process's io_uring fixed buffers account for (whole huge pages, once per ring,
    as io_uring counts them), and ``unattributed`` the rest of ``vm_pin``: pins taken by other
    means (RDMA memory registrations, VFIO DMA mappings), which /proc does not place.
    ``not_checked`` names readings that could not be made, with the reason.
    """

    pid: int
    comm: str
    regions: tuple[Region, ...]
    vm_pin: int
    vm_lck: int
    uring_pinned: int
    uring_buffers: tuple[UringBuffer, ...]
    not_checked: tuple[tuple[str, str], ...] = ()

    @property
    def unattributed(self) -> int:
        return max(0, self.vm_pin - self.uring_pinned)

    @property
    def pinned_bytes(self) -> int:
        return sum(r.size for r in self.regions if r.pinned)

    @property
    def locked_unpinned_bytes(self) -> int:
        """Bytes held resident but not pinned (mlocked or hugetlb: the verdicts "locked but
        movable" and "copy-on-write risk"): what offline, compaction and migration can move."""
        return sum(r.size for r in self.regions
                   if r.verdict in (Verdict.LOCKED_MOVABLE, Verdict.COW_RISK))

    def by_verdict(self) -> dict[Verdict, int]:
        """Bytes per verdict."""
        out = dict.fromkeys(Verdict, 0)
        for r in self.regions:
            out[r.verdict] += r.size
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "comm": self.comm, "vm_pin": self.vm_pin,
                "vm_lck": self.vm_lck, "uring_pinned": self.uring_pinned,
                "unattributed": self.unattributed,
                "uring_buffers": [b._asdict() for b in self.uring_buffers],
                "verdicts": {v.value: n for v, n in self.by_verdict().items()},
                "not_checked": dict(self.not_checked),
                "regions": [r.to_dict() for r in self.regions]}


_PRESENT = int(PM.PRESENT)
_NODE_SHIFT = 53   # above any physical address (x86 and arm64 stop at 52 bits)
_ANONYMOUS_KINDS = {VmaKind.ANONYMOUS, VmaKind.HEAP, VmaKind.STACK, VmaKind.THREAD_STACK,
                    VmaKind.ANON_NAMED}
_SPECIAL_KINDS = {VmaKind.VDSO, VmaKind.VVAR, VmaKind.VSYSCALL}


def _shmem_devices(pid: int | None, proc_root: str) -> set[int]:
    """Devices whose files are shared memory: the kernel's internal shm mount (memfd,
    shared anonymous memory, SysV segments; learnt from a memfd of our own) and the tmpfs
    mounts ``pid`` sees."""
    from ..memfd import MemFd
    from ..proc import mounts

    devices = set()
    try:
        with MemFd("physmem-shmem-probe", sealing=False) as probe:
            devices.add(os.fstat(probe.fileno()).st_dev)
    except (PhysmemError, OSError):
        pass
    try:
        table = mounts(proc_root, pid)
    except (PhysmemError, OSError):
        return devices
    root = f"{proc_root}/{'self' if pid is None else pid}/root"
    for m in table:
        if m.fstype == "tmpfs":
            try:
                devices.add(proc_stat(root + m.path, "cannot stat a tmpfs mount").st_dev)
            except OSError:
                continue   # a mount point the process's root does not reach
    return devices


def _backing(s: Smaps, shmem: set[int]) -> Backing:
    flags = s.vm_flags
    if "ht" in flags:
        return Backing.HUGETLB
    if "pf" in flags or "io" in flags or s.kind in _SPECIAL_KINDS:
        return Backing.SPECIAL
    if s.kind is VmaKind.ANON_SHMEM or (
            s.inode and os.makedev(s.device.major, s.device.minor) in shmem):
        return Backing.SHMEM
    if s.kind in _ANONYMOUS_KINDS:
        return Backing.THP if s.get("AnonHugePages", 0) else Backing.ANONYMOUS
    return Backing.FILE


def _verdict(backing: Backing, pinned: bool, locked: bool, cow_risk: bool) -> Verdict:
    if pinned or backing is Backing.SPECIAL:
        return Verdict.STABLE
    # Reclaim never takes hugetlb pages (and the kernel sets no VM_LOCKED on them: mlock of
    # a hugetlb mapping changes nothing), so they are as resident as locked memory.
    if not locked and backing is not Backing.HUGETLB:
        return Verdict.UNLOCKED
    return Verdict.COW_RISK if cow_risk else Verdict.LOCKED_MOVABLE


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _rounded(lo: int, hi: int, unit: int) -> tuple[int, int]:
    return lo - lo % unit, hi + -hi % unit


def _split(start: int, end: int, pins: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """[start, end) cut where the (merged, sorted) pinned spans begin and end."""
    out = []
    at = start
    for lo, hi in pins:
        lo, hi = max(lo, start), min(hi, end)
        if lo >= hi:
            continue
        if at < lo:
            out.append((at, lo, False))
        out.append((lo, hi, True))
        at = hi
    if at < end:
        out.append((at, end, False))
    return out


def _pieces(table: Sequence[Smaps], ranges: list[tuple[int, int]] | None,
            pid: int | None) -> list[tuple[Smaps, int, int]]:
    """(mapping, start, end) of what to audit: every mapping whole, or the parts of the
    mappings each range covers (rounded out to whole pages of the mapping)."""
    if ranges is None:
        return [(s, s.start, s.end) for s in table]
    starts = np.array([s.start for s in table], dtype=np.uint64)
    out = []
    for address, length in ranges:
        at, end = address, address + length
        i = int(np.searchsorted(starts, at, side="right")) - 1
        while at < end:
            if i < 0 or i >= len(table) or not table[i].start <= at < table[i].end:
                who = "this process" if pid is None else f"process {pid}"
                raise InvalidArgument(f"{who} has no mapping at {at:#x} (in the range "
                                      f"{address:#x}+{length:#x})", address=at)
            s = table[i]
            unit = s.get("KernelPageSize", 0) or page_size()
            lo, hi = _rounded(at, min(end, s.end), unit)
            out.append((s, lo, hi))
            at = hi
            i += 1
    return out


class _Pages:
    """Where each page of a region is: runs and nodes, read once per region."""

    def __init__(self, pm: PageMap | None, pid: int | None) -> None:
        self.pm = pm
        self.pid = pid
        self.hidden: str | None = None   # why frames cannot be read

    def read(self, start: int, end: int, unit: int) -> tuple[int, np.ndarray | None,
                                                            np.ndarray | None, dict[int, int]]:
        from ..numa import node_of

        assert self.pm is not None
        present = self.pm.present_ranges(start, end - start)
        parts, part_nodes = [], []
        nodes: dict[int, int] = {}
        total = 0
        for lo, hi in present.tolist():
            lo, hi = _rounded(lo, hi, unit)
            pages = np.arange(lo, hi, unit, dtype=np.uint64)
            where = np.asarray(node_of(pages, pid=self.pid or 0), dtype=np.int64)
            on = where >= 0   # a page gone since the scan has -ENOENT/-EFAULT, not a node
            for node, count in zip(*np.unique(where[on], return_counts=True)):
                nodes[int(node)] = nodes.get(int(node), 0) + int(count) * unit
            total += int(on.sum()) * unit
            if self.hidden is not None:
                continue
            try:
                frames = self.pm.translate(pages, strict=False)
            except PfnUnavailable as exc:
                self.hidden = str(exc)
                continue
            paddr = frames.filled(0)
            ok = (paddr != 0) & on
            # The node rides above the frame, so a run ends where the node changes.
            key = np.where(ok, paddr | (where.astype(np.uint64) << np.uint64(_NODE_SHIFT))
                           | np.uint64(_PRESENT), np.uint64(0))
            first, count = find_runs(key, step=unit, require=_PRESENT)
            parts.append(run_table(pages[first], paddr[first],
                                   count.astype(np.uint64) * np.uint64(unit)))
            part_nodes.append(where[first].astype(np.int32))
        if self.hidden is not None:
            return total, None, None, nodes
        runs = np.concatenate(parts) if parts else np.empty(0, dtype=RUN_DTYPE)
        run_nodes = np.concatenate(part_nodes) if part_nodes else np.empty(0, dtype=np.int32)
        return total, runs, run_nodes, nodes


def _uring_accounted(buffers: Sequence[UringBuffer], unit_at: Callable[[int], int]) -> int:
    """Bytes io_uring counts in VmPin for ``buffers``: per ring, the union of the pages they
    cover, a huge page counted whole."""
    total = 0
    for fd in sorted({b.fd for b in buffers}):
        spans = [_rounded(b.address, b.address + b.size, unit_at(b.address))
                 for b in buffers if b.fd == fd and b.size]
        total += sum(hi - lo for lo, hi in _merge(spans))
    return total


def audit(pid: int | None = None, ranges: Iterable[tuple[int, int]] | None = None, *,
          pages: bool = True, proc_root: str = "/proc") -> DmaAudit:
    """Audit process ``pid`` (None: this one): every mapping, or the parts of the mappings
    that ``ranges`` (``(address, length)`` pairs, page-aligned, mapped) cover. With
    ``pages`` (the default) the present pages are located: physical runs (CAP_SYS_ADMIN)
    and NUMA nodes; without, only the kernel's text files are read (cheap)."""
    from ..proc import smaps, status, uring_buffers, uring_fds

    if pid is not None:
        pid = as_pid(pid)
        if pid == os.getpid():
            pid = None
    pages = as_bool(pages, "pages")
    wanted = None if ranges is None else [check_range(a, n) for a, n in ranges]
    table = list(smaps(pid, proc_root))
    info = status(pid, proc_root)
    buffers: list[UringBuffer] = []
    not_checked: list[tuple[str, str]] = []
    try:
        for fd in uring_fds(pid, proc_root):
            buffers += uring_buffers(fd, pid, proc_root)
    except PermissionError as exc:
        not_checked.append(("io_uring fixed buffers", str(exc)))
    shmem = _shmem_devices(pid, proc_root)
    starts = np.array([s.start for s in table], dtype=np.uint64)

    def unit_at(address: int) -> int:
        i = int(np.searchsorted(starts, address, side="right")) - 1
        if 0 <= i < len(table) and address < table[i].end:
            return table[i].get("KernelPageSize", 0) or page_size()
        return page_size()

    pm = PageMap(pid, proc_root=proc_root) if pages else None
    where = _Pages(pm, pid)
    regions = []
    try:
        for s, lo, hi in _pieces(table, wanted, pid):
            unit = s.get("KernelPageSize", 0) or page_size()
            backing = _backing(s, shmem)
            flags = s.vm_flags
            writable = bool(s.prot & Prot.WRITE)
            dontfork, wipeonfork = "dc" in flags, "wf" in flags
            cow = (not s.shared and writable and not dontfork and not wipeonfork
                   and backing is not Backing.SPECIAL)
            pins = _merge(_rounded(max(b.address, lo), min(b.address + b.size, hi), unit)
                          for b in buffers if b.address < hi and b.address + b.size > lo)
            for a, b, pinned in _split(lo, hi, pins):
                located: dict[str, Any] = {}
                if pm is not None:
                    present, runs, run_nodes, nodes = where.read(a, b, unit)
                    located = {"present": present, "runs": runs, "run_nodes": run_nodes,
                               "nodes": nodes}
                regions.append(Region(
                    a, b, s.path, backing, unit, s.shared, writable, "lo" in flags, pinned,
                    dontfork, wipeonfork, "mg" in flags, s.thp_eligible, cow,
                    _verdict(backing, pinned, "lo" in flags, cow), **located))
    finally:
        if pm is not None:
            pm.close()
    if where.hidden is not None:
        not_checked.append(("physical runs", where.hidden))
    return DmaAudit(os.getpid() if pid is None else pid, str(info.get("Name", "")),
                    tuple(regions), int(info.get("VmPin", 0)), int(info.get("VmLck", 0)),
                    _uring_accounted(buffers, unit_at), tuple(buffers), tuple(not_checked))
