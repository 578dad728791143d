"""Glue to the C maps/smaps parser (csrc/procmaps.c): bytes in, numpy columns out."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._lib import ffi, lib
from ..errors import ParseError

__all__ = ["Parsed", "parse"]

_ERRORS = {
    lib.PMPROC_EHEADER: "malformed mapping line",
    lib.PMPROC_EFIELD: "malformed 'Key: value [kB]' line",
    lib.PMPROC_EKEYS: f"more than {lib.PMPROC_MAXNAMES} distinct keys, or a key too long",
    lib.PMPROC_ECAP: "more mappings than expected",
    lib.PMPROC_EORPHAN: "field line before any mapping line",
}


class Parsed(NamedTuple):
    """Columns of ``n`` mappings; each block row is one column (``c64[lib.PMPROC_C64_END]``)."""

    data: bytes               # the parsed text: name and VmFlags offsets point into it
    n: int
    c64: np.ndarray           # (PMPROC_C64_*, n) uint64: start, end, offset, inode[, present, vmflags]
    c32: np.ndarray           # (PMPROC_C32_*, n) uint32: major, minor, name off/len[, flags off/len]
    c8: np.ndarray            # (PMPROC_C8_N, n) uint8: prot, bits, kind
    values: np.ndarray | None  # smaps: (len(keys), n) uint64, 0 where a mapping lacks the key
    keys: tuple[str, ...]     # smaps key of each values row, in order of first appearance
    flag_names: tuple[str, ...]  # VmFlags name of each bit of c64[PMPROC_C64_VMFLAGS]


def _names(t: Any) -> tuple[str, ...]:
    # Decoded with their length, not up to a NUL, so odd input keeps every byte.
    return tuple(ffi.unpack(t.name[i], t.len[i]).decode("ascii", "replace") for i in range(t.n))


def parse(data: bytes, with_fields: bool, path: str) -> Parsed:
    """Run the C parser over ``data``; ParseError names ``path``, line number and text."""
    if len(data) >= 1 << 32:
        raise ParseError("file larger than 4 GiB", path=path)
    n64, n32 = ((lib.PMPROC_C64_SMAPS, lib.PMPROC_C32_SMAPS) if with_fields else
                (lib.PMPROC_C64_MAPS, lib.PMPROC_C32_MAPS))
    # Kernel mapping lines are >= 40 bytes and smaps records >= 500, so a guess from the size
    # almost always fits; odd input (fixtures, fuzzing) falls back to an exact count.
    cap = len(data) // (256 if with_fields else 32) + 1
    tab = ffi.new("struct pmproc_tables *")
    err = ffi.new("struct pmproc_error *")
    for attempt in (0, 1):
        # np.empty: the parser writes every cell it reports (values included, zero if absent).
        c64 = np.empty((n64, cap), np.uint64)
        c32 = np.empty((n32, cap), np.uint32)
        c8 = np.empty((lib.PMPROC_C8_N, cap), np.uint8)
        values = np.empty((lib.PMPROC_MAXNAMES, cap), np.uint64) if with_fields else None
        n = lib.pmproc_parse(data, len(data), int(with_fields), cap,
                             ffi.from_buffer("uint64_t[]", c64), ffi.from_buffer("uint32_t[]", c32),
                             ffi.from_buffer("uint8_t[]", c8),
                             ffi.NULL if values is None else ffi.from_buffer("uint64_t[]", values),
                             tab, err)
        if n >= 0 or err.code != lib.PMPROC_ECAP or attempt:
            break
        cap = lib.pmproc_count_headers(data, len(data)) if with_fields else data.count(b"\n") + 1
    if n < 0:
        line = data[err.off:err.off + err.len]
        raise ParseError(_ERRORS.get(err.code, "unreadable line"), path=path, lineno=err.line,
                         line=line)
    keys = _names(tab.keys) if with_fields else ()
    for block in (c64, c32, c8, values):
        if block is not None:   # records are cached from these: keep them as parsed
            block.flags.writeable = False
    return Parsed(data, n, c64[:, :n], c32[:, :n], c8[:, :n],
                  None if values is None else values[:len(keys), :n], keys,
                  _names(tab.flags) if with_fields else ())
