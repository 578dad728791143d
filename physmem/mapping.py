"""Memory mappings Python's ``mmap`` module cannot make: hugetlb page sizes, fixed addresses,
mlock, mremap, msync, madvise, mprotect, with the address visible.

Memory safety: every memoryview/ndarray handed out is derived from one private buffer object,
so the mapping can count its live exports; ``close()``, ``remap()``, ``protect()`` to fewer
permissions and guard installation refuse with ``BufferError`` while exports exist instead of
leaving views that would fault. If the Mapping object is dropped while views live, the memory
stays mapped until the last view goes.
"""
from __future__ import annotations

import enum
import errno as _errno
import gc
import math
import mmap as _mmap
import os
import stat
import sys
import weakref
from typing import Any

import numpy as np

from ._args import (I32_MAX, I64_MAX, as_bool, as_enum, as_flags, as_int, as_multiple, as_nonneg,
                    as_positive, flag_text)
from ._raw import SINCE, check, missing, older_than
from ._raw import mapping as raw
from ._raw.mapping import Prot
from .addressing import task_size
from .errors import HugePagesUnavailable, InvalidArgument, error_from_errno

__all__ = ["Mapping", "Prot", "Advice", "hugepage_sizes", "PAGE_SIZE"]

PAGE_SIZE = _mmap.PAGESIZE


class Advice(enum.IntEnum):
    """``madvise`` advice (``MADV_*``)."""

    NORMAL = raw.MADV_NORMAL
    RANDOM = raw.MADV_RANDOM
    SEQUENTIAL = raw.MADV_SEQUENTIAL
    WILLNEED = raw.MADV_WILLNEED
    DONTNEED = raw.MADV_DONTNEED
    FREE = raw.MADV_FREE
    REMOVE = raw.MADV_REMOVE
    DONTFORK = raw.MADV_DONTFORK
    DOFORK = raw.MADV_DOFORK
    MERGEABLE = raw.MADV_MERGEABLE
    UNMERGEABLE = raw.MADV_UNMERGEABLE
    HUGEPAGE = raw.MADV_HUGEPAGE
    NOHUGEPAGE = raw.MADV_NOHUGEPAGE
    DONTDUMP = raw.MADV_DONTDUMP
    DODUMP = raw.MADV_DODUMP
    WIPEONFORK = raw.MADV_WIPEONFORK
    KEEPONFORK = raw.MADV_KEEPONFORK
    COLD = raw.MADV_COLD
    PAGEOUT = raw.MADV_PAGEOUT
    POPULATE_READ = raw.MADV_POPULATE_READ
    POPULATE_WRITE = raw.MADV_POPULATE_WRITE
    DONTNEED_LOCKED = raw.MADV_DONTNEED_LOCKED
    COLLAPSE = raw.MADV_COLLAPSE
    GUARD_INSTALL = raw.MADV_GUARD_INSTALL
    GUARD_REMOVE = raw.MADV_GUARD_REMOVE


def hugepage_sizes() -> list[int]:
    """Huge page sizes (bytes) the kernel offers, from /sys/kernel/mm/hugepages."""
    # Imported here: physmem.hugepages (and all it loads) stays unloaded until asked for.
    from ._hugepools import supported_sizes

    return supported_sizes()


def _check_page_size(page_size: int | None) -> int:
    if page_size is None:
        return PAGE_SIZE
    page_size = as_positive(page_size, "page_size")
    if page_size == PAGE_SIZE:
        return PAGE_SIZE
    sizes = hugepage_sizes()
    if page_size not in sizes:
        raise InvalidArgument(
            f"page_size={page_size!r} is not a page size this kernel offers; use None "
            f"({PAGE_SIZE}) or one of the huge page sizes {sizes}")
    return page_size


def _hugetlb_flags(page_size: int, shift: int) -> int:
    return (page_size.bit_length() - 1) << shift


def _mmap_error(err: int, what: str, page_size: int, address: int | None) -> Exception:
    hint = None
    if err == _errno.ENOMEM and page_size != PAGE_SIZE:
        hint = (f"reserve {page_size // 1024} kB huge pages first: "
                f"/sys/kernel/mm/hugepages/hugepages-{page_size // 1024}kB/nr_hugepages")
    elif err == _errno.EEXIST:
        hint = "the requested address range is already mapped"
    elif err == _errno.EAGAIN:
        hint = "the memory could not be locked (RLIMIT_MEMLOCK?)"
    return error_from_errno(err, what, address=address, hint=hint)


def _unmap(address: int, size: int) -> None:
    raw.munmap(address, size)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _reserve(address: int, size: int, what: str) -> None:
    """Claim ``[address, address+size)`` with an inaccessible placeholder, or raise
    PhysmemOSError (EEXIST) naming the address if any of it is mapped already.

    MAP_FIXED_NOREPLACE checks and claims in one step, so no other thread can map there
    between the check and a later MAP_FIXED/MREMAP_FIXED that replaces the placeholder.
    """
    ret = raw.mmap(address, size, raw.PROT_NONE,
                      raw.MAP_PRIVATE | raw.MAP_ANONYMOUS | raw.MAP_NORESERVE
                      | raw.MAP_FIXED_NOREPLACE, -1, 0)
    if ret == -_errno.EEXIST:
        raise error_from_errno(
            _errno.EEXIST, f"{what}: the target {address:#x}..{address + size:#x}",
            address=address,
            hint="part of it is already mapped (by another Mapping or by the process); "
                 "pick a free address, or leave address=None to let the kernel choose")
    if ret < 0:
        raise error_from_errno(-ret, f"{what}: cannot reserve {address:#x}..{address + size:#x}",
                               address=address)
    if ret != address:
        # Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        raw.munmap(ret, size)
        raise missing("mmap flag MAP_FIXED_NOREPLACE", err=_errno.EINVAL)


# A file mapping remembers its file (fd, st_dev, st_ino) and offset, so growing it with
# remap() can check the file still covers it: a page wholly past the end of a file raises
# SIGBUS on access.
_FileRef = tuple[int, int, int, int]


def _file_size(fd: int) -> tuple[int, int, int] | None:
    """(st_dev, st_ino, st_size) of a regular file (memfd and hugetlbfs files included), or
    None for anything whose size does not bound what may be mapped (devices, dma-bufs)."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise error_from_errno(exc.errno or _errno.EBADF, f"fstat of fd {fd}") from exc
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_dev, st.st_ino, st.st_size


def _check_within_file(fd: int, offset: int, size: int) -> _FileRef | None:
    info = _file_size(fd)
    if info is None:
        return None
    dev, ino, file_size = info
    # The page holding the last byte of the file is mapped whole (the rest reads as zero);
    # only a page wholly past the end faults with SIGBUS, but bytes past the end are never
    # written back either, so refuse any of them.
    if offset + size > file_size:
        raise InvalidArgument(
            f"offset={offset} + size={size} = {offset + size} is past the end of the file "
            f"(fd {fd} holds {file_size} bytes): touching a page past the end kills the "
            f"process with SIGBUS; grow the file first (MemFd.truncate / os.ftruncate) or "
            f"map less")
    return fd, dev, ino, offset


def check_mapped(address: int, length: int, what: str, also: str = "") -> None:
    """Raise InvalidArgument naming the first unmapped address unless every page of
    ``[address, address + length)`` is mapped in this process (``also`` ends the message).

    msync(MS_ASYNC) answers in one syscall without touching memory: it fails with ENOMEM
    if any page of the range is unmapped (and is otherwise a no-op since Linux 2.6.19).
    ``address`` must be page aligned and the range within user space.
    """
    end = _round_up(address + length, PAGE_SIZE)
    ret = raw.msync(address, end - address, raw.MS_ASYNC)
    if ret == 0:
        return
    if ret != -_errno.ENOMEM:
        raise error_from_errno(-ret, f"{what}: checking {address:#x}..{end:#x} is mapped",
                               address=address)
    hole = _first_hole(address, end)
    raise InvalidArgument(
        f"{what}: {hole:#x} (in {address:#x}..{end:#x}) is not mapped in this process; "
        "pass a range that is mapped whole, e.g. a Mapping or (m.address, m.size)" + also,
        address=hole)


def _first_hole(address: int, end: int) -> int:
    from .proc._maps import maps

    at = address
    for vma in maps():
        if vma.end <= at:
            continue
        if vma.start > at:
            break
        at = vma.end
        if at >= end:
            return address  # mapped after all (it changed meanwhile): name the start
    return at


class Mapping:
    """A region of virtual memory made with mmap(2), unmapped by :meth:`close`.

    ``address``, ``size`` and ``page_size`` describe it. Get at the bytes with :meth:`view`
    (a memoryview), :meth:`array` (a numpy array) or ``np.asarray(mapping)``; on Python 3.12+
    ``memoryview(mapping)`` works too.
    """

    __slots__ = ("_address", "_size", "_page_size", "_prot", "_shared", "_buf", "_finalizer",
                 "_file", "__weakref__")

    def __init__(self, address: int, size: int, *, page_size: int = PAGE_SIZE,
                 prot: Prot | int = Prot.READ | Prot.WRITE, shared: bool = False) -> None:
        """Take ownership of an existing mapping of this process (it is unmapped by
        :meth:`close`). Use :meth:`anonymous` or :meth:`from_fd` to make one.

        ``[address, address + size)`` must be mapped whole, with at least the permissions
        ``prot`` claims (checked against /proc/self/maps), and ``address`` aligned to
        ``page_size`` (the base page or a huge page size of this kernel): a view onto memory
        that is not there would kill the process with SIGSEGV, so anything else is refused
        with InvalidArgument naming the address.
        """
        page_size = _check_page_size(page_size)
        top = task_size()
        address = as_multiple(address, "address", page_size, lo=1)
        size = as_positive(size, "size")
        if address + size > top:
            raise InvalidArgument(
                f"address={address:#x} + size={size:#x} reaches past the end of user space "
                f"({top:#x}): no mapping of this process can be there", address=address)
        if page_size != PAGE_SIZE:
            as_multiple(size, "size", page_size)
        prot = _check_prot(prot)
        shared = as_bool(shared, "shared")
        _check_adoptable(address, size, prot)
        self._init(address, size, page_size, prot, shared)

    @classmethod
    def _wrap(cls, address: int, size: int, page_size: int, prot: Prot,
              shared: bool) -> Mapping:
        """A Mapping of a range the kernel just mapped for us: nothing to check."""
        m = cls.__new__(cls)
        m._init(address, size, page_size, prot, shared)
        return m

    def _init(self, address: int, size: int, page_size: int, prot: Prot,
              shared: bool) -> None:
        self._address, self._size, self._page_size = address, size, page_size
        self._prot, self._shared = prot, shared
        self._file: _FileRef | None = None
        self._adopt()

    def _adopt(self) -> None:
        # The one buffer object every export derives from; the memory is unmapped when the
        # buffer dies (weakref.finalize), so a view outliving the Mapping object stays valid.
        self._buf = raw.memory_at(self._address, self._size)
        self._finalizer = weakref.finalize(self._buf, _unmap, self._address, self._size)
        self._finalizer.atexit = False

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def anonymous(cls, size: int, *, page_size: int | None = None, shared: bool = False,
                  populate: bool = False, locked: bool = False, noreserve: bool = False,
                  address: int | None = None,
                  prot: Prot | int = Prot.READ | Prot.WRITE) -> Mapping:
        """Map ``size`` bytes of anonymous memory.

        ``page_size`` picks a hugetlb page size (one of :func:`hugepage_sizes`); ``address``
        asks for exactly that address (MAP_FIXED_NOREPLACE, never replacing a mapping);
        ``locked`` mlocks it (faulting it all in); ``populate`` prefaults it.

        ``noreserve`` (MAP_NORESERVE) reserves nothing at mmap time: for hugetlb pages,
        each page is taken from the pool when first touched. :meth:`touch` then raises
        HugePagesUnavailable if the pool has run dry, but writing or reading the memory
        yourself (through :meth:`view`, :meth:`array`, or from C) kills the process with
        SIGBUS when the pool is empty. ``touch()`` it first, or leave ``noreserve`` off so
        that mmap fails cleanly instead.
        """
        size = as_positive(size, "size")
        page_size = _check_page_size(page_size)
        shared = as_bool(shared, "shared")
        flags = raw.MAP_ANONYMOUS | (raw.MAP_SHARED if shared else raw.MAP_PRIVATE)
        if page_size != PAGE_SIZE:
            as_multiple(size, "size", page_size)
            flags |= raw.MAP_HUGETLB | _hugetlb_flags(page_size, raw.MAP_HUGE_SHIFT)
        return cls._map(size, flags, -1, 0, page_size=page_size, shared=shared,
                        populate=populate, locked=locked, noreserve=noreserve,
                        address=address, prot=prot)

    @classmethod
    def from_fd(cls, fd: int | Any, size: int, offset: int = 0, *, shared: bool = True,
                populate: bool = False, locked: bool = False, address: int | None = None,
                prot: Prot | int = Prot.READ | Prot.WRITE,
                page_size: int | None = None) -> Mapping:
        """Map ``size`` bytes of file ``fd`` (an int or an object with ``fileno()``) from
        ``offset``. Pass ``page_size`` for files on hugetlbfs (a hugetlb :class:`MemFd` does
        this for you in :meth:`MemFd.map`).

        For a regular file (memfd and hugetlbfs files included) ``offset + size`` must lie
        within the file: touching a page past its end would kill the process with SIGBUS.
        """
        if hasattr(fd, "fileno"):
            fd = fd.fileno()
        fd = as_int(fd, "fd", lo=0, hi=I32_MAX)
        size = as_positive(size, "size")
        shared = as_bool(shared, "shared")
        page_size = _check_page_size(page_size)
        offset = as_nonneg(offset, "offset", hi=I64_MAX)
        as_multiple(offset, "offset", page_size)
        if page_size != PAGE_SIZE:
            as_multiple(size, "size", page_size)
        file = _check_within_file(fd, offset, size)
        flags = raw.MAP_SHARED if shared else raw.MAP_PRIVATE
        m = cls._map(size, flags, fd, offset, page_size=page_size, shared=shared,
                     populate=populate, locked=locked, noreserve=False, address=address,
                     prot=prot)
        m._file = file
        return m

    @classmethod
    def _map(cls, size: int, flags: int, fd: int, offset: int, *, page_size: int,
             shared: bool, populate: bool, locked: bool, noreserve: bool,
             address: int | None, prot: Prot | int) -> Mapping:
        prot = _check_prot(prot)
        if as_bool(populate, "populate"):
            flags |= raw.MAP_POPULATE
        if as_bool(noreserve, "noreserve"):
            flags |= raw.MAP_NORESERVE
        locked = as_bool(locked, "locked")
        want = 0
        if address is not None:
            want = as_multiple(address, "address", page_size, lo=1)
            flags |= raw.MAP_FIXED_NOREPLACE
        ret = raw.mmap(want, size, int(prot), flags, fd, offset)
        if ret < 0:
            raise _mmap_error(-ret, f"mmap of {size} bytes", page_size, address)
        if address is not None and ret != want:
            # Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
            raw.munmap(ret, size)
            raise missing("mmap flag MAP_FIXED_NOREPLACE", err=_errno.EINVAL)
        m = cls._wrap(ret, size, page_size, prot, shared)
        if locked:
            try:
                m.mlock()
            except BaseException:
                m.close()
                raise
        return m

    # ---- attributes ------------------------------------------------------------------------

    @property
    def address(self) -> int:
        """Start address (virtual) of the mapping."""
        self._require_open()
        return self._address

    @property
    def size(self) -> int:
        """Length in bytes, as asked for (the kernel maps whole pages)."""
        return self._size

    @property
    def page_size(self) -> int:
        """Page size backing the mapping: the base page or a hugetlb size."""
        return self._page_size

    @property
    def prot(self) -> Prot:
        return self._prot

    @property
    def shared(self) -> bool:
        return self._shared

    @property
    def closed(self) -> bool:
        return self._buf is None

    @property
    def exports(self) -> int:
        """Number of live objects (memoryviews, ndarrays) holding this mapping's memory."""
        if self._buf is None:
            return 0
        # One reference is self._buf, one is getrefcount's argument.
        return sys.getrefcount(self._buf) - 2

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        if self._buf is None:
            return "<Mapping closed>"
        return (f"<Mapping address={self._address:#x} size={self._size:#x} "
                f"page_size={self._page_size:#x} prot={flag_text(self._prot)}>")

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- views -------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._buf is None:
            raise InvalidArgument("the Mapping is closed; map a new one")

    def _require_readable(self) -> None:
        self._require_open()
        if not self._prot & (Prot.READ | Prot.WRITE):
            raise InvalidArgument(
                f"the Mapping at {self._address:#x} is {flag_text(self._prot)}: protect() it "
                "READ first")

    def view(self) -> memoryview:
        """A memoryview of the whole mapping (read-only if the mapping is not writable)."""
        self._require_readable()
        mv = memoryview(self._buf)
        return mv if self._prot & Prot.WRITE else mv.toreadonly()

    def array(self, dtype: Any = np.uint8, shape: int | tuple[int, ...] | None = None, *,
              offset: int = 0) -> np.ndarray:
        """A numpy array onto the mapping (no copy) from byte ``offset``; ``shape`` defaults
        to as many items of ``dtype`` as fit."""
        self._require_readable()
        try:
            dtype = np.dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"dtype={dtype!r} is not a numpy dtype: {exc}") from None
        if dtype.itemsize == 0 or dtype.hasobject:
            raise InvalidArgument(
                f"dtype={dtype!r} cannot view memory: it has itemsize 0 or holds Python "
                "objects; use a fixed-size dtype such as np.uint8")
        offset = as_nonneg(offset, "offset", hi=self._size)
        avail = (self._size - offset) // dtype.itemsize
        if shape is None:
            count = avail
            shape = (count,)
        else:
            dims = list(shape) if isinstance(shape, (tuple, list)) else [shape]
            shape = tuple(as_nonneg(d, f"shape={shape!r}: dimension") for d in dims)
            count = math.prod(shape)
            if count > avail:
                raise InvalidArgument(
                    f"shape={shape!r} of {dtype} needs {count * dtype.itemsize} bytes; only "
                    f"{avail * dtype.itemsize} are mapped after offset {offset}")
        arr = np.frombuffer(self._buf, dtype=dtype, count=count, offset=offset).reshape(shape)
        if not self._prot & Prot.WRITE:
            arr.flags.writeable = False
        return arr

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = self.array()
        if dtype is not None:
            arr = arr.view(dtype) if np.dtype(dtype).itemsize == 1 else arr.astype(dtype)
        return arr.copy() if copy else arr

    def __buffer__(self, flags: int) -> memoryview:  # Python 3.12+ buffer protocol
        return self.view()

    def _refuse_if_exported(self, doing: str) -> None:
        if self.exports:
            gc.collect()  # views caught in reference cycles
        n = self.exports
        if n:
            raise BufferError(
                f"cannot {doing} the Mapping at {self._address:#x}: {n} memoryview/ndarray "
                f"export(s) of it are alive; delete them (or release() the memoryviews) first")

    # ---- operations --------------------------------------------------------------------

    def _range(self, offset: int, length: int | None, *, align: bool = True) -> tuple[int, int]:
        self._require_open()
        offset = as_nonneg(offset, "offset", hi=self._size - 1)
        length = self._size - offset if length is None else \
            as_positive(length, "length", hi=self._size - offset)
        if align:
            as_multiple(offset, "offset", self._page_size)
        return self._address + offset, length

    def mlock(self, on_fault: bool = False) -> None:
        """Lock the mapping in RAM; all of it now, or (``on_fault``) each page when first
        touched (MLOCK_ONFAULT)."""
        self._require_open()
        on_fault = as_bool(on_fault, "on_fault")
        ret = raw.mlock2(self._address, self._size, raw.MLOCK_ONFAULT if on_fault else 0)
        if ret in (-_errno.EAGAIN, -_errno.ENOMEM):
            raise error_from_errno(
                _errno.ENOMEM, f"mlock of {self._size} bytes at {self._address:#x}",
                address=self._address,
                hint="RLIMIT_MEMLOCK too low (ulimit -l) or not enough free memory")
        check(ret, f"mlock of {self._size} bytes", since="syscall mlock2", address=self._address)

    def munlock(self) -> None:
        """Undo :meth:`mlock`."""
        self._require_open()
        check(raw.munlock(self._address, self._size), "munlock", address=self._address)

    def sync(self, *, asynchronous: bool = False, invalidate: bool = False, offset: int = 0,
             length: int | None = None) -> None:
        """msync: write a file mapping's dirty pages back (``asynchronous``: schedule only)."""
        asynchronous = as_bool(asynchronous, "asynchronous")
        invalidate = as_bool(invalidate, "invalidate")
        addr, length = self._range(offset, length)
        flags = (raw.MS_ASYNC if asynchronous else raw.MS_SYNC)
        if invalidate:
            flags |= raw.MS_INVALIDATE
        check(raw.msync(addr, length, flags), "msync", address=addr)

    def advise(self, advice: Advice | int, offset: int = 0, length: int | None = None) -> None:
        """madvise the range ``[offset, offset+length)`` (default: all of it)."""
        advice = as_enum(advice, Advice, "advice")
        addr, length = self._range(offset, length)
        if advice is Advice.GUARD_INSTALL:
            self._refuse_if_exported("install guard pages in")
        ret = raw.madvise(addr, length, int(advice))
        feature = f"madvise MADV_{advice.name}"
        check(ret, f"{feature} of {length} bytes at {addr:#x}",
              since=feature if feature in SINCE else None, address=addr)

    def protect(self, prot: Prot | int) -> None:
        """mprotect the whole mapping. Dropping a permission while views exist is refused
        (BufferError): a view would fault."""
        self._require_open()
        prot = _check_prot(prot)
        readable = Prot.READ | Prot.WRITE
        lost = (bool(self._prot & readable) and not prot & readable) or \
               (bool(self._prot & Prot.WRITE) and not prot & Prot.WRITE)
        if lost:
            self._refuse_if_exported(f"protect({flag_text(prot)})")
        check(raw.mprotect(self._address, self._size, int(prot)), "mprotect",
              address=self._address)
        self._prot = prot

    def touch(self, offset: int = 0, length: int | None = None, *, write: bool = False) -> int:
        """Fault in every page of the range from C, without holding the GIL (so a
        :meth:`UserFaultFd.serve` handler thread can run meanwhile). A write touch adds 0
        atomically, which keeps the contents. Returns the sum of the bytes read.

        Pages are faulted in with MADV_POPULATE_READ/WRITE first (Linux 5.14+), which
        reports a page that cannot be had as an error where a plain access would kill the
        process: HugePagesUnavailable (naming the pool) for a hugetlb page the pool cannot
        supply, OutOfMemory, or PhysmemOSError (EFAULT) for a page whose access would raise
        SIGBUS/SIGSEGV (a guard page, a file truncated under the mapping). Older kernels
        fault by plain access, as do ranges registered with a userfaultfd (whose faults the
        userfaultfd decides)."""
        self._require_readable()
        write = as_bool(write, "write")
        if write and not self._prot & Prot.WRITE:
            raise InvalidArgument("write=True on a mapping that is not writable")
        addr, length = self._range(offset, length, align=False)
        self._populate(addr, length, write)
        return int(raw.touch(addr, length, PAGE_SIZE, 1 if write else 0))

    def _populate(self, addr: int, length: int, write: bool) -> None:
        start = addr - (addr - self._address) % self._page_size
        end = min(_round_up(addr + length - self._address, self._page_size),
                  _round_up(self._size, PAGE_SIZE)) + self._address
        advice = Advice.POPULATE_WRITE if write else Advice.POPULATE_READ
        ret = raw.madvise(start, end - start, int(advice))
        if ret == 0 or ret == -_errno.EINVAL:
            # EINVAL: a kernel before 5.14, or VM_IO/VM_PFNMAP memory (device mappings)
            # that populate refuses; both are faulted by plain access as before.
            return
        if ret == -_errno.EFAULT and _userfaultfd_registered(start, end):
            return
        what = f"touch of {end - start} bytes at {start:#x}"
        if self._page_size != PAGE_SIZE and ret in (-_errno.EFAULT, -_errno.ENOMEM):
            raise _pool_dry(self._page_size, (end - start) // self._page_size, what)
        if ret == -_errno.ENOMEM:
            raise error_from_errno(_errno.ENOMEM, what, address=start,
                                   hint="the kernel could not supply the pages")
        if ret == -_errno.EFAULT:
            raise error_from_errno(
                _errno.EFAULT, what, address=start,
                hint="a page of it cannot be faulted in: an access would raise SIGBUS or "
                     "SIGSEGV (a guard page, a file truncated under the mapping, a poisoned "
                     "page); the process was spared")
        check(ret, what, address=start)

    def remap(self, new_size: int, *, may_move: bool = True, address: int | None = None,
              dont_unmap: bool = False) -> Mapping | None:
        """mremap to ``new_size`` bytes, in place or (``may_move``) wherever fits, or to
        exactly ``address``. Contents (and for hugetlb, the physical pages) are kept.

        ``dont_unmap`` (MREMAP_DONTUNMAP, same size only) moves the pages and leaves the old
        range mapped but empty; it is returned as a new Mapping. Otherwise returns None.
        Refused with BufferError while views exist.
        """
        self._require_open()
        new_size = as_positive(new_size, "new_size")
        may_move = as_bool(may_move, "may_move")
        dont_unmap = as_bool(dont_unmap, "dont_unmap")
        if self._page_size != PAGE_SIZE:
            as_multiple(new_size, "new_size", self._page_size)
            if new_size > self._size:
                raise InvalidArgument(
                    f"new_size={new_size:#x}: the kernel cannot grow a hugetlb mapping "
                    f"({self._size:#x} bytes); it can move or shrink it, or map a new one")
        flags = raw.MREMAP_MAYMOVE if may_move else 0
        target = 0
        if address is not None:
            target = as_multiple(address, "address", self._page_size, lo=1)
            flags |= raw.MREMAP_MAYMOVE | raw.MREMAP_FIXED
        if dont_unmap:
            if new_size != self._size:
                raise InvalidArgument(
                    f"dont_unmap=True needs new_size == size ({self._size}), got {new_size}")
            flags |= raw.MREMAP_MAYMOVE | raw.MREMAP_DONTUNMAP
        if self._file is not None and new_size > self._size:
            self._check_file_covers(new_size)
        self._refuse_if_exported("remap")
        old_address, old_size = self._address, self._size
        what = f"mremap of {old_size} bytes at {old_address:#x} to {new_size} bytes"
        reserved = 0
        if address is not None:
            # MREMAP_FIXED unmaps whatever lies at the target, even another Mapping whose
            # views are alive; so move only over a placeholder claimed here.
            reserved = _round_up(new_size, PAGE_SIZE)
            _reserve(target, reserved, what)
        self._finalizer.detach()
        self._buf = None
        ret = raw.mremap(old_address, old_size, new_size, flags, target)
        if ret < 0:
            if reserved:
                # Drop the placeholder. (Failures after the kernel already replaced it -
                # RLIMIT_MEMLOCK, map count - leave the range empty, and this is a no-op.)
                raw.munmap(target, reserved)
            self._adopt()
            if dont_unmap and ret == -_errno.EINVAL and older_than("mremap flag MREMAP_DONTUNMAP"):
                raise missing("mremap flag MREMAP_DONTUNMAP", err=_errno.EINVAL)
            hint = "cannot grow in place; pass may_move=True" if ret == -_errno.ENOMEM \
                and not may_move else None
            raise error_from_errno(-ret, what, address=old_address, hint=hint)
        self._address, self._size = int(ret), new_size
        self._adopt()
        if dont_unmap:
            old = Mapping._wrap(old_address, old_size, self._page_size, self._prot,
                                self._shared)
            old._file = self._file
            return old
        return None

    def _check_file_covers(self, new_size: int) -> None:
        assert self._file is not None
        fd, dev, ino, offset = self._file
        try:
            info = _file_size(fd)
        except OSError:
            info = None
        if info is None or info[:2] != (dev, ino):
            raise InvalidArgument(
                f"new_size={new_size}: cannot grow this file mapping: its file descriptor "
                f"{fd} is closed (or reused), so the file's size cannot be checked; map the "
                "file again instead")
        if offset + new_size > info[2]:
            raise InvalidArgument(
                f"new_size={new_size}: offset {offset} + {new_size} is past the end of the "
                f"file (fd {fd} holds {info[2]} bytes): touching a page past the end kills "
                "the process with SIGBUS; grow the file first (MemFd.truncate / "
                "os.ftruncate)")

    def close(self) -> None:
        """munmap. Refused with BufferError while views exist; closing twice is fine."""
        if self._buf is None:
            return
        self._refuse_if_exported("close")
        self._finalizer.detach()
        self._buf = None
        check(raw.munmap(self._address, self._size), "munmap", address=self._address)


def _check_prot(prot: Any) -> Prot:
    return Prot(as_flags(prot, "prot", known=sum(Prot), hi=I32_MAX))


def _check_adoptable(address: int, size: int, prot: Prot) -> None:
    """The checks of ``Mapping(address, size)``: mapped whole, with ``prot``'s permissions."""
    from .proc._maps import maps

    check_mapped(address, size, f"Mapping(address={address:#x}, size={size:#x})")
    end = _round_up(address + size, PAGE_SIZE)
    need = int(prot) & 7  # PROT_READ/WRITE/EXEC are maps' r/w/x bits
    for vma in maps():
        if vma.start < end and address < vma.end and int(vma.prot) & need != need:
            have = flag_text(Prot(int(vma.prot) & 7))
            raise InvalidArgument(
                f"Mapping(address={address:#x}, size={size:#x}, prot={flag_text(prot)}): the "
                f"mapping at {vma.start:#x}..{vma.end:#x} is only {have}; pass the permissions "
                "it has (or mprotect it first)", address=max(address, vma.start))


def _userfaultfd_registered(start: int, end: int) -> bool:
    """True if a userfaultfd handles faults somewhere in ``[start, end)``: its faults are its
    business (UFFD_USER_MODE_ONLY refuses the kernel-mode faults of MADV_POPULATE, the
    SIGBUS feature raises SIGBUS on purpose), so such ranges are touched by plain access."""
    from .proc._smaps import smaps

    return any(s.start < end and start < s.end and s.vm_flags & {"um", "uw", "ui"}
               for s in smaps())


def _pool_dry(page_size: int, pages: int, what: str) -> HugePagesUnavailable:
    from ._hugepools import pools

    pool = next((p for p in pools() if p.node is None and p.size == page_size), None)
    kb = page_size // 1024
    free = pool.free if pool is not None else 0
    held = f"{free} free of {pool.total}" if pool is not None else "no pages"
    return HugePagesUnavailable(
        f"{what}: the {kb} kB huge page pool cannot supply the {pages} page(s) it needs "
        f"({held}; a noreserve mapping reserved none at mmap time, so a plain access would "
        f"have been killed by SIGBUS); reserve pages first: "
        f"/sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages",
        obtained=free, wanted=pages, size=page_size)
