"""/proc/<pid>/smaps and smaps_rollup: per-mapping memory accounting, every field kept."""
from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterable
from itertools import repeat
from typing import Any, NamedTuple, SupportsIndex, overload

import numpy as np

from .._records import hex_fields
from .._raw import procmaps as _raw
from ..errors import ParseError
from ._cparse import Parsed, parse
from ._read import is_dir, pid_path, read_bytes
from ._maps import Device, Prot, Vma, VmaKind, VmaList

__all__ = ["Smaps", "SmapsList", "smaps", "smaps_rollup", "parse_smaps", "memory_totals"]


@hex_fields("start", "end", "offset")
class Smaps(NamedTuple):
    """A mapping (the :class:`Vma` fields) and all its smaps fields.

    ``values[i]`` is the field named ``keys[i]``, kB values in bytes (``THPeligible`` and
    ``ProtectionKey`` are plain numbers); keys newer than physmem are kept too. ``s["Rss"]``
    or ``s.fields`` read them by name; common ones are attributes (``rss``, ``pss``...).
    """

    start: int
    end: int
    prot: Prot
    shared: bool
    offset: int
    device: Device
    inode: int
    path: str
    kind: VmaKind
    deleted: bool
    keys: tuple[str, ...]
    values: tuple[int, ...]
    vm_flags: frozenset[str]

    @overload
    def __getitem__(self, key: str) -> int: ...
    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...

    def __getitem__(self, key: str | SupportsIndex | slice) -> Any:
        if isinstance(key, str):
            return self._field(key)
        return tuple.__getitem__(self, key)

    # mypy types ``self["Rss"]`` on a NamedTuple from its fields, never from __getitem__,
    # so the methods below look fields up through this instead.
    def _field(self, key: str) -> int:
        try:
            return self.values[self.keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    @overload
    def get(self, key: str, default: int) -> int: ...
    @overload
    def get(self, key: str, default: None = None) -> int | None: ...

    def get(self, key: str, default: int | None = None) -> int | None:
        try:
            return self._field(key)
        except KeyError:
            return default

    @property
    def fields(self) -> dict[str, int]:
        return dict(zip(self.keys, self.values))

    @property
    def vma(self) -> Vma:
        return Vma(*self[:10])

    # A NamedTuple body may only hold fields and defs, not ``x = property(...)``.
    @property
    def size(self) -> int:
        return self._field("Size")

    @property
    def rss(self) -> int:
        return self._field("Rss")

    @property
    def pss(self) -> int:
        return self._field("Pss")

    @property
    def swap(self) -> int:
        return self.get("Swap", 0)

    @property
    def anonymous(self) -> int:
        return self.get("Anonymous", 0)

    @property
    def thp_eligible(self) -> bool | None:
        return _opt_bool(self.get("THPeligible"))

    @property
    def protection_key(self) -> int | None:
        return self.get("ProtectionKey")


def _opt_bool(v: int | None) -> bool | None:
    return None if v is None else bool(v)


@functools.lru_cache(maxsize=1024)
def _flagset(raw: bytes) -> frozenset[str]:
    return frozenset(raw.decode("ascii", "replace").split())


_C64_PRESENT, _C64_VMFLAGS = _raw.C64_PRESENT, _raw.C64_VMFLAGS
_C32_FLAGS_OFF, _C32_FLAGS_LEN = _raw.C32_FLAGS_OFF, _raw.C32_FLAGS_LEN
_C8_BITS, _RAWFLAGS = _raw.C8_BITS, _raw.RAWFLAGS


class SmapsList(VmaList[Smaps]):
    """The mappings of one smaps file: a read-only sequence of :class:`Smaps`, plus columns.

    Besides the :class:`VmaList` columns: ``keys`` (every key met, in file order),
    ``column(key)`` (that field of every mapping in bytes, 0 where a mapping lacks it),
    ``values`` (mappings x keys), ``has_key(key)``, ``vm_flag_names`` and ``vm_flags_mask``
    (bit k set: flag ``vm_flag_names[k]``) or simply ``has_vm_flag(name)``.
    """

    __slots__ = ("_masks", "_flagsets", "_values")

    def __init__(self, parsed: Parsed) -> None:
        super().__init__(parsed)
        # Parsed.values is None only for maps; parse(..., True) always fills it.
        assert parsed.values is not None
        self._values: np.ndarray = parsed.values
        self._masks: dict[int, tuple[tuple[str, ...], list[int]]] = {}
        self._flagsets: dict[int, frozenset[str]] = {}

    @property
    def keys(self) -> tuple[str, ...]:
        """Every smaps key of the file, in the order the kernel prints them."""
        return self._p.keys

    @property
    def values(self) -> np.ndarray:
        """All fields as a read-only (mappings x keys) uint64 array; 0 where a key is absent."""
        return self._values.T

    def column(self, key: str) -> np.ndarray:
        """Field ``key`` of every mapping (uint64, bytes for kB fields; 0 where absent)."""
        try:
            column: np.ndarray = self._values[self._p.keys.index(key)]
            return column
        except ValueError:
            raise KeyError(key) from None

    def has_key(self, key: str) -> np.ndarray:
        """True where the mapping has field ``key`` (False for every row if none has)."""
        if key not in self._p.keys:
            return np.zeros(self._p.n, bool)
        bit = np.uint64(1 << self._p.keys.index(key))
        present: np.ndarray = (self._p.c64[_C64_PRESENT] & bit) != 0
        return present

    @property
    def vm_flag_names(self) -> tuple[str, ...]:
        """VmFlags names met in the file; name k is bit k of ``vm_flags_mask``."""
        return self._p.flag_names

    @property
    def vm_flags_mask(self) -> np.ndarray:
        """VmFlags of each mapping as a uint64 bitmask over ``vm_flag_names``.

        Rows whose flags did not fit 64 names are 0 here; ``has_vm_flag`` handles them.
        """
        mask: np.ndarray = self._p.c64[_C64_VMFLAGS]
        return mask

    def has_vm_flag(self, name: str) -> np.ndarray:
        """True where VmFlags holds ``name``."""
        p = self._p
        out = np.zeros(p.n, bool)
        if name in p.flag_names:
            out = (p.c64[_C64_VMFLAGS] & np.uint64(1 << p.flag_names.index(name))) != 0
        for i in np.flatnonzero(p.c8[_C8_BITS] & _RAWFLAGS).tolist():
            out[i] = name in self._vm_flags(i)
        return out

    def _key_cols(self, mask: int) -> tuple[tuple[str, ...], list[int]]:
        kc = self._masks.get(mask)
        if kc is None:
            cols = [k for k in range(len(self._p.keys)) if mask >> k & 1]
            kc = self._masks[mask] = (tuple(self._p.keys[k] for k in cols), cols)
        return kc

    def _vm_flags(self, i: int) -> frozenset[str]:
        p = self._p
        if p.c8.item(_C8_BITS, i) & _RAWFLAGS:
            off = p.c32.item(_C32_FLAGS_OFF, i)
            return _flagset(p.data[off:off + p.c32.item(_C32_FLAGS_LEN, i)])
        mask = p.c64.item(_C64_VMFLAGS, i)
        fs = self._flagsets.get(mask)
        if fs is None:
            fs = self._flagsets[mask] = frozenset(
                name for k, name in enumerate(p.flag_names) if mask >> k & 1)
        return fs

    def _build(self, i: int) -> Smaps:
        names, cols = self._key_cols(self._p.c64.item(_C64_PRESENT, i))
        values = tuple(self._values[cols, i].tolist())
        return tuple.__new__(Smaps, self._vma_fields(i) + (names, values, self._vm_flags(i)))

    def _build_all(self) -> list[Smaps]:
        p = self._p
        if not p.n:
            return []
        masks = p.c64[_C64_PRESENT]
        first = masks.item(0)
        keycol: Iterable[tuple[str, ...]]
        rows: Iterable[tuple[int, ...]]
        if (masks == first).all():
            # Every mapping has the same keys (the normal case): one column selection for all.
            names, cols = self._key_cols(first)
            keycol = repeat(names)
            # struct unpacks each row of the (mappings x keys) copy straight into its tuple
            # in C: no list per column and no zip over them.
            rows = (struct.iter_unpack(f"={len(cols)}Q", np.ascontiguousarray(
                self._values[cols].T, np.uint64).data) if cols else repeat(()))
        else:
            keylist: list[tuple[str, ...]] = []
            rowlist: list[tuple[int, ...]] = []
            for i, mask in enumerate(masks.tolist()):
                names, cols = self._key_cols(mask)
                keylist.append(names)
                rowlist.append(tuple(self._values[cols, i].tolist()))
            keycol, rows = keylist, rowlist
        if (p.c8[_C8_BITS] & _RAWFLAGS).any():
            flags = list(map(self._vm_flags, range(p.n)))
        else:
            # Few distinct flag words per file: build each set once, look the rest up.
            words = p.c64[_C64_VMFLAGS].tolist()
            for w in set(words).difference(self._flagsets):
                self._flagsets[w] = frozenset(
                    name for k, name in enumerate(p.flag_names) if w >> k & 1)
            flags = list(map(self._flagsets.__getitem__, words))
        # One zip over every column: the row tuples are built in C, with no concatenation.
        return list(map(tuple.__new__, repeat(Smaps),
                        zip(*self._vma_columns(), keycol, rows, flags)))


def parse_smaps(data: bytes, path: str = "smaps") -> SmapsList:
    """Parse the text of an smaps (or smaps_rollup) file."""
    return SmapsList(parse(data, True, path))


def smaps(pid: int | None = None, proc_root: str = "/proc") -> SmapsList:
    """Every mapping of ``pid`` with all its smaps fields, in address order."""
    path = pid_path(proc_root, pid, "smaps")
    return parse_smaps(read_bytes(path, pid), path)


def smaps_rollup(pid: int | None = None, proc_root: str = "/proc") -> dict[str, int]:
    """The kernel's sums over all mappings (Rss, Pss, Pss_Anon, Swap...), in bytes.

    Empty for a process without memory (a kernel thread or zombie).
    """
    path = pid_path(proc_root, pid, "smaps_rollup")
    try:
        data = read_bytes(path, pid)
    except ProcessLookupError:
        # The kernel answers ESRCH for a process without an mm (kernel thread, zombie).
        if is_dir(os.path.dirname(path)):
            return {}
        raise
    # One record, so every key met is that record's: its column goes straight into the
    # dict, without the records a SmapsList builds (half the parse of this small file).
    p = parse(data, True, path)
    if p.n > 1:
        raise ParseError("smaps_rollup holds more than one record", path=path)
    if not p.n:
        return {}
    assert p.values is not None  # parse(..., True) fills it
    return dict(zip(p.keys, p.values[:, 0].tolist()))


_NOT_SUMMED = frozenset({"KernelPageSize", "MMUPageSize", "THPeligible", "ProtectionKey"})


def memory_totals(pid: int | None = None, proc_root: str = "/proc") -> dict[str, int]:
    """Process-wide memory totals from the cheapest file that has them.

    smaps_rollup (Linux 4.14+) is one record summed in the kernel; without it, smaps is
    summed here.
    """
    try:
        return smaps_rollup(pid, proc_root)
    except FileNotFoundError:
        if pid is not None and not is_dir(f"{proc_root}/{pid}"):
            raise
    totals: dict[str, int] = {}
    for s in smaps(pid, proc_root):
        for k, val in zip(s.keys, s.values):
            if k not in _NOT_SUMMED:
                totals[k] = totals.get(k, 0) + val
    return totals


