"""Growing a pool for one allocation, with nothing left behind whoever dies when.

The pages an allocation needs are *reserved* into its hugetlb memfd: a shared mapping of a
file range makes the kernel set pages aside for it (allocating them if the pool has too
few), and the reservation then belongs to the file, whatever happens to the mapping. Within
one hold of the system-wide pool lock (_ledger.py):

- sizes the buddy allocator serves (2 MiB): the overcommit ceiling is raised by what is
  missing, the reservation makes the kernel allocate the pages as *surplus* pages, and the
  ceiling goes back at once;
- gigantic sizes (1 GiB; the kernel cannot overcommit them), and pages made by demoting a
  gigantic page: the pool grows, the reservation takes the pages, and the pool shrinks
  back at once, which leaves the reserved pages counted as surplus pages.

From then on nothing is left to undo: the kernel frees surplus pages when the file lets go of
them (close, exit, a SIGKILL of the process or of its whole container). Only the instant
between a pool write and its giveback is claimed in the ledger, which the guardian, or the
next process to take the pool lock, settles if the process dies there.
"""
from __future__ import annotations

import contextlib
import errno as _errno

from .. import _sysfs
from .._raw import mapping as _map
from .._raw import poolguard as _claims
from ..addressing import page_size as _base_page
from ..errors import error_from_errno
from ._ledger import Claim, Ledger, pool_lock
from .._hugepools import supported_sizes
from .reservation import (
    _check_memory,
    _count,
    _grow_total,
    demote_size,
    _persistent_pages,
    _pool_dir,
)

__all__ = ["Growth"]

# False only in tests: pool growth is then not given back after the reservation but left
# with the buffer, which gives it back on close(), as it would have to on a kernel that kept
# reserved pages persistent; so that path runs, for real, against this kernel.
_settle_now = True


def overcommittable(size: int, proc_root: str = "/proc") -> bool:
    """Whether the kernel can allocate ``size`` pages as surplus pages: sizes the buddy
    allocator serves (up to its largest order, as many columns as /proc/buddyinfo has)."""
    from ..proc import buddyinfo

    rows = buddyinfo(proc_root=proc_root)
    orders = max((len(r.free) for r in rows), default=0)
    return orders > 0 and size <= _base_page() << (orders - 1)


def _reserve_range(fd: int, start: int, count: int, ps: int) -> int:
    """Reserve file pages [start, start + count) of hugetlb file ``fd``: how many (from
    ``start``) the kernel set aside. A reservation is all or nothing, so where the whole
    range is refused the pages are asked for one by one."""
    def one(first: int, n: int) -> bool:
        addr = _map.mmap(0, n * ps, _map.PROT_READ, _map.MAP_SHARED, fd, first * ps)
        if addr >= 0:
            _map.munmap(addr, n * ps)
            return True
        if addr != -_errno.ENOMEM:
            raise error_from_errno(-addr, "cannot reserve hugetlb pages for a buffer")
        return False

    if count <= 0:
        return 0
    if one(start, count):
        return count
    got = 0
    while got < count and one(start + got, 1):
        got += 1
    return got


def _fault_in(fd: int, start: int, count: int, ps: int) -> None:
    """Allocate reserved file pages now, before a grown pool shrinks back. A reservation is a
    count, not a set of pages, and shrinking frees the newest free pages first: the ones the
    growth just made (adjacent, where a gigantic page was demoted), which would leave the
    reservation to older, scattered pages of the pool."""
    if count > 0:
        ret = _map.fallocate(fd, 0, start * ps, count * ps)
        if ret < 0:
            raise error_from_errno(-ret, "cannot allocate reserved hugetlb pages")


class Growth:
    """Pool growth for one allocation of ``size`` pages (on ``node``), given back as it goes.

    ``grown`` counts the pages obtained beyond what the pool held, at most ``max_pages``;
    ``leftover`` holds claims that could not be given back at once (the buffer gives them
    back on close)."""

    def __init__(self, size: int, node: int | None, *, force: bool = False,
                 max_pages: int = 1 << 62, sys_root: str = "/sys",
                 proc_root: str = "/proc") -> None:
        self.size = size
        self.node = node
        self.force = force
        self.sys_root = sys_root
        self.proc_root = proc_root
        self.directory = _pool_dir(size, node, sys_root=sys_root)
        self.global_dir = _pool_dir(size, None, sys_root=sys_root)
        self.surplus = overcommittable(size, proc_root)
        self.grown = 0
        self.max_pages = max_pages
        self.leftover: list[Claim] = []

    def check_memory(self, pages: int) -> None:
        """Refuse (HugePagesUnavailable, with the numbers) growth by ``pages`` into the memory
        margin, unless ``force``."""
        if not self.force:
            _check_memory(pages, self.size, self.node, self.proc_root)

    def limit(self, pages: int) -> None:
        """Grow by at most ``pages`` pages in all (the free memory a forecast counts)."""
        self.max_pages = min(self.max_pages, max(0, pages))

    def locked(self) -> contextlib.AbstractContextManager[Ledger]:
        """The pool lock, for work that must not interleave with another allocator's growth
        (faulting the reserved pages in, which takes them off the shared free list)."""
        return pool_lock()

    def available(self) -> int:
        """Pages a reservation gets without growing anything: free, unreserved pages, and
        what the overcommit ceiling allows beyond the surplus pages that exist."""
        free = _count(self.directory, "free_hugepages")
        reserved = _sysfs.read_int(f"{self.global_dir}/resv_hugepages") or 0
        room = 0
        if self.surplus:
            room = max(0, _count(self.global_dir, "nr_overcommit_hugepages")
                       - _count(self.global_dir, "surplus_hugepages"))
        return max(0, free - reserved) + room

    def given_back(self, pages: int) -> None:
        """``pages`` pages the allocation held went back (a punched file range): the pool
        shrank by them, so far as they were growth."""
        self.grown = max(0, self.grown - pages)

    def reserve_into(self, fd: int, start: int, count: int) -> int:
        """Reserve ``count`` pages into file pages [start, start + count) of hugetlb memfd
        ``fd``, growing the pool for what is missing and giving the growth back at once;
        returns how many pages were reserved (a prefix of the range)."""
        with pool_lock() as ledger:
            need = count - self.available()
            room = self.max_pages - self.grown
            if need > room:  # the cap: ask only for what may still be grown
                count, need = count - (need - room), room
                if count <= 0:
                    return 0
            claim = None
            if need > 0:
                self.check_memory(need)
                claim = self._raise_ceiling(ledger, need) if self.surplus else \
                    self._grow_pool(ledger, need)
            try:
                got = _reserve_range(fd, start, count, self.size)
                if claim is not None and not self.surplus:
                    _fault_in(fd, start, got, self.size)
            finally:
                if claim is not None:
                    self._give_back(claim)
            if need > 0:
                self.grown += max(0, min(got, need))
            return got

    def demote_into(self, fd: int, start: int, count: int) -> int:
        """As :meth:`reserve_into`, the pages coming from gigantic pages demoted into
        ``count`` physically adjacent ones (Linux 5.16+): the gigantic pool grows, its new
        pages are demoted, the reservation takes what it needs, and both pools shrink back.
        0 where the kernel cannot demote into this size."""
        ps, node = self.size, self.node
        bigger = [s for s in supported_sizes(self.sys_root)
                  if s > ps and demote_size(s, node, sys_root=self.sys_root) == ps]
        if not bigger:
            return 0
        big = bigger[0]
        big_dir = _pool_dir(big, node, sys_root=self.sys_root)
        count = min(count, self.max_pages - self.grown)
        if count <= 0:
            return 0
        # The gigantic page is held for a moment only (what the reservation does not take
        # goes back at once), but the cap bounds the pool at every moment: a caller who capped
        # the growth at 6 pages must not see it 512 pages larger, however briefly.
        wanted = -(-count * ps // big)
        if wanted * big // ps > self.max_pages - self.grown:
            return 0
        with pool_lock() as ledger:
            if not self.force:
                _check_memory(wanted * big // ps, ps, node, self.proc_root)
            big_claim = ledger.claim(f"{big_dir}/nr_hugepages", _claims.TOTAL)
            small_claim = ledger.claim(f"{self.directory}/nr_hugepages", _claims.TOTAL)
            try:
                _grow_total(big_dir, wanted, big_claim)
                free_big = _count(big_dir, "free_hugepages") - (
                    _sysfs.read_int(f"{big_dir}/resv_hugepages") or 0)
                if free_big <= 0:
                    return 0
                big_before = _persistent_pages(big_dir)
                small_before = _persistent_pages(self.directory)
                big_claim.pending(big_before)
                small_claim.pending(small_before)
                try:
                    _sysfs.write(f"{big_dir}/demote", min(wanted, free_big),
                                 "cannot demote hugepages")
                except OSError:
                    return 0
                finally:
                    big_claim.held(_persistent_pages(big_dir) - big_before)
                    small_claim.held(_persistent_pages(self.directory) - small_before)
                got = _reserve_range(fd, start, count, ps)
                _fault_in(fd, start, got, ps)
                self.grown += got
                return got
            finally:
                self._give_back(small_claim)
                self._give_back(big_claim)

    def close(self) -> None:
        """Give back whatever is left over (the buffer's close, or a failed allocation)."""
        with pool_lock():
            while self.leftover:
                self.leftover.pop().undo()

    def _raise_ceiling(self, ledger: Ledger, need: int) -> Claim:
        path = f"{self.global_dir}/nr_overcommit_hugepages"
        claim = ledger.claim(path, _claims.CEILING)
        ceiling = _count(self.global_dir, "nr_overcommit_hugepages")
        surplus = _count(self.global_dir, "surplus_hugepages")
        # Room for `need` new surplus pages beyond the ones that exist (others' buffers).
        target = max(ceiling, surplus) + need
        claim.pending(ceiling)
        try:
            _sysfs.write(path, target, "cannot raise the hugepage overcommit ceiling")
        finally:
            claim.held(_count(self.global_dir, "nr_overcommit_hugepages") - ceiling)
        return claim

    def _grow_pool(self, ledger: Ledger, need: int) -> Claim:
        claim = ledger.claim(f"{self.directory}/nr_hugepages", _claims.TOTAL)
        _grow_total(self.directory, need, claim)
        return claim

    def _give_back(self, claim: Claim) -> None:
        if claim.delta == 0:
            claim.close()
            return
        if not _settle_now:
            self.leftover.append(claim)
            return
        if claim.kind != _claims.TOTAL:
            claim.undo()
            return
        directory = claim.path.rsplit("/", 1)[0]
        expected = max(0, _persistent_pages(directory) - claim.delta)
        claim.undo()
        kept = _persistent_pages(directory) - expected
        if kept > 0:
            # The kernel kept reserved pages persistent instead of counting them surplus:
            # the buffer gives them back when it closes (or its guardian, if it dies).
            rest = claim.ledger.claim(claim.path, _claims.TOTAL)
            rest.held(kept)
            self.leftover.append(rest)
