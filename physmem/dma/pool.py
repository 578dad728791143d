"""DmaPool: many small DMA blocks (descriptors, packet buffers) carved from one contiguous buffer.

The allocator is a buddy system in C (csrc/dmapool.c) that deals only in offsets, so blocks
cost no syscall, bookkeeping never lives in memory a device can write, and every call is
serialized by the allocator's own mutex (cffi releases the GIL around it). A block is the
requested size rounded up to a power of two (at least 64 bytes) and is naturally aligned,
both virtually and physically; that alignment is what makes ``align`` and ``boundary`` hold.
"""
from __future__ import annotations

import errno as _errno
from typing import Any, NamedTuple

import numpy as np

from .._records import hex_fields
from .._args import as_nonneg, as_positive, as_power_of_two, as_uint64_array
from .._raw import check
from .._raw import dmapool as _raw
from ..errors import DmaPoolExhausted, InvalidArgument, OutOfMemory
from .allocate import allocate_contiguous
from .buffer import DmaBuffer
from .pin import PinMode

__all__ = ["DmaPool", "DmaBlock", "DmaBlocks"]

_MIN_BLOCK = 1 << _raw.MIN_ORDER
_c_alloc = _raw.alloc
_c_free = _raw.free


@hex_fields("address", "phys")
class DmaBlock(NamedTuple):
    """A block from :meth:`DmaPool.alloc`: virtual ``address``, physical ``phys`` and the
    ``size`` (bytes) asked for. Immutable; give it back with :meth:`DmaPool.free`."""

    address: int
    phys: int
    size: int


class DmaBlocks(NamedTuple):
    """Blocks from :meth:`DmaPool.alloc_many`: virtual ``address`` and physical ``phys`` of
    each (uint64 arrays, in the same order), all of ``size`` bytes as asked for. Give them
    back with :meth:`DmaPool.free_many`."""

    address: np.ndarray
    phys: np.ndarray
    size: int


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


class DmaPool:
    """One physically contiguous buffer of ``size`` bytes handing out blocks.

    ``size``, ``page_size``, ``node``, ``reserve``, ``pin`` and ``max_growth`` are passed to
    :func:`~physmem.dma.allocate_contiguous` (``reserve=True``: grow the hugepage pool for
    it, with nothing left behind once the pool is closed or the process dies; ``pin``: keep
    the kernel from moving the buffer, ``"auto"`` by default), or
    :meth:`from_buffer` carves an existing contiguous buffer. Blocks are powers of two from
    64 bytes up to :attr:`max_block`, the largest power of two to which the buffer's virtual
    and physical start are both aligned, at most the pool's size; the buffer's virtual start
    is aligned like its physical one, so that is what the physical layout allows.
    :attr:`used` counts that rounded size. :meth:`alloc_many` / :meth:`free_many` take or
    return many blocks in one call and under one lock.

    :meth:`close` (and leaving a ``with`` block) refuses with ``BufferError`` while blocks are
    outstanding, because a device may still be writing into them and their memory would go
    back to the hugepage pool; free them first, or pass ``force=True`` once the device has
    stopped. All methods are thread-safe.
    """

    __slots__ = ("_buffer", "_pool", "address", "phys", "size", "page_size", "node",
                 "max_block", "_max_order", "_owns_buffer")

    def __init__(self, size: int | str, *, page_size: int | str | None = None,
                 node: int | None = None, reserve: bool = False,
                 pin: PinMode = "auto", max_growth: int | str | None = None) -> None:
        buffer = allocate_contiguous(size, page_size=page_size, node=node, reserve=reserve,
                                     pin=pin, max_growth=max_growth)
        try:
            self._adopt(buffer, owns=True)
        except BaseException:
            buffer.close()
            raise

    @classmethod
    def from_buffer(cls, buffer: DmaBuffer) -> DmaPool:
        """A pool over an existing physically contiguous :class:`DmaBuffer`.

        The buffer stays the caller's: :meth:`close` stops the pool but leaves the buffer
        mapped (close it after the pool). :attr:`max_block` follows the buffer's own
        virtual and physical alignment.
        """
        if not isinstance(buffer, DmaBuffer):
            raise InvalidArgument(
                f"from_buffer() takes a DmaBuffer (from allocate_contiguous), not {buffer!r:.80}")
        buffer._require_open()
        self = object.__new__(cls)
        self._adopt(buffer, owns=False)  # .phys raises NotContiguous for a scatter buffer
        return self

    def _adopt(self, buffer: DmaBuffer, *, owns: bool) -> None:
        self._owns_buffer = owns
        self._buffer = buffer
        self.address = buffer.address
        self.phys = buffer.phys
        self.size = buffer.size
        self.page_size = buffer.page_size
        self.node = buffer.node
        # Blocks are aligned to their size relative to the start; beyond the start's own
        # alignment (virtual or physical) that would no longer be true of the addresses.
        order = min(_trailing_zeros(self.address), _trailing_zeros(self.phys),
                    self.size.bit_length() - 1)
        ret, pool = _raw.new(self.size, order)
        if ret == -_errno.ENOMEM:
            raise OutOfMemory(f"cannot allocate the bookkeeping of a {self.size}-byte DmaPool",
                              errno=_errno.ENOMEM)
        check(ret, f"cannot set up a {self.size}-byte DmaPool with blocks up to {1 << order}")
        assert pool is not None
        self._pool = pool
        self._max_order = order
        self.max_block = 1 << order

    # -- blocks -------------------------------------------------------------------------
    def alloc(self, nbytes: int, *, align: int = 64, boundary: int | None = None) -> DmaBlock:
        """A block of at least ``nbytes`` whose address (virtual and physical) is a multiple
        of ``align`` and whose ``[phys, phys + nbytes)`` crosses no multiple of ``boundary``.

        ``align`` and ``boundary`` are powers of two, ``boundary >= nbytes``. Raises
        :class:`~physmem.errors.DmaPoolExhausted` when no free block is large enough.
        """
        # Fast path first: plain valid ints skip the thorough (and slower) checks.
        if (type(nbytes) is not int or type(align) is not int or nbytes <= 0 or align <= 0
                or align & (align - 1) or nbytes > self.max_block or (boundary is not None and (
                    type(boundary) is not int or boundary < nbytes
                    or boundary & (boundary - 1)))):
            nbytes, align, boundary = self._check_request(nbytes, align, boundary)
        # Any block of order >= log2(nbytes) is aligned to a power of two >= nbytes, which
        # alone keeps it inside one boundary window; alignment comes the same way.
        order = ((nbytes if nbytes > align else align) - 1).bit_length()
        offset = _c_alloc(self._pool, order)
        if offset < 0:
            self._alloc_failed(offset, nbytes, align, order)
        return DmaBlock(self.address + offset, self.phys + offset, nbytes)

    def free(self, block: DmaBlock) -> None:
        """Give ``block`` back. Raises InvalidArgument for a double free or a foreign block."""
        try:
            offset = block.address - self.address
            foreign = not 0 <= offset < self.size or block.phys - self.phys != offset
            ret = _c_free(self._pool, offset, block.size) if not foreign else 0
        except (AttributeError, TypeError, OverflowError):
            raise InvalidArgument(
                f"free() takes a DmaBlock returned by DmaPool.alloc(), not {block!r}") from None
        if foreign:
            raise InvalidArgument(
                f"{block!r} does not belong to this DmaPool (virtual {self.address:#x}, "
                f"physical {self.phys:#x}, {self.size} bytes); free it with the pool that "
                "allocated it", address=block.address)
        if ret < 0:
            self._free_failed(ret, block)

    def alloc_many(self, count: int, nbytes: int, *, align: int = 64,
                   boundary: int | None = None) -> DmaBlocks:
        """``count`` blocks as :meth:`alloc` would return them, in one call under one lock
        (like DPDK's ``rte_mempool_get_bulk``): all of them, or none and
        :class:`~physmem.errors.DmaPoolExhausted`."""
        count = as_nonneg(count, "count", hi=self.size // _MIN_BLOCK)
        nbytes, align, boundary = self._check_request(nbytes, align, boundary)
        order = (max(nbytes, align) - 1).bit_length()
        offsets = np.empty(count, dtype=np.uint64)
        ret = _raw.alloc_many(self._pool, order, offsets)
        if ret < 0:
            self._alloc_failed(ret, nbytes, align, order, count)
        return DmaBlocks(offsets + np.uint64(self.address), offsets + np.uint64(self.phys),
                         nbytes)

    def free_many(self, blocks: DmaBlocks | Any, size: int | None = None) -> None:
        """Give back blocks from :meth:`alloc_many`: the :class:`DmaBlocks` itself, or an
        array of virtual addresses and the ``size`` they were allocated with. All or none:
        a double, duplicate or foreign entry raises InvalidArgument naming it and frees
        nothing."""
        if isinstance(blocks, DmaBlocks):
            if size is not None:
                raise InvalidArgument("free_many(blocks) takes no size: the DmaBlocks has it")
            addresses, size = blocks.address, blocks.size
        else:
            addresses = blocks
            if size is None:
                raise InvalidArgument("free_many(addresses, size) needs the size the blocks "
                                      "were allocated with")
        size = as_nonneg(size, "size")
        addr = as_uint64_array(addresses, "free_many() addresses", None)
        if addr.ndim != 1:
            raise InvalidArgument(
                f"free_many() takes a DmaBlocks or a 1-D array of integer addresses, not "
                f"{addresses!r:.80}")
        offsets = np.ascontiguousarray(addr - np.uint64(self.address))  # wraps if below
        ret, i = _raw.free_many(self._pool, offsets, size)
        if ret < 0:
            block = DmaBlock(int(addr[i]), self.phys + int(offsets[i]), size) \
                if ret != -_errno.EBADF else DmaBlock(0, 0, size)
            self._free_failed(ret, block, f" (entry {i}; nothing was freed)")

    def array(self, block: DmaBlock, dtype: Any = np.uint8) -> np.ndarray:
        """A numpy view of ``block``'s bytes (close() refuses while views exist)."""
        offset = block.address - self.address
        if not 0 <= offset < self.size or block.phys - self.phys != offset:
            raise InvalidArgument(f"{block!r} does not belong to this DmaPool",
                                  address=block.address)
        return self._buffer.array()[offset:offset + block.size].view(dtype)

    # -- state --------------------------------------------------------------------------
    def _stats(self) -> tuple[int, int, int, bool]:
        return _raw.stats(self._pool)

    @property
    def available(self) -> int:
        """Free bytes (not necessarily in one block; see :attr:`largest_free`)."""
        return self._stats()[0]

    @property
    def used(self) -> int:
        """Bytes held by outstanding blocks, each counted at its power-of-two size."""
        return self.size - self._stats()[0]

    @property
    def outstanding(self) -> int:
        """How many blocks are allocated and not yet freed."""
        return self._stats()[1]

    @property
    def largest_free(self) -> int:
        """Size of the largest block :meth:`alloc` could return right now."""
        return self._stats()[2]

    @property
    def buffer(self) -> DmaBuffer:
        """The contiguous buffer the blocks come from."""
        return self._buffer

    @property
    def closed(self) -> bool:
        return self._stats()[3]

    # -- lifetime -----------------------------------------------------------------------
    def close(self, *, force: bool = False) -> None:
        """Stop handing out blocks and unmap the buffer (its pages go back to the pool).

        Raises BufferError, leaving the pool usable, while blocks are outstanding, unless
        ``force`` (say so only when no device can still touch them). Also raises
        BufferError while arrays from :meth:`array` exist; call again once they are gone.
        """
        if _raw.close(self._pool, bool(force)) == -_errno.EBUSY:
            free, count, _, _ = self._stats()
            raise BufferError(
                f"cannot close the DmaPool at {self.address:#x}: {count} block(s) "
                f"({self.size - free} bytes) are still allocated and a device may still be "
                "writing into them; free() them first, or close(force=True) once the device "
                "has stopped")
        if self._owns_buffer:
            self._buffer.close()

    def __enter__(self) -> DmaPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        free, count, _, closed = self._stats()
        state = "closed" if closed else f"{count} block(s) out, {free} bytes free"
        return (f"<DmaPool {self.size} bytes at {self.address:#x} phys={self.phys:#x}, "
                f"{state}>")

    # -- errors (slow paths) ------------------------------------------------------------
    def _check_request(self, nbytes: Any, align: Any,
                       boundary: Any) -> tuple[int, int, int | None]:
        """Normalize numpy integers and the like; raise the precise error for bad values."""
        nbytes = as_positive(nbytes, "nbytes")
        align = as_power_of_two(align, "align")
        if boundary is not None:
            boundary = as_power_of_two(boundary, "boundary")
            if boundary < nbytes:
                raise InvalidArgument(
                    f"boundary={boundary} is smaller than nbytes={nbytes}: such a block must "
                    "cross a multiple of it; use a boundary >= nbytes or allocate less")
        if max(nbytes, align) > self.max_block:
            raise InvalidArgument(
                f"nbytes={nbytes} with align={align} is more than this pool's largest block, "
                f"{self.max_block} bytes; use allocate_contiguous() for buffers this large")
        return nbytes, align, boundary

    def _alloc_failed(self, ret: int, nbytes: int, align: int, order: int,
                      count: int = 1) -> None:
        if ret == -_errno.EBADF:
            raise InvalidArgument(f"the DmaPool at {self.address:#x} is closed")
        if ret == -_errno.E2BIG:  # align beyond max_block: the fast path let it through
            self._check_request(nbytes, align, None)
        free, _, largest, _ = self._stats()
        what = f"no free {1 << order}-byte block" if count == 1 else \
            f"no {count} free {1 << order}-byte blocks (nothing was allocated)"
        raise DmaPoolExhausted(
            f"the DmaPool at {self.address:#x} has {what} for "
            f"nbytes={nbytes} (align={align}): {free} of {self.size} bytes are free, the "
            f"largest free block is {largest} bytes; free blocks or use a larger pool",
            wanted=1 << order, available=free, largest=largest)

    def _free_failed(self, ret: int, block: DmaBlock, where: str = "") -> None:
        if ret == -_errno.EBADF:
            raise InvalidArgument(f"the DmaPool at {self.address:#x} is closed")
        if ret == -_errno.ERANGE:
            raise InvalidArgument(
                f"{block!r}{where} claims more bytes than the block allocated at "
                f"{block.address:#x}; pass the blocks alloc() returned, unchanged",
                address=block.address)
        raise InvalidArgument(
            f"no block is allocated at {block.address:#x}: {block!r}{where} was already "
            "freed (double free), is listed twice, or was never returned by this pool",
            address=block.address)

