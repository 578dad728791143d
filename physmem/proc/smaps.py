"""/proc/<pid>/smaps and smaps_rollup: per-mapping memory accounting, every field kept."""
from __future__ import annotations

import os
from itertools import repeat
from typing import NamedTuple

from ..errors import ParseError
from ._cparse import parse
from ._read import pid_path, read_bytes
from .maps import Device, Prot, Vma, VmaKind, build_vmas

__all__ = ["Smaps", "smaps", "smaps_rollup", "parse_smaps", "memory_totals"]


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

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            try:
                return self.values[self.keys.index(key)]
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def get(self, key: str, default: int | None = None) -> int | None:
        try:
            return self[key]
        except KeyError:
            return default

    @property
    def fields(self) -> dict[str, int]:
        return dict(zip(self.keys, self.values))

    @property
    def vma(self) -> Vma:
        return Vma(*self[:10])

    size = property(lambda self: self["Size"])
    rss = property(lambda self: self["Rss"])
    pss = property(lambda self: self["Pss"])
    swap = property(lambda self: self.get("Swap", 0))
    anonymous = property(lambda self: self.get("Anonymous", 0))
    thp_eligible = property(lambda self: _opt_bool(self.get("THPeligible")))
    protection_key = property(lambda self: self.get("ProtectionKey"))


def _opt_bool(v: int | None) -> bool | None:
    return None if v is None else bool(v)


def _flagset(raw: bytes) -> frozenset[str]:
    return frozenset(raw.decode("ascii", "replace").split())


def parse_smaps(data: bytes, path: str = "smaps") -> list[Smaps]:
    """Parse the text of an smaps (or smaps_rollup) file."""
    p = parse(data, True, path)
    if not len(p.vmas):
        return []
    v = p.vmas
    present = v["present"]
    keys = p.keys
    masks = set(present.tolist())
    if len(masks) == 1:
        # Every mapping has the same keys (the normal case): one column selection for all.
        mask = masks.pop()
        cols = [k for k in range(len(keys)) if mask >> k & 1]
        names = tuple(keys[k] for k in cols)
        keycol = repeat(names)
        # zip over columns builds the row tuples in C.
        rows = zip(*p.values[:, cols].T.tolist()) if cols else repeat(())
    else:
        keycol, rows = [], []
        for mask, row in zip(present.tolist(), p.values.tolist()):
            cols = [k for k in range(len(keys)) if mask >> k & 1]
            keycol.append(tuple(keys[k] for k in cols))
            rows.append(tuple(row[k] for k in cols))
    sets = [_flagset(raw) for raw in p.flagsets] + [frozenset()]
    ids = v["flags_id"].tolist()
    if len(p.flagsets) == 256:  # table overflowed: slice the rest one by one
        offs, lens = v["flags_off"].tolist(), v["flags_len"].tolist()
        flags = [sets[i] if i < 256 else _flagset(data[o:o + n]) if n else sets[-1]
                 for i, o, n in zip(ids, offs, lens)]
    else:
        flags = [sets[i] if i < 256 else sets[-1] for i in ids]
    vmas = build_vmas(p)
    return list(map(tuple.__new__, repeat(Smaps),
                    (vma + extra for vma, extra in zip(vmas, zip(keycol, rows, flags)))))


def smaps(pid: int | None = None, proc_root: str = "/proc") -> list[Smaps]:
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
        if os.path.isdir(os.path.dirname(path)):
            return {}
        raise
    records = parse_smaps(data, path)
    if len(records) > 1:
        raise ParseError("smaps_rollup holds more than one record", path=path)
    return records[0].fields if records else {}


_NOT_SUMMED = frozenset({"KernelPageSize", "MMUPageSize", "THPeligible", "ProtectionKey"})


def memory_totals(pid: int | None = None, proc_root: str = "/proc") -> dict[str, int]:
    """Process-wide memory totals from the cheapest file that has them.

    smaps_rollup (Linux 4.14+) is one record summed in the kernel; without it, smaps is
    summed here.
    """
    try:
        return smaps_rollup(pid, proc_root)
    except FileNotFoundError:
        if pid is not None and not os.path.isdir(f"{proc_root}/{pid}"):
            raise
    totals: dict[str, int] = {}
    for s in smaps(pid, proc_root):
        for k, val in zip(s.keys, s.values):
            if k not in _NOT_SUMMED:
                totals[k] = totals.get(k, 0) + val
    return totals


