"""/proc/<pid>/maps: one :class:`Vma` per mapping."""
from __future__ import annotations

import enum
import functools
import operator
import os
from collections.abc import Sequence
from itertools import repeat
from typing import (Any, Generic, Iterable, Iterator, NamedTuple, Protocol, SupportsIndex, TypeVar,
                    cast, overload)

import numpy as np

from .._records import hex_fields
from .._raw import procmaps as _raw
from .._raw.mapping import Prot  # the one PROT_* enum; the parser's rwx bits are its values
from ._cparse import Parsed, parse
from ._read import pid_path, read_bytes

__all__ = ["Prot", "VmaKind", "Device", "Vma", "VmaList", "KIND_CODES", "maps", "parse_maps"]


class VmaKind(enum.Enum):
    """What backs a mapping, from its name column."""

    FILE = "file"
    ANONYMOUS = "anonymous"
    HEAP = "heap"
    STACK = "stack"
    THREAD_STACK = "thread_stack"   # [stack:<tid>], Linux 3.4 to 4.4
    VDSO = "vdso"
    VVAR = "vvar"                   # [vvar], and [vvar_vclock] since 6.13
    VSYSCALL = "vsyscall"
    ANON_NAMED = "anon_named"       # [anon:<name>] from PR_SET_VMA_ANON_NAME
    ANON_SHMEM = "anon_shmem"       # [anon_shmem:<name>]
    OTHER = "other"                 # [uprobes], anon_inode:..., future pseudo names


class Device(NamedTuple):
    major: int
    minor: int


@hex_fields("start", "end", "offset")
class Vma(NamedTuple):
    """One mapping. ``path`` is "" for anonymous memory, the ``[...]`` name for pseudo ones."""

    start: int
    end: int
    prot: Prot
    shared: bool        # MAP_SHARED ('s'); False is private copy-on-write ('p')
    offset: int         # file offset in bytes
    device: Device
    inode: int
    path: str
    kind: VmaKind
    deleted: bool       # the file was unlinked (the kernel's " (deleted)" suffix)

    @property
    def size(self) -> int:
        return self.end - self.start


# The C parser's rwx bits are the PROT_* values (1/2/4 on every Linux architecture).
assert (_raw.PROT_READ, _raw.PROT_WRITE, _raw.PROT_EXEC) == (Prot.READ, Prot.WRITE, Prot.EXEC)
_PROT = tuple(Prot(i & 7) for i in range(8))
# Index = the C parser's PMPROC_KIND_* code (tests/test_proc_columns.py checks the order).
KIND_CODES: tuple[VmaKind, ...] = (
    VmaKind.ANONYMOUS, VmaKind.FILE, VmaKind.HEAP, VmaKind.STACK, VmaKind.THREAD_STACK,
    VmaKind.VDSO, VmaKind.VVAR, VmaKind.VSYSCALL, VmaKind.ANON_NAMED, VmaKind.ANON_SHMEM,
    VmaKind.OTHER,
)
_FILE = _raw.KIND_FILE


def _objects(items: Iterable[Any]) -> np.ndarray:
    """An object array of ``items`` as they are (np.array would unpack tuples)."""
    items = list(items)
    out = np.empty(len(items), object)
    for i, item in enumerate(items):
        out[i] = item
    return out


# Code -> object tables: ``_PROT_OBJ[codes].tolist()`` maps a whole column in C.
_PROT_OBJ = _objects(_PROT)
_KIND_OBJ = _objects(KIND_CODES)
_C64_START, _C64_END = _raw.C64_START, _raw.C64_END
_C64_OFFSET, _C64_INODE = _raw.C64_OFFSET, _raw.C64_INODE
_C32_MAJOR, _C32_MINOR = _raw.C32_MAJOR, _raw.C32_MINOR
_C32_NAME_OFF, _C32_NAME_LEN = _raw.C32_NAME_OFF, _raw.C32_NAME_LEN
_C32_NAME_ID = _raw.C32_NAME_ID
_C8_PROT, _C8_BITS, _C8_KIND = _raw.C8_PROT, _raw.C8_BITS, _raw.C8_KIND
_SHARED, _DELETED = _raw.SHARED, _raw.DELETED


@functools.lru_cache(maxsize=8192)
def _path(raw: bytes, file: bool) -> str:
    """A name column as str; cached, as most names repeat."""
    # The kernel octal-escapes only newlines in paths (so a literal "\012" is ambiguous).
    return os.fsdecode(raw.replace(b"\\012", b"\n") if file else raw)


class _Devices(dict[int, Device]):
    def __missing__(self, dev: int) -> Device:
        d = self[dev] = Device(dev >> 32, dev & 0xFFFFFFFF)
        return d


_devices = _Devices()


# The record type: VmaList builds Vma, SmapsList (a subclass) builds Smaps, which is not a
# Vma (a NamedTuple cannot extend another), so the element type has to be a parameter.
class _Record(Protocol):
    @property
    def path(self) -> str: ...


_R = TypeVar("_R", bound=_Record)


class VmaList(Sequence[_R], Generic[_R]):
    """The mappings of one maps file: a read-only sequence of :class:`Vma`, plus columns.

    Parsing fills numpy columns only; a record is built when it is first indexed or iterated
    and then kept, so ``maps()`` costs little more than reading the file. Bulk users can skip
    records entirely: ``starts``, ``ends``, ``sizes``, ``offsets``, ``inodes``, ``majors``,
    ``minors``, ``prots`` (:class:`Prot` bits), ``shared``, ``deleted`` and ``kinds`` (codes:
    ``KIND_CODES[code]`` is the :class:`VmaKind`) are read-only arrays, one entry per mapping.
    Compares equal to a list of the same records.
    """

    __slots__ = ("_p", "_recs", "_full")

    def __init__(self, parsed: Parsed) -> None:
        self._p = parsed
        self._recs: list[_R | None] | None = None   # built records, None until asked for
        self._full: list[_R] | None = None  # every record, once all are built

    def __len__(self) -> int:
        return self._p.n

    @overload
    def __getitem__(self, i: int) -> _R: ...
    @overload
    def __getitem__(self, i: slice) -> list[_R]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> _R | list[_R]:
        if isinstance(i, slice):
            return self._all()[i]
        n = self._p.n
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{type(self).__name__} index out of range")
        recs = self._recs
        if recs is None:
            recs = self._recs = [None] * n
        r = recs[i]
        if r is None:
            r = recs[i] = self._build(i)
        return r

    def __iter__(self) -> Iterator[_R]:
        return iter(self._all())

    def __reversed__(self) -> Iterator[_R]:
        return reversed(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VmaList):
            return self is other or self._all() == other._all()
        if isinstance(other, list):
            return self._all() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._all()!r})"

    def _all(self) -> list[_R]:
        """Every record, built column-wise (the loops run in C) and cached."""
        if self._full is None:
            built = self._build_all()
            if self._recs is not None:   # keep records already handed out
                built = [a if a is not None else b for a, b in zip(self._recs, built)]
            # __getitem__ keeps reading _recs: the same list, now without holes.
            self._recs, self._full = cast("list[_R | None]", built), built
        return self._full

    def _vma_fields(self, i: int) -> tuple[Any, ...]:
        p = self._p
        c64, c32, c8 = p.c64, p.c32, p.c8
        bits = c8.item(_C8_BITS, i)
        kind = c8.item(_C8_KIND, i)
        off = c32.item(_C32_NAME_OFF, i)
        raw = p.data[off:off + c32.item(_C32_NAME_LEN, i)]
        return (c64.item(_C64_START, i), c64.item(_C64_END, i), _PROT[c8.item(_C8_PROT, i)],
                bool(bits & _SHARED), c64.item(_C64_OFFSET, i),
                _devices[c32.item(_C32_MAJOR, i) << 32 | c32.item(_C32_MINOR, i)],
                c64.item(_C64_INODE, i), _path(raw, kind == _FILE), KIND_CODES[kind],
                bool(bits & _DELETED))

    # VmaList itself holds Vma; a subclass with another record type overrides both builders.
    def _build(self, i: int) -> _R:
        return tuple.__new__(Vma, self._vma_fields(i))  # type: ignore[return-value]

    def _vma_columns(self) -> list[list[Any]]:
        """The Vma fields as columns (one list per field), for zip in C.

        Every object column is a lookup of codes in a small object array (numpy's take runs
        in C): Prot and VmaKind by code, Device by distinct device number, and paths by the
        parser's name id, so each distinct name is decoded once, not once per mapping.
        """
        p = self._p
        n = p.n
        c32, c8 = p.c32, p.c8
        ids = c32[_C32_NAME_ID]
        own = np.flatnonzero(ids == np.arange(n, dtype=ids.dtype))   # first of each name
        data = p.data
        offs = c32[_C32_NAME_OFF, own]
        names = np.empty(n, object)
        names[own] = [_path(data[o:e], k == _FILE) for o, e, k in
                      zip(offs.tolist(), (offs + c32[_C32_NAME_LEN, own]).tolist(),
                          c8[_C8_KIND, own].tolist())]
        devs = c32[_C32_MAJOR].astype(np.uint64) << np.uint64(32) | c32[_C32_MINOR]
        distinct, which = np.unique(devs, return_inverse=True)
        devices = _objects(map(_devices.__getitem__, distinct.tolist()))
        bits = c8[_C8_BITS]
        return [p.c64[_C64_START].tolist(), p.c64[_C64_END].tolist(),
                _PROT_OBJ[c8[_C8_PROT]].tolist(),
                (bits & _SHARED).astype(bool).tolist(), p.c64[_C64_OFFSET].tolist(),
                devices[which].tolist(), p.c64[_C64_INODE].tolist(), names[ids].tolist(),
                _KIND_OBJ[c8[_C8_KIND]].tolist(), (bits & _DELETED).astype(bool).tolist()]

    def _build_all(self) -> list[_R]:
        return list(map(tuple.__new__, repeat(Vma), zip(*self._vma_columns())))  # type: ignore[arg-type]

    # Columns: read-only numpy views onto the parser's output.
    starts = property(lambda self: self._p.c64[_C64_START], doc="start addresses (uint64)")
    ends = property(lambda self: self._p.c64[_C64_END], doc="end addresses, exclusive (uint64)")
    offsets = property(lambda self: self._p.c64[_C64_OFFSET], doc="file offsets (uint64)")
    inodes = property(lambda self: self._p.c64[_C64_INODE], doc="inode numbers (uint64)")
    majors = property(lambda self: self._p.c32[_C32_MAJOR], doc="device majors (uint32)")
    minors = property(lambda self: self._p.c32[_C32_MINOR], doc="device minors (uint32)")
    prots = property(lambda self: self._p.c8[_C8_PROT], doc="Prot bits (uint8)")
    kinds = property(lambda self: self._p.c8[_C8_KIND], doc="VmaKind codes (uint8)")

    @property
    def sizes(self) -> np.ndarray:
        """Mapping sizes in bytes (uint64)."""
        sizes: np.ndarray = self.ends - self.starts
        return sizes

    @property
    def shared(self) -> np.ndarray:
        """True where the mapping is MAP_SHARED."""
        shared: np.ndarray = (self._p.c8[_C8_BITS] & _SHARED).astype(bool)
        return shared

    @property
    def deleted(self) -> np.ndarray:
        """True where the backing file was unlinked."""
        deleted: np.ndarray = (self._p.c8[_C8_BITS] & _DELETED).astype(bool)
        return deleted

    @property
    def paths(self) -> list[str]:
        """The ``path`` of every mapping."""
        return [v.path for v in self._all()]


def parse_maps(data: bytes, path: str = "maps") -> VmaList[Vma]:
    """Parse the text of a maps file."""
    return VmaList(parse(data, False, path))


def maps(pid: int | None = None, proc_root: str = "/proc") -> VmaList[Vma]:
    """The mappings of process ``pid`` (default: this process), in address order."""
    path = pid_path(proc_root, pid, "maps")
    return parse_maps(read_bytes(path, pid), path)
