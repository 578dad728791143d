"""DmaBuffer: hugetlb memory with known, pinned physical addresses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._records import AddressArray
from .._runs import find_runs, run_table
from .._args import as_uint64_array
from ..addressing import page_size
from ..errors import (
    ContiguityUnavailable,
    InvalidArgument,
    NotContiguous,
    PhysicalAddressChanged,
    PinUnavailable,
)
from ..kpageflags import KPF, KPageFlags
from ..mapping import Advice, Mapping
from ..pagemap import PageMap
from . import pin as _pins

if TYPE_CHECKING:
    from ..hugepages.growth import Growth

__all__ = ["DmaBuffer", "Verification"]

def _segments(vaddr: int, page_paddr: np.ndarray, page_size: int) -> np.ndarray:
    """Segments from the physical address of each page, pages in virtual order."""
    first, counts = find_runs(page_paddr, step=page_size)
    ps = np.uint64(page_size)
    return run_table(np.uint64(vaddr) + first.astype(np.uint64) * ps, page_paddr[first],
                     counts.astype(np.uint64) * ps)


@dataclass(frozen=True)
class Verification:
    """What :meth:`DmaBuffer.verify` checked. A check that ran and found a difference raised
    :class:`PhysicalAddressChanged`; a check that could not run is named in ``not_checked``
    with the reason, and its flag is False."""

    pages: int                  # hugepages checked
    segments: int               # physical segments the layout has
    pagemap: bool               # /proc/self/pagemap re-read: every page where ``segments`` say
    kpageflags: bool            # /proc/kpageflags: every page is a hugetlb (compound head) page
    not_checked: tuple[tuple[str, str], ...] = ()   # (check, why it could not run)
    pinned: bool = False        # /proc/self/fdinfo: io_uring holds the whole buffer pinned
    pin_error: str | None = None    # why it is not pinned (None when pinned, or not asked)

    @property
    def complete(self) -> bool:
        """Every check ran (and passed)."""
        return not self.not_checked

    def lines(self) -> list[str]:
        """One line per check, for people."""
        one = self.pages == 1
        pages, are, them = (("the page", "is", "it") if one
                            else (f"all {self.pages} pages", "are", "them"))
        out = []
        if self.pagemap:
            out.append(f"verified with pagemap: {pages} {are} at the physical "
                       f"address{'' if one else 'es'} shown")
        if self.kpageflags:
            out.append(f"verified with kpageflags: {pages} {are} hugetlb")
        if self.pinned:
            out.append(f"pinned: io_uring holds {pages} as a fixed buffer (fdinfo), so the "
                       f"kernel will not move {them}")
        elif self.pin_error:
            out.append(f"not pinned (memory offline or migration may move the pages): "
                       f"{self.pin_error}")
        else:
            out.append("not pinned (not asked to): memory offline or migration may move the "
                       "pages")
        out += [f"not checked: {check}: {why}" for check, why in self.not_checked]
        return out

    def as_json(self) -> dict[str, Any]:
        return {"pagemap": self.pagemap, "kpageflags": self.kpageflags,
                "pinned": self.pinned, "pin_error": self.pin_error,
                "not_checked": {check: why for check, why in self.not_checked}}


class DmaBuffer:
    """Hugetlb memory locked in place, with its physical layout in ``segments``.

    Made by :func:`physmem.dma.allocate_contiguous` or :func:`allocate_scatter`. ``address``
    and ``size`` (whole hugepages) describe the virtual range; ``segments`` is a structured
    array (``vaddr``, ``paddr``, ``nbytes``) of its physically contiguous pieces. Offsets in
    :meth:`virt_to_phys` / :meth:`phys_to_virt` count from ``address``. Excluded from fork
    children (MADV_DONTFORK) and mlocked, and, where the kernel allows, pinned for the long
    term (``pinned``; ``pin_error`` says why not), so that nothing moves it while a device may
    be writing into it. ``verification`` records what the latest :meth:`verify` (run once at
    allocation) checked. Close it, or use it as a context manager.
    """

    address: int
    size: int
    page_size: int
    node: int | None
    segments: np.ndarray
    verification: Verification   # the latest verify() result
    pin_error: str | None        # why the buffer is not pinned (None if pinned or pin=False)
    _mapping: Mapping
    _growth: Growth | None
    _pin: _pins.Pin | None
    _page_paddr: np.ndarray
    _voff: np.ndarray
    _p_sorted: np.ndarray
    _p_voff: np.ndarray
    _p_len: np.ndarray

    def __init__(self) -> None:
        raise TypeError("use physmem.dma.allocate_contiguous() or allocate_scatter()")

    @classmethod
    def _create(cls, mapping: Mapping, page_paddr: np.ndarray, *, node: int | None,
                growth: Growth | None = None, pin: _pins.PinMode = False,
                contiguous: bool = False) -> DmaBuffer:
        self = object.__new__(cls)
        self._mapping = mapping
        # Pool growth the buffer must give back itself (none, unless the kernel kept it).
        self._growth = growth if growth is not None and growth.leftover else None
        self._pin = None
        self.pin_error = None
        self.page_size = mapping.page_size
        self.size = mapping.size
        self.address = mapping.address
        mapping.advise(Advice.DONTFORK)
        try:
            # The pin before mlock: RLIMIT_MEMLOCK bounds both, and a refused pin says why
            # with the figures (mlock's refusal cannot: it has only an errno).
            if pin is not False:
                try:
                    self._pin = _pins.pin_range(self.address, self.size)
                except PinUnavailable as exc:
                    if pin is True:
                        raise
                    self.pin_error = str(exc)
                else:
                    # A pin moves pages out of ZONE_MOVABLE and CMA: the layout is where
                    # they are now (candidates were settled first, so normally unchanged).
                    with PageMap() as pm:
                        page_paddr = pm.page_heads(self.address, len(page_paddr),
                                                   self.page_size)
                    if contiguous and len(find_runs(page_paddr, step=self.page_size)[0]) > 1:
                        raise ContiguityUnavailable(
                            f"pinning the buffer at {self.address:#x} moved its pages out of "
                            "ZONE_MOVABLE, and they are no longer adjacent; retry, or pass "
                            "pin=False", longest=0, wanted=self.size)
            mapping.mlock()
            self._set_layout(page_paddr)
            self.node = self._find_node() if node is None else node
            self.verify()
        except BaseException:
            self._unpin()
            raise
        return self

    def _set_layout(self, page_paddr: np.ndarray) -> None:
        self._page_paddr = np.ascontiguousarray(page_paddr, dtype=np.uint64)
        self.segments = _segments(self.address, self._page_paddr, self.page_size).view(AddressArray)
        self.segments.flags.writeable = False
        self._voff = (self.segments["vaddr"] - np.uint64(self.address)).copy()
        by_phys = np.argsort(self.segments["paddr"])
        self._p_sorted = self.segments["paddr"][by_phys].copy()
        self._p_voff = self._voff[by_phys].copy()
        self._p_len = self.segments["nbytes"][by_phys].copy()

    def _find_node(self) -> int | None:
        from ..numa import node_of

        nodes = set(np.asarray(node_of(self.segments["vaddr"])).tolist())
        return nodes.pop() if len(nodes) == 1 and min(nodes) >= 0 else None

    # -- layout -------------------------------------------------------------------------
    @property
    def is_contiguous(self) -> bool:
        return len(self.segments) == 1

    @property
    def phys(self) -> int:
        """Physical start address; only for a contiguous buffer."""
        if not self.is_contiguous:
            raise NotContiguous(
                f"the buffer at {self.address:#x} is {len(self.segments)} physical segments; "
                "use .segments or virt_to_phys()", address=self.address)
        return int(self.segments["paddr"][0])

    def virt_to_phys(self, offsets: Any) -> Any:
        """Physical address of each byte offset (int or array) from ``address``."""
        self._require_open()
        scalar = np.ndim(offsets) == 0
        off = _offsets(offsets, self.size)
        if self.is_contiguous:
            out = off + np.uint64(self.segments["paddr"][0])
        else:
            # Segments are whole pages: index the per-page table (one gather from a table
            # that stays in cache) rather than search the segments, ten times faster.
            shift = np.uint64(self.page_size.bit_length() - 1)
            out = np.take(self._page_paddr, (off >> shift).astype(np.intp))
            out += off & np.uint64(self.page_size - 1)
        return int(out.reshape(-1)[0]) if scalar else out

    def phys_to_virt(self, paddrs: Any) -> Any:
        """Offset from ``address`` of each physical address (the inverse of virt_to_phys)."""
        self._require_open()
        scalar = np.ndim(paddrs) == 0
        p = _as_u64(paddrs, "physical address")
        seg = np.searchsorted(self._p_sorted, p, side="right") - 1
        inside = (seg >= 0)
        seg_c = np.clip(seg, 0, None)
        delta = p - self._p_sorted[seg_c]
        inside &= delta < self._p_len[seg_c]
        if not np.all(inside):
            bad = int(np.asarray(p).reshape(-1)[np.argmin(np.asarray(inside).reshape(-1))])
            raise InvalidArgument(f"physical address {bad:#x} is not in this buffer "
                                  f"({len(self.segments)} segment(s), {self.size} bytes)")
        out = self._p_voff[seg_c] + delta
        return int(out.reshape(-1)[0]) if scalar else out

    def verify(self) -> Verification:
        """Re-read pagemap, and kpageflags when readable: raise PhysicalAddressChanged if any
        page moved, vanished or is not a hugetlb page; return what was checked and what could
        not be (also kept as ``verification``).

        pagemap alone proves the layout; kpageflags (mode 0400, root only: CAP_SYS_ADMIN
        without CAP_DAC_OVERRIDE cannot open it) adds that every page is a hugetlb page.
        """
        self._require_open()
        npages = len(self._page_paddr)
        # One pagemap entry per hugepage: a huge page-table entry maps its whole page, so
        # the entries of its tail frames follow from the head's and add nothing to check.
        with PageMap() as pm:
            now = pm.page_heads(self.address, npages, self.page_size)
        moved = now != self._page_paddr
        if moved.any():
            segs = _segments(self.address, now, self.page_size)
            raise PhysicalAddressChanged(
                f"the buffer at {self.address:#x} no longer has its physical layout: "
                f"{int(moved.sum())} of {npages} pages moved or vanished (expected "
                f"{len(self.segments)} segment(s), pagemap shows {len(segs)})",
                address=self.address)
        pinned = self._pin_listed()
        try:
            kpf = KPageFlags()
        except PermissionError as exc:
            self.verification = Verification(npages, len(self.segments), pagemap=True,
                                             kpageflags=False,
                                             not_checked=(("kpageflags", str(exc)),),
                                             pinned=pinned, pin_error=self.pin_error)
            return self.verification
        with kpf:
            heads = self._page_paddr // np.uint64(page_size())
            flags = kpf.read(heads)
        want = int(KPF.HUGE | KPF.COMPOUND_HEAD)
        if not np.all(flags & want == want):
            raise PhysicalAddressChanged(
                f"a page of the buffer at {self.address:#x} is no longer a hugetlb head page",
                address=self.address)
        self.verification = Verification(npages, len(self.segments), pagemap=True,
                                         kpageflags=True, pinned=pinned,
                                         pin_error=self.pin_error)
        return self.verification

    def _pin_listed(self) -> bool:
        """Whether the kernel lists this buffer's pin: every slot of it, in the ring's
        fdinfo, registered over exactly its span."""
        if self._pin is None:
            return False
        from ..proc import uring_buffers

        listed = {(b.slot, b.address, b.size) for b in uring_buffers(self._pin.ring_fd)}
        first = self._pin.first_slot
        want = {(first + i, a, n) for i, (a, n) in enumerate(self._pin.spans())}
        if not want <= listed:
            raise PhysicalAddressChanged(
                f"the pin of the buffer at {self.address:#x} is gone: its io_uring no "
                "longer lists it as a fixed buffer", address=self.address)
        return True

    # -- pinning ------------------------------------------------------------------------
    @property
    def pinned(self) -> bool:
        """Whether the pages are pinned for the long term (io_uring fixed buffer)."""
        return self._pin is not None

    def pin(self) -> None:
        """Pin the pages now (if not already); :class:`~physmem.errors.PinUnavailable` says
        why the kernel refused. The pages must not move on the way: where the pin moved one
        (out of ZONE_MOVABLE), PhysicalAddressChanged is raised and the pin kept."""
        self._require_open()
        if self._pin is None:
            self._pin = _pins.pin_range(self.address, self.size)
            self.pin_error = None
        self.verify()

    def unpin(self) -> None:
        """Let go of the pin (the pages stay mlocked); returns once the kernel has."""
        self._unpin()
        if not self.closed:
            self.pin_error = "unpinned by unpin()"

    def _unpin(self) -> None:
        if self._pin is not None:
            pinned, self._pin = self._pin, None
            _pins.unpin(pinned)

    # -- data access --------------------------------------------------------------------
    def view(self) -> memoryview:
        return self._mapping.view()

    def array(self, dtype: Any = np.uint8, shape: int | tuple[int, ...] | None = None) -> np.ndarray:
        """A numpy view of the buffer (close() refuses while views exist)."""
        return self._mapping.array(dtype, shape)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self._mapping.__array__(dtype, copy)

    def __buffer__(self, flags: int) -> memoryview:
        return self._mapping.__buffer__(flags)

    def __len__(self) -> int:
        return self.size

    # -- lifetime -----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._mapping.closed

    def _require_open(self) -> None:
        if self._mapping.closed:
            raise InvalidArgument(f"the DmaBuffer at {self.address:#x} is closed")

    def close(self) -> None:
        """Unmap and unpin: the pages are back in the pool (or, grown for the buffer, back
        in the system) when this returns.

        Raises BufferError while numpy arrays or memoryviews of it exist.
        """
        if not self._mapping.closed:
            self._mapping.close()  # refuses while views exist, before anything else changes
        self._unpin()
        if self._growth is not None:
            growth, self._growth = self._growth, None
            growth.close()

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else (
            f"phys={self.phys:#x}" if self.is_contiguous else f"{len(self.segments)} segments")
        pinned = "" if self.closed else (", pinned" if self.pinned else ", not pinned")
        return (f"<DmaBuffer {self.size} bytes at {self.address:#x}, {state}{pinned}, "
                f"page_size={self.page_size:#x}, node={self.node}>")


def _as_u64(values: Any, name: str) -> np.ndarray:
    return as_uint64_array(values, name, 1 << 63)


def _offsets(offsets: Any, size: int) -> np.ndarray:
    return as_uint64_array(offsets, "offset", size)
