"""A move watchdog: which watched pages changed frame or vanished since the last look.

A device holds physical addresses; the kernel may move the pages behind them (memory
offline, migration, compaction, copy-on-write after fork) or free them (munmap, exit) unless
they are pinned. :func:`watch` keeps the frame of every watched page and each
:meth:`Watch.check` re-reads only those pages' pagemap entries: one entry per huge page for
hugetlb memory (its page-table entry maps the whole page), one per 4 KiB page otherwise,
read for each process in one batched call (one pread per run of adjacent entries, issued
back to back by the C core without the GIL). Frames are physical addresses, so reading
them needs CAP_SYS_ADMIN.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Union

import numpy as np

from .._records import hex_fields
from .._args import as_interval, as_pid, as_timeout
from ..addressing import check_range
from ..errors import InvalidArgument, ProcessGone
from ..pagemap import PageMap

if TYPE_CHECKING:
    from .buffer import DmaBuffer
    from .pool import DmaPool

__all__ = ["Move", "Watch", "watch", "Target"]

# What can be watched: a buffer or pool of this process, or an (address, length) range.
Target = Union["DmaBuffer", "DmaPool", "tuple[int, int]"]
# Most entries one Watch keeps (24 bytes each): 64 GiB of 4 KiB pages, far more of hugepages.
MAX_PAGES = 1 << 24


@hex_fields("address", "old", "new")
@dataclass(frozen=True)
class Move:
    """Watched memory that changed frame: ``size`` bytes at virtual ``address`` of process
    ``pid`` were at physical ``old`` and are now at ``new``. Pages that moved together (old
    and new frames both adjacent) are one Move. ``new`` is None where the pages vanished
    (unmapped, swapped out, the process exited); ``old`` is None where pages appeared where
    none were (first touch, a refault). ``time`` is when the check saw it (``time.time()``).
    """

    pid: int
    address: int
    size: int
    old: int | None
    new: int | None
    time: float

    @property
    def kind(self) -> str:
        """``"moved"``, ``"vanished"`` or ``"appeared"``."""
        if self.new is None:
            return "vanished"
        return "appeared" if self.old is None else "moved"

    def as_json(self) -> dict[str, object]:
        return {"time": self.time, "pid": self.pid, "kind": self.kind, "address": self.address,
                "size": self.size, "old": self.old, "new": self.new}

    def __str__(self) -> str:
        old = "none" if self.old is None else f"{self.old:#x}"
        new = "none" if self.new is None else f"{self.new:#x}"
        return (f"pid {self.pid} {self.address:#x} +{self.size:#x} {self.kind}: "
                f"{old} -> {new}")


class _Process:
    """The watched pages of one process: virtual address, size and last-seen frame of each
    (0: none), kept sorted by address."""

    def __init__(self, pid: int | None, proc_root: str) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.pagemap = PageMap(pid, proc_root=proc_root)
        self.vaddr = np.empty(0, dtype=np.uint64)
        self.unit = np.empty(0, dtype=np.uint64)
        self.frame = np.empty(0, dtype=np.uint64)

    def add(self, vaddr: np.ndarray, unit: np.ndarray, frame: np.ndarray | None) -> None:
        if frame is None:
            frame = self.read(vaddr)
        # A page watched twice (a buffer and a range over it) is watched once: the first.
        vaddr = np.concatenate((self.vaddr, vaddr))
        first = np.unique(vaddr, return_index=True)[1]
        if len(first) > MAX_PAGES:
            raise InvalidArgument(f"a watch holds at most {MAX_PAGES} pages per process; "
                                  f"this would make {len(first)}")
        self.vaddr = vaddr[first]
        self.unit = np.concatenate((self.unit, unit))[first]
        self.frame = np.concatenate((self.frame, frame))[first]

    def read(self, vaddr: np.ndarray) -> np.ndarray:
        """The frame of each page now (0: not present)."""
        if not len(vaddr):
            return np.empty(0, dtype=np.uint64)
        frames: np.ndarray = self.pagemap.translate(vaddr, strict=False).filled(0)
        return frames

    def changes(self, when: float) -> list[Move]:
        """Re-read every page; the differences since the last read, as Moves."""
        now = self.read(self.vaddr)
        changed = np.flatnonzero(now != self.frame)
        if not len(changed):
            return []
        moves = _coalesce(self.pid, self.vaddr[changed], self.unit[changed],
                          self.frame[changed], now[changed], when)
        self.frame = now
        return moves

    def vanish(self, when: float) -> list[Move]:
        """Every present page, gone (the process has exited)."""
        gone = np.flatnonzero(self.frame)
        return _coalesce(self.pid, self.vaddr[gone], self.unit[gone], self.frame[gone],
                         np.zeros(len(gone), dtype=np.uint64), when)


def _follows(frames: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Where frame i + 1 continues frame i: adjacent, or both absent."""
    a, b = frames[:-1], frames[1:]
    joined: np.ndarray = np.where(a == 0, b == 0, (b != 0) & (b - a == step))
    return joined


def _coalesce(pid: int, vaddr: np.ndarray, unit: np.ndarray, old: np.ndarray,
              new: np.ndarray, when: float) -> list[Move]:
    """Changed pages (in address order) as Moves, joining neighbours whose old and new
    frames both continue one another."""
    if not len(vaddr):
        return []
    step = unit[:-1]
    joins = ((vaddr[1:] - vaddr[:-1] == step) & (unit[1:] == step)
             & _follows(old, step) & _follows(new, step))
    starts = np.flatnonzero(np.concatenate(([True], ~joins)))
    sizes = np.add.reduceat(unit, starts)
    return [Move(pid, int(vaddr[i]), int(n), int(old[i]) or None, int(new[i]) or None, when)
            for i, n in zip(starts.tolist(), sizes.tolist())]


def _pages(address: int, size: int, unit: int) -> np.ndarray:
    return np.arange(address, address + size, unit, dtype=np.uint64)


class Watch:
    """Watched pages of DMA buffers and address ranges, in this process or others.

    Made by :func:`watch`. :meth:`check` reports what changed since the previous check (for
    a buffer, since its layout was last verified; for a range, since it was added) and
    :meth:`follow` does so every ``interval`` seconds. A watched process that exits has every
    present page reported vanished once, then leaves the watch (its pid is in
    ``exited``). Use as a context manager, or :meth:`close`. Methods may be called from any
    thread, one at a time.
    """

    def __init__(self, *, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._processes: dict[int | None, _Process] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.exited: frozenset[int] = frozenset()

    def add(self, *targets: Target, pid: int | None = None) -> None:
        """Watch more: DmaBuffers and DmaPools (of this process), and ``(address, length)``
        ranges of process ``pid`` (default this one). A range must be page-aligned and
        mapped; within hugetlb mappings its huge pages are watched whole."""
        from .buffer import DmaBuffer
        from .pool import DmaPool

        if pid is not None:
            pid = as_pid(pid)
            if pid == os.getpid():
                pid = None
        with self._lock:
            self._require_open()
            for target in targets:
                if isinstance(target, DmaPool):
                    target = target.buffer
                if isinstance(target, DmaBuffer):
                    self._add_buffer(target)
                elif isinstance(target, tuple) and len(target) == 2:
                    address, length = check_range(*target)
                    self._add_range(pid, address, length)
                else:
                    raise InvalidArgument(f"cannot watch {target!r:.80}: give a DmaBuffer, a "
                                          "DmaPool or an (address, length) tuple")

    def _process(self, pid: int | None) -> _Process:
        proc = self._processes.get(pid)
        if proc is None:
            proc = self._processes[pid] = _Process(pid, self.proc_root)
        return proc

    def _add_buffer(self, buf: DmaBuffer) -> None:
        if buf.closed:
            raise InvalidArgument(f"the DmaBuffer at {buf.address:#x} is closed")
        ps = buf.page_size
        # The layout the buffer was verified with: what a device was given. A page that
        # moved before the watch began shows at the first check.
        vaddr = np.concatenate([_pages(int(v), int(n), ps) for v, _, n in
                                buf.segments.tolist()])
        frame = np.concatenate([_pages(int(p), int(n), ps) for _, p, n in
                                buf.segments.tolist()])
        self._process(None).add(vaddr, np.full(len(vaddr), ps, dtype=np.uint64), frame)

    def _add_range(self, pid: int | None, address: int, length: int) -> None:
        from ..proc import smaps

        if not length:
            return
        proc = self._process(pid)
        table = smaps(pid, proc_root=self.proc_root)
        starts, ends = table.starts, table.ends
        kernel_page = table.column("KernelPageSize")
        end = address + length
        at = address
        vaddrs, units = [], []
        i = int(np.searchsorted(ends, address, side="right"))
        while at < end:
            if i >= len(starts) or starts[i] > at:
                who = "this process" if pid is None else f"process {pid}"
                raise InvalidArgument(f"{who} has no mapping at {at:#x} (the range "
                                      f"{address:#x}+{length:#x} must be mapped to be watched)",
                                      address=at)
            unit = int(kernel_page[i]) or proc.pagemap.page_size
            lo = at - at % unit
            hi = min(end, int(ends[i]))
            hi += -hi % unit
            vaddrs.append(_pages(lo, hi - lo, unit))
            units.append(np.full(len(vaddrs[-1]), unit, dtype=np.uint64))
            at = hi
            i += 1
        proc.add(np.concatenate(vaddrs), np.concatenate(units), None)

    @property
    def pages(self) -> int:
        """Pages watched (a huge page counts once)."""
        return sum(len(p.vaddr) for p in self._processes.values())

    @property
    def bytes(self) -> int:
        """Bytes watched."""
        return sum(int(p.unit.sum()) for p in self._processes.values())

    @property
    def pids(self) -> frozenset[int]:
        """The processes still watched."""
        return frozenset(p.pid for p in self._processes.values())

    def check(self) -> list[Move]:
        """Read every watched page's frame once; the pages that moved, vanished or appeared
        since the previous check (or since they were added), in process and address order."""
        with self._lock:
            self._require_open()
            when = time.time()
            moves: list[Move] = []
            for key, proc in list(self._processes.items()):
                try:
                    moves += proc.changes(when)
                except ProcessGone:
                    moves += proc.vanish(when)
                    self.exited |= {proc.pid}
                    del self._processes[key]
                    proc.pagemap.close()
            return moves

    def follow(self, interval: float = 0.1, *, timeout: float | None = None) -> Iterator[Move]:
        """Check now and every ``interval`` seconds, yielding moves as they are seen; ends
        after ``timeout`` seconds (None: never), or once every watched process has exited."""
        step = as_interval(interval)
        limit = as_timeout(timeout)
        start = time.monotonic()
        due = start
        while True:
            yield from self.check()
            if not self._processes:
                return
            due += step
            now = time.monotonic()
            if limit is not None and due - start > limit:
                return
            if due > now:
                time.sleep(due - now)
            else:
                due = now   # a slow check: carry on from now rather than catch up in a burst

    def _require_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this Watch is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            for proc in self._processes.values():
                proc.pagemap.close()
            self._processes.clear()
            self._closed = True

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (
            f"{self.pages} pages of {len(self._processes)} process(es)")
        return f"<Watch {state}>"


def watch(*targets: Target, pid: int | None = None, proc_root: str = "/proc") -> Watch:
    """A :class:`Watch` over ``targets``: DmaBuffers and DmaPools of this process, and
    ``(address, length)`` ranges of process ``pid`` (default this one); ``Watch.add`` adds
    ranges of other processes. Needs CAP_SYS_ADMIN (frames are physical addresses)."""
    w = Watch(proc_root=proc_root)
    try:
        w.add(*targets, pid=pid)
    except BaseException:
        w.close()
        raise
    return w

