"""DmaPool against the real kernel: blocks checked with our own pagemap reads, a model of
the allocator for random alloc/free sequences, and threads hammering one pool."""
from __future__ import annotations

import ctypes
import random
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import physmem
from physmem.dma import DmaBlock, DmaPool
from physmem.errors import DmaPoolExhausted, InvalidArgument, OutOfMemory

MiB = 1 << 20
HUGE = 2 * MiB


def _mapped(address: int) -> bool:
    """Whether /proc/self/maps has a mapping holding ``address`` (the pool's hugetlb pages
    go back to the kernel exactly when it is gone; free_hugepages would race other users)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return True
    return False


def _rounded(nbytes: int, align: int) -> int:
    """The allocator's documented block size: a power of two >= nbytes, align and 64."""
    size = 64
    while size < max(nbytes, align):
        size *= 2
    return size


@pytest.fixture
def pool(hugepage_pool: Callable[..., Path]) -> Iterator[DmaPool]:
    # One page: free pages a busy machine leaves behind are often not adjacent, and the
    # allocator's behaviour does not depend on the page count.
    hugepage_pool(1)
    p = DmaPool(HUGE, page_size=HUGE)
    yield p
    p.close(force=True)  # a failed test may leave blocks out; the pages must still go back


def _bytes_at(address: int, n: int) -> ctypes.Array:
    return (ctypes.c_ubyte * n).from_address(address)


# -- placement ------------------------------------------------------------------------------
def test_phys_of_every_block_matches_pagemap(pool: DmaPool) -> None:
    blocks = [pool.alloc(n) for n in (64, 100, 4096, 5000, 65536, HUGE // 4, HUGE // 2)]
    with physmem.PageMap() as pm:
        for b in blocks:
            assert pm.translate(b.address) == b.phys
            assert pm.translate(b.address + b.size - 1) == b.phys + b.size - 1
    for b in blocks:
        pool.free(b)


def test_used_counts_rounded_blocks(pool: DmaPool) -> None:
    a = pool.alloc(100)
    b = pool.alloc(64, align=4096)
    assert pool.used == 128 + 4096
    assert pool.available == pool.size - 128 - 4096
    assert pool.outstanding == 2
    pool.free(a)
    pool.free(b)
    assert pool.used == 0 and pool.available == pool.size and pool.outstanding == 0


@given(st.lists(st.tuples(st.integers(1, 70000), st.integers(6, 16), st.integers(0, 3)),
                min_size=1, max_size=40))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_alignment_and_boundary(pool: DmaPool, requests: list[tuple[int, int, int]]) -> None:
    blocks = []
    try:
        for nbytes, align_shift, extra in requests:
            align = 1 << align_shift
            boundary = 1 << ((nbytes - 1).bit_length() + extra)  # the tightest is extra == 0
            try:
                b = pool.alloc(nbytes, align=align, boundary=boundary)
            except DmaPoolExhausted:
                continue
            blocks.append(b)
            assert b.size == nbytes
            assert b.address % align == 0 and b.phys % align == 0
            assert b.phys // boundary == (b.phys + nbytes - 1) // boundary
            assert b.address // boundary == (b.address + nbytes - 1) // boundary
    finally:
        for b in blocks:
            pool.free(b)
    assert pool.available == pool.size


def test_largest_block_respects_physical_boundary(pool: DmaPool) -> None:
    # max_block is capped by the physical start's alignment, so even the largest block obeys
    # a boundary equal to its size in physical terms, not only relative to the pool.
    b = pool.alloc(pool.max_block, boundary=pool.max_block)
    assert b.phys % pool.max_block == 0
    assert b.address % pool.max_block == 0
    pool.free(b)


# -- model-checked random sequences -----------------------------------------------------------
GRAIN = 64

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(1, 300_000), st.integers(6, 14)),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.just(0)),
), min_size=1, max_size=120)


@given(ops)
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_sequences_match_a_model(pool: DmaPool,
                                        sequence: list[tuple[str, int, int]]) -> None:
    occupied = np.zeros(pool.size // GRAIN, dtype=bool)  # model: 64-byte grains in use
    live: list[tuple[DmaBlock, int]] = []
    try:
        for op, a, b in sequence:
            if op == "free":
                if not live:
                    continue
                block, span = live.pop(a % len(live))
                pool.free(block)
                first = (block.address - pool.address) // GRAIN
                occupied[first:first + span // GRAIN] = False
                continue
            nbytes, align = a, 1 << b
            span = _rounded(nbytes, align)
            try:
                block = pool.alloc(nbytes, align=align)
            except InvalidArgument:
                assert span > pool.max_block
                continue
            except DmaPoolExhausted as exc:
                # A buddy allocator with full coalescing finds any free aligned span, so
                # refusing is right only if the model has none either.
                grains = occupied.reshape(-1, span // GRAIN)
                assert grains.any(axis=1).all(), f"a free aligned {span}-byte span exists"
                assert exc.available == pool.size - int(occupied.sum()) * GRAIN
                continue
            off = block.address - pool.address
            assert block.phys - pool.phys == off
            assert off % span == 0 and 0 <= off <= pool.size - span
            first = off // GRAIN
            assert not occupied[first:first + span // GRAIN].any(), "blocks overlap"
            occupied[first:first + span // GRAIN] = True
            live.append((block, span))
            assert pool.used == int(occupied.sum()) * GRAIN
    finally:
        for block, _ in live:
            pool.free(block)
    assert pool.available == pool.size and pool.largest_free == pool.max_block


# -- data -----------------------------------------------------------------------------------
def test_writes_stay_inside_their_block(pool: DmaPool) -> None:
    rng = random.Random(5)
    blocks = [pool.alloc(rng.choice([1, 63, 64, 65, 1000, 4096, 9000])) for _ in range(300)]
    for i, b in enumerate(blocks):
        ctypes.memset(b.address, i % 251 + 1, b.size)  # written by raw address, not via numpy
    for i, b in enumerate(blocks):
        view = pool.array(b)
        assert view.size == b.size
        assert np.all(view == i % 251 + 1), f"block {i} was overwritten"
        del view
    for b in blocks:
        pool.free(b)


def test_array_dtype_view(pool: DmaPool) -> None:
    b = pool.alloc(4096)
    pool.array(b, np.uint32)[:] = np.arange(1024, dtype=np.uint32)
    assert bytes(_bytes_at(b.address + 4, 4)) == (1).to_bytes(4, "little")
    pool.free(b)


# -- threads ----------------------------------------------------------------------------------
def test_threads_alloc_and_free_concurrently(pool: DmaPool) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        held: list[tuple[DmaBlock, int]] = []
        try:
            start.wait()
            for i in range(3000):
                if held and (len(held) >= 32 or rng.random() < 0.5):
                    b, tag = held.pop(rng.randrange(len(held)))
                    # Another thread given an overlapping block would have changed these.
                    assert bytes(_bytes_at(b.address, b.size)) == bytes([tag]) * b.size
                    pool.free(b)
                else:
                    b = pool.alloc(rng.choice([64, 200, 512, 1500, 4096]),
                                   align=rng.choice([64, 256, 4096]))
                    tag = (seed * 31 + i) % 255 + 1
                    ctypes.memset(b.address, tag, b.size)
                    held.append((b, tag))
            for b, _ in held:
                pool.free(b)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert pool.outstanding == 0
    assert pool.available == pool.size
    assert pool.largest_free == pool.max_block  # freed blocks coalesced all the way back


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("nbytes", [0, -64, 1.5, "64", True, None])
def test_bad_nbytes(pool: DmaPool, nbytes: object) -> None:
    with pytest.raises(InvalidArgument, match=r"nbytes\b"):
        pool.alloc(nbytes)  # type: ignore[arg-type]


@pytest.mark.parametrize("align", [0, -64, 3, 48, 100, 64.0])
def test_bad_align(pool: DmaPool, align: object) -> None:
    with pytest.raises(InvalidArgument, match=r"align\b"):
        pool.alloc(64, align=align)  # type: ignore[arg-type]


@pytest.mark.parametrize("nbytes,boundary,why", [
    (64, 96, "power of two"), (64, 0, "power of two"), (4096, 2048, "smaller than nbytes"),
    (65, 64, "smaller than nbytes"), (64, "4096", "integer"),
])
def test_bad_boundary(pool: DmaPool, nbytes: int, boundary: object, why: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"boundary\b.*{why}"):
        pool.alloc(nbytes, boundary=boundary)  # type: ignore[arg-type]


def test_numpy_integers_accepted(pool: DmaPool) -> None:
    b = pool.alloc(np.int64(100), align=np.uint32(256), boundary=np.int16(128))
    assert b.size == 100 and type(b.size) is int and b.phys % 256 == 0
    pool.free(b)


def test_larger_than_any_block(pool: DmaPool) -> None:
    with pytest.raises(InvalidArgument, match="allocate_contiguous"):
        pool.alloc(pool.max_block + 1)
    with pytest.raises(InvalidArgument, match="largest block"):
        pool.alloc(64, align=pool.max_block * 2)


def test_out_of_space_and_fragmentation(pool: DmaPool) -> None:
    blocks = [pool.alloc(4096) for _ in range(pool.size // 4096)]
    with pytest.raises(DmaPoolExhausted) as info:
        pool.alloc(1)
    assert isinstance(info.value, OutOfMemory) and isinstance(info.value, MemoryError)
    assert info.value.available == 0 and info.value.largest == 0
    for b in blocks[::2]:
        pool.free(b)
    # Half is free, but only in 4 KiB pieces: the error must say so.
    with pytest.raises(DmaPoolExhausted, match=r"largest free block is 4096 bytes") as info:
        pool.alloc(8192)
    assert info.value.available == pool.size // 2 and info.value.wanted == 8192
    for b in blocks[1::2]:
        pool.free(b)
    pool.free(pool.alloc(pool.max_block))


def test_double_free(pool: DmaPool) -> None:
    b = pool.alloc(64)
    pool.free(b)
    with pytest.raises(InvalidArgument, match="double free"):
        pool.free(b)
    assert pool.available == pool.size


def test_free_inside_a_block_or_with_a_forged_size(pool: DmaPool) -> None:
    b = pool.alloc(4096)
    with pytest.raises(InvalidArgument, match="no block is allocated"):
        pool.free(DmaBlock(b.address + 64, b.phys + 64, 64))
    with pytest.raises(InvalidArgument, match="claims more bytes"):
        pool.free(b._replace(size=8192))
    assert pool.outstanding == 1
    pool.free(b)


def test_foreign_blocks(pool: DmaPool, hugepage_pool: Callable[..., Path]) -> None:
    hugepage_pool(1)
    with DmaPool(HUGE, page_size=HUGE) as other:
        theirs = other.alloc(64)
        with pytest.raises(InvalidArgument, match="does not belong to this DmaPool"):
            pool.free(theirs)
        mine = pool.alloc(64)
        # Right virtual address, wrong physical one: not from this pool either.
        with pytest.raises(InvalidArgument, match="does not belong"):
            pool.free(mine._replace(phys=theirs.phys))
        with pytest.raises(InvalidArgument, match="takes a DmaBlock"):
            pool.free((mine.address, mine.phys))  # type: ignore[arg-type]
        pool.free(mine)
        other.free(theirs)


# -- lifetime -------------------------------------------------------------------------------
def test_close_refuses_outstanding_blocks(hugepage_pool: Callable[..., Path]) -> None:
    hugepage_pool(1)
    p = DmaPool(HUGE, page_size=HUGE)
    assert _mapped(p.address)
    b = p.alloc(64)
    with pytest.raises(BufferError, match="1 block"):
        p.close()
    assert not p.closed
    p.free(p.alloc(128))  # still usable after the refusal
    p.free(b)
    assert _mapped(p.address)
    p.close()
    assert p.closed and not _mapped(p.address)
    with pytest.raises(InvalidArgument, match="closed"):
        p.alloc(64)
    with pytest.raises(InvalidArgument, match="closed"):
        p.free(b)
    p.close()  # idempotent


def test_context_manager_and_force(hugepage_pool: Callable[..., Path]) -> None:
    hugepage_pool(1)
    with DmaPool(HUGE, page_size=HUGE) as p:
        p.free(p.alloc(64))
    assert p.closed and not _mapped(p.address)
    with pytest.raises(BufferError):
        with DmaPool(HUGE, page_size=HUGE) as q:
            q.alloc(64)
    assert _mapped(q.address)  # refused: the block's memory is still there
    q.close(force=True)
    assert not _mapped(q.address)


def test_close_waits_for_array_views(pool: DmaPool) -> None:
    b = pool.alloc(64)
    view = pool.array(b)
    pool.free(b)
    with pytest.raises(BufferError):
        pool.close()
    assert _mapped(pool.address)
    del view
    pool.close()
    assert pool.closed and not _mapped(pool.address)


def test_gigantic_pages(hugepage_pool: Callable[..., Path]) -> None:
    hugepage_pool(1, 1 << 20, required=False)
    with DmaPool(1 << 30, page_size=1 << 30) as p:
        assert p.max_block == 1 << 30
        small = p.alloc(64)
        big = p.alloc(1 << 29, boundary=1 << 29)
        with physmem.PageMap() as pm:
            assert pm.translate(small.address) == small.phys
            assert pm.translate(big.address + big.size - 1) == big.phys + big.size - 1
        assert big.phys % (1 << 29) == 0
        p.free(small)
        p.free(big)
        assert p.available == 1 << 30


# -- reserve=True, from_buffer, alignment ---------------------------------------------------
POOLS = Path("/sys/kernel/mm/hugepages")


def _pool_counts() -> dict[str, tuple[int, int, int]]:
    """(nr, free, surplus) of every size, read straight from sysfs."""
    return {d.name: tuple(int((d / f).read_text()) for f in
                          ("nr_hugepages", "free_hugepages", "surplus_hugepages"))
            for d in sorted(POOLS.iterdir())}


def _own_phys(address: int) -> int:
    """Physical address of ``address`` from a raw pagemap read (independent of physmem)."""
    import os
    import struct

    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        entry, = struct.unpack("<Q", os.pread(fd, 8, address // 4096 * 8))
    finally:
        os.close(fd)
    assert entry >> 63, "page not present"
    return (entry & ((1 << 55) - 1)) * 4096 + address % 4096


def _allowed_block(phys: int, size: int) -> int:
    low = phys & -phys
    return min(low, 1 << (size.bit_length() - 1))


def test_reserve_true_32m_pool_twenty_times_in_a_row(pools_restored: None) -> None:
    before = _pool_counts()
    for _ in range(20):
        with DmaPool(32 * MiB, reserve=True) as p:
            phys = _own_phys(p.address)
            assert phys == p.phys
            # What the physical layout allows, from our own reading of the start.
            assert p.max_block == _allowed_block(phys, 32 * MiB)
            assert p.address % p.max_block == 0
            b = p.alloc(p.max_block, boundary=p.max_block)
            assert _own_phys(b.address + b.size - 1) == b.phys + b.size - 1
            p.free(b)
            # The 2 MiB pool's persistent size is what it was: the pages are surplus.
            nr, free, surplus = _pool_counts()["hugepages-2048kB"]
            assert nr - surplus == before["hugepages-2048kB"][0] - before["hugepages-2048kB"][2]
    assert _pool_counts() == before


def test_reserve_true_pool_hint_names_real_arguments(hugepage_pool: Callable[..., Path]) -> None:
    # Without reserve the error must point at an argument DmaPool really takes.
    pool = hugepage_pool(0)
    free = int((pool / "free_hugepages").read_text())
    with pytest.raises(physmem.errors.ContiguityUnavailable) as err:
        DmaPool((free + 1) * HUGE)
    assert "reserve=True" in str(err.value)
    import inspect
    assert "reserve" in inspect.signature(DmaPool).parameters


def test_alloc_many_alignment_boundary_and_pagemap(pool: DmaPool) -> None:
    rng = random.Random(11)
    for _ in range(30):
        nbytes = rng.randint(1, 8192)
        align = 1 << rng.randint(6, 13)
        boundary = 1 << ((nbytes - 1).bit_length() + rng.randint(0, 2))
        count = rng.randint(0, 200)
        blocks = pool.alloc_many(count, nbytes, align=align, boundary=boundary)
        assert len(blocks.address) == len(blocks.phys) == count and blocks.size == nbytes
        assert blocks.address.dtype == np.uint64
        a, p = blocks.address.astype(object), blocks.phys.astype(object)
        assert all(x % align == 0 for x in a) and all(x % align == 0 for x in p)
        assert all(x // boundary == (x + nbytes - 1) // boundary for x in p)
        span = _rounded(nbytes, align)
        starts = sorted(int(x) for x in a)
        assert all(b - s >= span for s, b in zip(starts, starts[1:])), "blocks overlap"
        for i in range(0, count, 37):  # against our own pagemap reading
            assert _own_phys(int(a[i])) == int(p[i])
        assert pool.outstanding == count
        pool.free_many(blocks)
        assert pool.outstanding == 0 and pool.available == pool.size


def test_alloc_many_is_all_or_nothing(pool: DmaPool) -> None:
    fits = pool.size // 4096
    with pytest.raises(DmaPoolExhausted, match="nothing was allocated"):
        pool.alloc_many(fits + 1, 4096)
    assert pool.outstanding == 0 and pool.available == pool.size
    # Fragmented: enough bytes free but not in 4 KiB blocks.
    small = pool.alloc_many(pool.size // 64, 64)
    pool.free_many(small.address[::2], 64)
    assert pool.available == pool.size // 2
    with pytest.raises(DmaPoolExhausted):
        pool.alloc_many(1, 4096)
    assert pool.outstanding == pool.size // 128
    pool.free_many(small.address[1::2], 64)
    assert pool.available == pool.size and pool.largest_free == pool.max_block


def test_free_many_refuses_bad_entries_and_frees_nothing(pool: DmaPool) -> None:
    blocks = pool.alloc_many(10, 100)
    dup = np.concatenate((blocks.address, blocks.address[3:4]))
    with pytest.raises(InvalidArgument, match="entry 10; nothing was freed"):
        pool.free_many(dup, 100)
    assert pool.outstanding == 10
    with pytest.raises(InvalidArgument, match="claims more bytes"):
        pool.free_many(blocks.address, 4096)
    foreign = blocks.address.copy()
    foreign[5] = 12345
    with pytest.raises(InvalidArgument, match="entry 5"):
        pool.free_many(foreign, 100)
    assert pool.outstanding == 10
    with pytest.raises(InvalidArgument, match="takes no size"):
        pool.free_many(blocks, 100)
    with pytest.raises(InvalidArgument, match="needs the size"):
        pool.free_many(blocks.address)
    with pytest.raises(InvalidArgument, match=r"free_many\(\) addresses values must be integers"):
        pool.free_many(["x"], 100)
    with pytest.raises(InvalidArgument, match="count"):
        pool.alloc_many(-1, 64)
    pool.free_many(blocks)
    with pytest.raises(InvalidArgument, match="double free"):
        pool.free_many(blocks)
    assert pool.outstanding == 0


def test_from_buffer_leaves_the_buffer_to_its_owner(hugepage_pool: Callable[..., Path],
                                                     pools_restored: None) -> None:
    from physmem.dma import allocate_contiguous, allocate_scatter
    from physmem.errors import NotContiguous

    with allocate_contiguous(2 * HUGE, reserve=True) as buf:
        p = DmaPool.from_buffer(buf)
        assert (p.address, p.phys, p.size) == (buf.address, buf.phys, buf.size)
        assert p.max_block == min(buf.address & -buf.address, buf.phys & -buf.phys, 2 * HUGE)
        b = p.alloc(4096)
        assert _own_phys(b.address) == b.phys
        p.free(b)
        p.close()
        assert not buf.closed and _mapped(buf.address)
    with pytest.raises(InvalidArgument, match="takes a DmaBuffer"):
        DmaPool.from_buffer(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="closed"):
        DmaPool.from_buffer(buf)
    hugepage_pool(4)
    with allocate_scatter(4 * HUGE) as sc:
        if not sc.is_contiguous:
            with pytest.raises(NotContiguous):
                DmaPool.from_buffer(sc)


bulk_ops = st.lists(st.one_of(
    st.tuples(st.just("alloc_many"), st.integers(0, 64), st.integers(1, 70000)),
    st.tuples(st.just("free_many"), st.integers(0, 10_000), st.just(0)),
), min_size=1, max_size=40)


@given(bulk_ops)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bulk_sequences_match_a_model(pool: DmaPool, sequence: list[tuple[str, int, int]]) -> None:
    """alloc_many is all or nothing: equal naturally aligned blocks fit exactly when the
    model has ``count`` wholly free aligned spans; successes must not overlap, refusals
    must leave the pool untouched."""
    occupied = np.zeros(pool.size // GRAIN, dtype=bool)
    live: list = []
    try:
        for op, a, b in sequence:
            if op == "free_many":
                if live:
                    blocks = live.pop(a % len(live))
                    pool.free_many(blocks)
                    for addr in blocks.address.tolist():
                        first = (addr - pool.address) // GRAIN
                        occupied[first:first + _rounded(blocks.size, 64) // GRAIN] = False
                continue
            count, nbytes = a, b
            span = _rounded(nbytes, 64)
            if span > pool.max_block:
                with pytest.raises(InvalidArgument):
                    pool.alloc_many(count, nbytes)
                continue
            before = occupied.copy()
            try:
                blocks = pool.alloc_many(count, nbytes)
            except DmaPoolExhausted:
                trial = before.copy().reshape(-1, span // GRAIN)
                free_spans = int((~trial.any(axis=1)).sum())
                assert free_spans < count
                assert pool.used == int(before.sum()) * GRAIN, "nothing was allocated"
                continue
            assert len(blocks.address) == count
            assert np.array_equal(blocks.phys - np.uint64(pool.phys),
                                  blocks.address - np.uint64(pool.address))
            for addr in blocks.address.tolist():
                off = addr - pool.address
                assert off % span == 0
                first = off // GRAIN
                assert not occupied[first:first + span // GRAIN].any(), "blocks overlap"
                occupied[first:first + span // GRAIN] = True
            live.append(blocks)
            assert pool.used == int(occupied.sum()) * GRAIN
    finally:
        for blocks in live:
            pool.free_many(blocks)
    assert pool.available == pool.size and pool.largest_free == pool.max_block
