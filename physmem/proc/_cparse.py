"""Glue to the C maps/smaps parser (csrc/procmaps.c): bytes in, numpy columns out."""
from __future__ import annotations

import errno as _errno
from typing import Any, NamedTuple

import numpy as np

from .._raw import procmaps as _raw
from ..errors import ParseError

__all__ = ["Parsed", "parse"]

_ERRORS = {
    _raw.EHEADER: "malformed mapping line",
    _raw.EFIELD: "malformed 'Key: value [kB]' line",
    _raw.EKEYS: f"more than {_raw.MAXNAMES} distinct keys, or a key too long",
    _raw.ECAP: "more mappings than expected",
    _raw.EORPHAN: "field line before any mapping line",
}


class Parsed(NamedTuple):
    """Columns of ``n`` mappings; each block row is one column (``c64[procmaps.C64_END]``)."""

    data: bytes               # the parsed text: name and VmFlags offsets point into it
    n: int
    c64: np.ndarray           # (PMPROC_C64_*, n) uint64: start, end, offset, inode[, present, vmflags]
    c32: np.ndarray           # (PMPROC_C32_*, n) uint32: major, minor, name off/len[, flags off/len]
    c8: np.ndarray            # (PMPROC_C8_N, n) uint8: prot, bits, kind
    values: np.ndarray | None  # smaps: (len(keys), n) uint64, 0 where a mapping lacks the key
    keys: tuple[str, ...]     # smaps key of each values row, in order of first appearance
    flag_names: tuple[str, ...]  # VmFlags name of each bit of c64[PMPROC_C64_VMFLAGS]


def parse(data: bytes, with_fields: bool, path: str) -> Parsed:
    """Run the C parser over ``data``; ParseError names ``path``, line number and text."""
    if len(data) >= 1 << 32:
        raise ParseError("file larger than 4 GiB", path=path)
    n64, n32 = ((_raw.C64_SMAPS, _raw.C32_SMAPS) if with_fields else
                (_raw.C64_MAPS, _raw.C32_MAPS))
    # Kernel mapping lines are >= 40 bytes and smaps records >= 500, so a guess from the size
    # almost always fits; odd input (fixtures, fuzzing) falls back to an exact count.
    cap = len(data) // (256 if with_fields else 32) + 1
    for attempt in (0, 1):
        # np.empty: the parser writes every cell it reports (values included, zero if absent).
        c64 = np.empty((n64, cap), np.uint64)
        c32 = np.empty((n32, cap), np.uint32)
        c8 = np.empty((_raw.C8_N, cap), np.uint8)
        values = np.empty((_raw.MAXNAMES, cap), np.uint64) if with_fields else None
        res = _raw.parse(data, with_fields, c64, c32, c8, values)
        if res.n != -_errno.ENOSPC or attempt:  # ENOSPC: more mappings than cap
            break
        cap = _raw.count_headers(data) if with_fields else data.count(b"\n") + 1
    n = res.n
    if n < 0:
        line = data[res.err_off:res.err_off + res.err_len]
        raise ParseError(_ERRORS.get(res.err_code, "unreadable line"), path=path,
                         lineno=res.err_line, line=line)
    keys = res.keys
    for block in (c64, c32, c8, values):
        if block is not None:   # records are cached from these: keep them as parsed
            block.flags.writeable = False
    return Parsed(data, n, c64[:, :n], c32[:, :n], c8[:, :n],
                  None if values is None else values[:len(keys), :n], keys, res.flag_names)
