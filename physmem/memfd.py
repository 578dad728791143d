"""Anonymous files in RAM (memfd_create), optionally on huge pages, with file seals."""
from __future__ import annotations

import enum
import errno as _errno
import os
from typing import Any

from ._args import (I32_MAX, I64_MAX, as_bool, as_buffer, as_flags, as_multiple, as_nonneg,
                    as_positive, as_text, flag_text)
from ._fdfile import FdFile
from ._raw import SINCE, check, missing, older_than
from ._raw import mapping as raw
from .errors import InvalidArgument, error_from_errno, translate_os_errors
from .mapping import PAGE_SIZE, Mapping, Prot, _check_page_size, _hugetlb_flags
from .proc._maps import maps

__all__ = ["MemFd", "Seal"]


class Seal(enum.IntFlag):
    """File seals (``F_SEAL_*``): each forbids a kind of change for good."""

    SEAL = raw.F_SEAL_SEAL
    SHRINK = raw.F_SEAL_SHRINK
    GROW = raw.F_SEAL_GROW
    WRITE = raw.F_SEAL_WRITE
    FUTURE_WRITE = raw.F_SEAL_FUTURE_WRITE
    EXEC = raw.F_SEAL_EXEC




class MemFd(FdFile):
    """A memfd: an anonymous file living in RAM (tmpfs, or hugetlbfs with ``page_size``).

    ``MemFd(name, size=0, page_size=None, cloexec=True, sealing=True, noexec=False)``;
    ``noexec`` creates it with MFD_NOEXEC_SEAL (never executable, Linux 6.3).
    """

    def __init__(self, name: str, *, size: int = 0, page_size: int | None = None,
                 cloexec: bool = True, sealing: bool = True, noexec: bool = False) -> None:
        name = as_text(name, "name", max_bytes=249, empty=True)
        size = as_nonneg(size, "size", hi=I64_MAX)
        self._page_size = _check_page_size(page_size)
        cloexec = as_bool(cloexec, "cloexec")
        sealing = as_bool(sealing, "sealing")
        noexec = as_bool(noexec, "noexec")
        flags = 0
        if cloexec:
            flags |= raw.MFD_CLOEXEC
        if sealing:
            flags |= raw.MFD_ALLOW_SEALING
        if self._page_size != PAGE_SIZE:
            flags |= raw.MFD_HUGETLB | _hugetlb_flags(self._page_size, raw.MFD_HUGE_SHIFT)
        if noexec:
            flags |= raw.MFD_NOEXEC_SEAL
        ret = raw.memfd_create(name.encode(), flags)
        if ret == -_errno.EINVAL and noexec and older_than("memfd_create flag MFD_NOEXEC_SEAL"):
            raise missing("memfd_create flag MFD_NOEXEC_SEAL", err=_errno.EINVAL)
        hugetlb_sealing = "memfd_create with MFD_HUGETLB | MFD_ALLOW_SEALING"
        if ret == -_errno.EINVAL and sealing and self._page_size != PAGE_SIZE \
                and older_than(hugetlb_sealing):
            raise missing(hugetlb_sealing, err=_errno.EINVAL)
        self._fd = check(ret, f"memfd_create({name!r})", since="syscall memfd_create")
        self.name = name
        if size:
            try:
                self.truncate(size)
            except BaseException:
                self.close()
                raise

    # ---- attributes --------------------------------------------------------------------

    @property
    def fd(self) -> int:
        return self._checked_fd()

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def size(self) -> int:
        self._require_open()
        return os.fstat(self._fd).st_size

    @property
    def seals(self) -> Seal:
        """The seals in force (F_GET_SEALS), always a :class:`Seal` (``Seal(0)`` for none)."""
        self._require_open()
        return Seal(check(raw.get_seals(self._fd), "F_GET_SEALS"))

    def __repr__(self) -> str:
        if self.closed:
            return f"<MemFd {self.name!r} closed>"
        return (f"<MemFd {self.name!r} fd={self._fd} size={self.size} "
                f"seals={flag_text(self.seals)}>")

    def _require_open(self) -> None:
        self._checked_fd()

    # ---- operations --------------------------------------------------------------------

    def truncate(self, size: int) -> None:
        """Set the file's size (ftruncate); refused with PermissionDenied under GROW/SHRINK
        seals. On hugetlbfs the size must be a multiple of the page size.

        Shrinking is refused (InvalidArgument) while a mapping of the file in this process
        reaches past the new end: touching a page there would kill the process with SIGBUS.
        Other processes mapping the file are not visible here; seal SHRINK to protect them.
        """
        self._require_open()
        size = as_multiple(size, "size", self._page_size, hi=I64_MAX)
        if size < self.size:
            self._refuse_shrink_under_mappings(size)
        ret = raw.ftruncate(self._fd, size)
        hint = f"the memfd is sealed ({flag_text(self.seals)})" if ret == -_errno.EPERM else None
        if ret < 0:
            raise error_from_errno(-ret, f"ftruncate memfd {self.name!r} to {size}", hint=hint)

    def _refuse_shrink_under_mappings(self, size: int) -> None:
        # This process's mappings of the file, from /proc/self/maps: it sees every mapping,
        # also those made with mmap.mmap or by a Mapping object already dropped.
        st = os.fstat(self._fd)
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        # The page holding the new last byte stays; only pages wholly past it fault.
        keep = -(-size // self._page_size) * self._page_size
        for vma in maps():
            if vma.inode == st.st_ino and tuple(vma.device) == dev \
                    and vma.offset + vma.size > keep:
                raise InvalidArgument(
                    f"size={size}: memfd {self.name!r} is mapped at {vma.start:#x} up to file "
                    f"offset {vma.offset + vma.size}; shrinking it below that would kill the "
                    "process with SIGBUS on the next access there; close that Mapping first")

    def add_seals(self, seals: Seal | int) -> None:
        """Add seals (F_ADD_SEALS). WRITE is refused (EBUSY) while writable shared mappings
        exist; FUTURE_WRITE lets existing mappings keep writing."""
        self._require_open()
        seals = Seal(as_flags(seals, "seals", known=sum(Seal), hi=I32_MAX))
        ret = raw.add_seals(self._fd, int(seals))
        if ret == -_errno.EINVAL:
            for seal in Seal:
                feature = f"file seal F_SEAL_{seal.name}"
                if seals & seal and feature in SINCE and older_than(feature):
                    raise missing(feature, err=_errno.EINVAL)
        hint = None
        if ret == -_errno.EBUSY:
            hint = "writable shared mappings of it exist; close them or seal FUTURE_WRITE"
        elif ret == -_errno.EPERM:
            hint = "the memfd is sealed against new seals (SEAL), or was made with sealing=False"
        if ret < 0:
            raise error_from_errno(-ret, f"add seals {flag_text(seals)} to memfd {self.name!r}",
                                   hint=hint)

    def map(self, size: int | None = None, offset: int = 0, *, shared: bool = True,
            prot: Prot | int = Prot.READ | Prot.WRITE, populate: bool = False,
            locked: bool = False, address: int | None = None) -> Mapping:
        """mmap ``size`` bytes (default: the whole file after ``offset``).

        ``offset + size`` must lie within the file (touching a page past its end would kill
        the process with SIGBUS): :meth:`truncate` it to grow it first.
        """
        self._require_open()
        offset = as_nonneg(offset, "offset", hi=I64_MAX)
        shared = as_bool(shared, "shared")
        populate = as_bool(populate, "populate")
        locked = as_bool(locked, "locked")
        if size is None:
            size = self.size - offset
            if size <= 0:
                raise InvalidArgument(
                    f"the memfd holds {self.size} bytes, nothing to map after offset "
                    f"{offset}; truncate() it first or pass size")
        return Mapping.from_fd(self._fd, size, offset, shared=shared, prot=prot,
                               populate=populate, locked=locked, address=address,
                               page_size=self._page_size)

    def punch_hole(self, offset: int, length: int) -> None:
        """Free the pages of ``[offset, offset+length)``; the size stays (they read as 0)."""
        self._require_open()
        offset = as_nonneg(offset, "offset", hi=I64_MAX)
        length = as_positive(length, "length", hi=I64_MAX)
        ret = raw.fallocate(self._fd, raw.FALLOC_FL_PUNCH_HOLE | raw.FALLOC_FL_KEEP_SIZE,
                               offset, length)
        hint = "the memfd is sealed against writes" if ret == -_errno.EPERM else None
        if ret < 0:
            raise error_from_errno(-ret, f"punch hole at {offset} ({length} bytes)", hint=hint)

    def write(self, data: Any, offset: int = 0) -> int:
        """pwrite ``data`` (any bytes-like object) at ``offset``; returns the bytes written."""
        self._require_open()
        offset = as_nonneg(offset, "offset", hi=I64_MAX)
        data = as_buffer(data, "data")
        try:
            return os.pwrite(self._fd, data, offset)
        except OSError as exc:
            raise error_from_errno(exc.errno or _errno.EIO, f"write to memfd {self.name!r}",
                                   hint="the memfd is sealed" if exc.errno == _errno.EPERM
                                   else None) from exc

    def read(self, length: int, offset: int = 0) -> bytes:
        """pread up to ``length`` bytes at ``offset``: fewer at the end of the file, none
        past it."""
        self._require_open()
        length = as_nonneg(length, "length", hi=I64_MAX)
        offset = as_nonneg(offset, "offset", hi=I64_MAX)
        # Never allocate more than the file can return (os.pread allocates length first).
        length = min(length, max(0, self.size - offset))
        with translate_os_errors(f"read from memfd {self.name!r}"):
            return os.pread(self._fd, length, offset)

    def __getstate__(self) -> Any:  # an fd cannot be pickled
        raise TypeError("MemFd cannot be pickled; pass its fd to another process instead")

