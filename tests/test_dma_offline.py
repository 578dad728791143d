"""Memory offline against DMA buffers: the kernel itself tries to move them.

Taking a memory block offline (``/sys/devices/system/memory/memoryN/state``) migrates every
page in it elsewhere, or fails: at once with EBUSY where the block holds pages the kernel
cannot move, and never (the kernel retries until the writer is interrupted) where a page is
pinned. So every write runs in a child process interrupted after a timeout, never in the
test process, and every block a test touched is put back online, in its zone, by a
finaliser.

Buffers are placed on purpose. A block is offlinable when each of its frames is free, on an
LRU list or hugetlb (a raw read of /proc/kpageflags); hugepage pool pages are taken one at a
time into a hugetlb memfd until one lies in such a block, and that page is handed back to
the pool just before a buffer is allocated: the pool hands out the page freed last, so the
buffer gets it. The frames are checked with plain preads of /proc/self/pagemap.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from physmem.dma import DmaBuffer, DmaPool, allocate_contiguous
from physmem.errors import PhysicalAddressChanged

from _memory_blocks import (  # noqa: F401 (blocks: a fixture)
    BLOCK,
    MOVE_WAIT,
    PINNED_WAIT,
    block_of,
    blocks,
    make_movable,
    offlinable,
    state,
    zone,
)
from conftest import PAGE, address_of, own_pfns, own_pfns_at, registered_buffers

pytestmark = [pytest.mark.root, pytest.mark.hugepages]

MB2 = 2 << 20
POOL = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
# Pool pages grown for the search (cheap: a page is zeroed only when taken). The pool hands
# out the page it took last first, and the deeper in the free lists, the older the free
# memory and the likelier its block holds nothing else: a large growth starts deep.
POOL_GROWTH = 1024
# Pool pages looked at, at most (each is zeroed as it is taken).
POOL_LOOK = 512

if not BLOCK:
    pytest.skip("no /sys/devices/system/memory: this kernel has no memory hotplug "
                "(CONFIG_MEMORY_HOTPLUG)", allow_module_level=True)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


class Placer:
    """Hands the allocator hugepage pool pages that lie where a test wants them."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("physmem-test-held", os.MFD_HUGETLB)
        self.taken = 0            # file pages taken from the pool so far

    def _take(self) -> int | None:
        """One more pool page into the file: its PFN, or None when the pool is empty."""
        i = self.taken
        try:
            os.posix_fallocate(self.fd, i * MB2, MB2)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                return None
            raise
        self.taken += 1
        view = mmap.mmap(self.fd, MB2, offset=i * MB2, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        try:
            return own_pfns_at([address_of(view)])[0]
        finally:
            view.close()

    def next_in(self, where: Callable[[int], bool]) -> int | None:
        """Make the pool's next page one in a block that ``where(block)`` accepts: its PFN,
        or None if none turned up among the pool pages looked at. Every page taken before
        it stays held until close()."""
        while self.taken < POOL_LOOK:
            pfn = self._take()
            if pfn is None:
                return None
            if not where(block_of(pfn)):
                continue
            # Back to the pool: hugetlb hands out the page freed last first.
            assert _libc.fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                   (self.taken - 1) * MB2, MB2) == 0, \
                os.strerror(ctypes.get_errno())
            return pfn
        return None

    def close(self) -> None:
        os.close(self.fd)


def release_free_pool_pages() -> None:
    """Give the pool's free pages back to the system: an offline would dissolve those in its
    block, and they would land in the free memory the offline migrates into."""
    nr, free = (int((POOL / f).read_text()) for f in ("nr_hugepages", "free_hugepages"))
    (POOL / "nr_hugepages").write_text(str(nr - free))


@pytest.fixture
def placed(pools_restored, blocks) -> Iterator[Callable[..., list[tuple[int, DmaBuffer | DmaPool]]]]:
    """``placed(count, allocate)``: up to ``count`` buffers or pools from ``allocate()``,
    each on a pool page of its own offlinable Normal block, with the block; skips the test
    if no pool page lies in one. The pool's free pages are given back before the test goes
    on (``pools_restored`` puts the pools back at the end, free pages included)."""
    # Fresh pool pages: free pages the pool already holds lie wherever earlier growth put
    # them, often beside kernel pages, and would be handed out first.
    release_free_pool_pages()
    nr = POOL / "nr_hugepages"
    nr.write_text(str(int(nr.read_text()) + POOL_GROWTH))
    made: list[DmaBuffer | DmaPool] = []

    def place(count: int, allocate: Callable[[], DmaBuffer | DmaPool]
              ) -> list[tuple[int, DmaBuffer | DmaPool]]:
        placer = Placer()
        out: list[tuple[int, DmaBuffer | DmaPool]] = []
        try:
            for _ in range(count):
                used = {n for n, _ in out}
                pfn = placer.next_in(lambda n: n not in used and offlinable(n)
                                     and zone(n) == "Normal")
                if pfn is None:
                    break
                thing = allocate()
                made.append(thing)
                got = own_pfns_at([thing.address])[0]
                assert got == pfn, f"the buffer got frame {got:#x}, not the page freed for it"
                out.append((block_of(pfn), thing))
        finally:
            placer.close()
        release_free_pool_pages()
        blocks.outcomes.append(f"{len(out)} placed after looking at {placer.taken} pool pages")
        if not out:
            pytest.skip(f"none of {placer.taken} hugepage pool pages lies in a Normal memory "
                        "block that can be offlined, on this machine now")
        return out

    try:
        yield place
    finally:
        for thing in made:
            if isinstance(thing, DmaPool):
                thing.close(force=True)   # its blocks were only ever touched by this test
            else:
                thing.close()


def moved_out(frames_before: list[int], frames_now: list[int], n: int) -> bool:
    """Every frame changed and none is in block ``n`` any more."""
    return all(a != b for a, b in zip(frames_before, frames_now)) and \
        all(block_of(p) != n for p in frames_now)


def test_pinned_buffer_stays_where_memory_offline_would_move_it(blocks, placed):
    """(a) The offline of a pinned buffer's block is refused and no frame changes; unpinned,
    the same block goes offline and verify() sees the move: the pin is what held it."""
    proved = 0
    for n, buf in placed(3, lambda: allocate_contiguous("2M", pin=True)):
        assert buf.pinned and (buf.address, buf.size) in registered_buffers()
        frames = own_pfns(buf.address, buf.size)
        t0 = time.monotonic()
        first = blocks.offline(n, PINNED_WAIT)
        held_for = time.monotonic() - t0
        assert first in ("EBUSY", "interrupted"), \
            f"memory{n} went offline ({first}) under a pinned buffer"
        assert state(n) == "online" and own_pfns(buf.address, buf.size) == frames
        assert buf.verify().pinned
        buf.unpin()
        assert (buf.address, buf.size) not in registered_buffers()
        t0 = time.monotonic()
        second = blocks.offline(n, MOVE_WAIT)
        took = time.monotonic() - t0
        if second == "done":
            assert state(n) == "offline"
            assert moved_out(frames, own_pfns(buf.address, buf.size), n)
            with pytest.raises(PhysicalAddressChanged, match="moved or vanished"):
                buf.verify()
            proved += 1
        blocks.online(n)
        blocks.outcomes.append(f"memory{n} pinned: {first} after {held_for:.2f} s, "
                               f"unpinned: {second} in {took:.2f} s")
    assert proved, f"no block went offline once unpinned: {blocks.outcomes}"


def test_dmapool_on_a_pinned_buffer_stays_where_memory_offline_would_move_it(blocks, placed):
    """(c) The same for a DmaPool's blocks: their physical addresses hold while pinned."""
    proved = 0
    for n, pool in placed(3, lambda: DmaPool("2M", pin=True)):
        assert pool.buffer.pinned
        cells = pool.alloc_many(64, 4096)
        addresses = cells.address.tolist()
        assert [p * PAGE for p in own_pfns_at(addresses)] == cells.phys.tolist()
        first = blocks.offline(n, PINNED_WAIT)
        assert first in ("EBUSY", "interrupted"), \
            f"memory{n} went offline ({first}) under a pinned DmaPool"
        assert [p * PAGE for p in own_pfns_at(addresses)] == cells.phys.tolist()
        pool.buffer.unpin()
        second = blocks.offline(n, MOVE_WAIT)
        if second == "done":
            now = [p * PAGE for p in own_pfns_at(addresses)]
            assert all(block_of(p // PAGE) != n for p in now) and now != cells.phys.tolist()
            with pytest.raises(PhysicalAddressChanged):
                pool.buffer.verify()
            proved += 1
        blocks.online(n)
        pool.free_many(cells)
        blocks.outcomes.append(f"memory{n} (DmaPool) pinned: {first}, unpinned: {second}")
    assert proved, f"no block went offline once unpinned: {blocks.outcomes}"


def test_unpinned_buffer_is_moved_and_a_pinned_one_is_kept_out_of_zone_movable(
        blocks, pools_restored):
    """(b) An unpinned buffer in ZONE_MOVABLE is moved by the offline of its block, and
    verify() raises. A pinned buffer whose page came from the same block was moved out of
    ZONE_MOVABLE before its layout was taken (pinning moves pages out of it), so the
    offline leaves it alone."""
    t = make_movable(blocks)
    # 64 new pool pages: from ZONE_MOVABLE first, which is this block (64 of them), and the
    # pool hands out the newest first.
    (POOL / "nr_hugepages").write_text(str(int((POOL / "nr_hugepages").read_text()) + 64))
    placer = Placer()
    made = []
    try:
        pfn = placer.next_in(lambda n: n == t)
        assert pfn is not None, f"no new pool page in the Movable memory{t}"
        loose = allocate_contiguous("2M", pin=False)
        made.append(loose)
        assert own_pfns_at([loose.address]) == [pfn] and not loose.pinned
        pfn = placer.next_in(lambda n: n == t)
        assert pfn is not None, f"no second pool page in the Movable memory{t}"
        pinned = allocate_contiguous("2M", pin=True)   # its candidate page: the one in t
        made.append(pinned)
    finally:
        placer.close()
    try:
        frames = own_pfns(pinned.address, pinned.size)
        home = block_of(frames[0])
        assert pinned.pinned and home != t and zone(home) != "Movable"
        assert [f * PAGE for f in frames[:: MB2 // PAGE]] == pinned.segments["paddr"].tolist()
        release_free_pool_pages()
        loose_frames = own_pfns(loose.address, loose.size)
        got = blocks.offline(t, MOVE_WAIT)
        assert got == "done", f"the Movable memory{t} did not go offline: {got}"
        assert moved_out(loose_frames, own_pfns(loose.address, loose.size), t)
        with pytest.raises(PhysicalAddressChanged, match="moved or vanished"):
            loose.verify()
        assert own_pfns(pinned.address, pinned.size) == frames and pinned.verify().pinned
        blocks.outcomes.append(f"memory{t} (Movable): the unpinned buffer moved; the pinned "
                               f"one, from a page of it, was placed in memory{home}")
    finally:
        for buf in made:
            buf.close()
