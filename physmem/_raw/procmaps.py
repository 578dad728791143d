"""Raw maps/smaps parser (csrc/procmaps.h): text in, caller-allocated numpy columns out."""
from __future__ import annotations

import functools
from typing import Any, Final, NamedTuple

import numpy as np

from . import ffi, lib


# rwx bits of the PROT column (the PROT_* values: physmem.mapping.Prot).
PROT_READ: Final[int] = lib.PMPROC_READ
PROT_WRITE: Final[int] = lib.PMPROC_WRITE
PROT_EXEC: Final[int] = lib.PMPROC_EXEC


class Result(NamedTuple):
    """What one pmproc_parse call reported: mappings parsed (or -errno, the err_* fields
    saying where and why) and its side tables."""

    n: int
    keys: tuple[str, ...]        # smaps key of each values row, in order of first appearance
    flag_names: tuple[str, ...]  # VmFlags name of each bit of the VMFLAGS column
    err_code: int                # E* when n < 0: the reason within the errno's class
    err_line: int                # 1-based
    err_off: int                 # the offending line within the buffer
    err_len: int


@functools.lru_cache(maxsize=64)
def _decode(rows: bytes, lens: bytes) -> tuple[str, ...]:
    # Decoded with their length, not up to a NUL, so odd input keeps every byte.
    return tuple(rows[i * _NAMELEN:i * _NAMELEN + n].decode("ascii", "replace")
                 for i, n in enumerate(lens))


def _names(t: Any) -> tuple[str, ...]:
    # A file's keys are the same from one read to the next (22 for smaps_rollup): decoding
    # them one cffi call each took most of a small file's parse (8 of 13 us), so the name
    # table is copied out in two calls and its decoding looked up. The table comes zeroed
    # from ffi.new, so equal names give equal bytes.
    n = t.n
    if not n:
        return ()
    return _decode(ffi.buffer(t.name)[:n * _NAMELEN], ffi.buffer(t.len)[:n])


def count_headers(data: bytes) -> int:
    """Mapping lines in smaps text."""
    n: int = lib.pmproc_count_headers(data, len(data))
    return n


def parse(data: bytes, with_fields: bool, c64: np.ndarray, c32: np.ndarray, c8: np.ndarray,
          values: np.ndarray | None) -> Result:
    """Parse maps (``with_fields`` False) or smaps text into the columns, each of
    ``c64.shape[1]`` rows: uint64 c64 and values, uint32 c32, uint8 c8."""
    tab = ffi.new("struct pmproc_tables *")
    err = ffi.new("struct pmproc_error *")
    n: int = lib.pmproc_parse(data, len(data), int(with_fields), c64.shape[1],
                              ffi.from_buffer("uint64_t[]", c64),
                              ffi.from_buffer("uint32_t[]", c32),
                              ffi.from_buffer("uint8_t[]", c8),
                              ffi.NULL if values is None else ffi.from_buffer("uint64_t[]", values),
                              tab, err)
    if n < 0:
        return Result(n, (), (), int(err.code), int(err.line), int(err.off), int(err.len))
    return Result(n, _names(tab.keys) if with_fields else (),
                  _names(tab.flags) if with_fields else (), 0, 0, 0, 0)


MAXNAMES: Final[int] = lib.PMPROC_MAXNAMES
_NAMELEN: Final[int] = lib.PMPROC_NAMELEN
C64_START: Final[int] = lib.PMPROC_C64_START
C64_END: Final[int] = lib.PMPROC_C64_END
C64_OFFSET: Final[int] = lib.PMPROC_C64_OFFSET
C64_INODE: Final[int] = lib.PMPROC_C64_INODE
C64_PRESENT: Final[int] = lib.PMPROC_C64_PRESENT
C64_VMFLAGS: Final[int] = lib.PMPROC_C64_VMFLAGS
C64_MAPS: Final[int] = lib.PMPROC_C64_MAPS
C64_SMAPS: Final[int] = lib.PMPROC_C64_SMAPS
C32_MAJOR: Final[int] = lib.PMPROC_C32_MAJOR
C32_MINOR: Final[int] = lib.PMPROC_C32_MINOR
C32_NAME_OFF: Final[int] = lib.PMPROC_C32_NAME_OFF
C32_NAME_LEN: Final[int] = lib.PMPROC_C32_NAME_LEN
C32_NAME_ID: Final[int] = lib.PMPROC_C32_NAME_ID
C32_FLAGS_OFF: Final[int] = lib.PMPROC_C32_FLAGS_OFF
C32_FLAGS_LEN: Final[int] = lib.PMPROC_C32_FLAGS_LEN
C32_MAPS: Final[int] = lib.PMPROC_C32_MAPS
C32_SMAPS: Final[int] = lib.PMPROC_C32_SMAPS
C8_PROT: Final[int] = lib.PMPROC_C8_PROT
C8_BITS: Final[int] = lib.PMPROC_C8_BITS
C8_KIND: Final[int] = lib.PMPROC_C8_KIND
C8_N: Final[int] = lib.PMPROC_C8_N
SHARED: Final[int] = lib.PMPROC_SHARED
DELETED: Final[int] = lib.PMPROC_DELETED
RAWFLAGS: Final[int] = lib.PMPROC_RAWFLAGS
KIND_FILE: Final[int] = lib.PMPROC_KIND_FILE
KIND_OTHER: Final[int] = lib.PMPROC_KIND_OTHER
EHEADER: Final[int] = lib.PMPROC_EHEADER
EFIELD: Final[int] = lib.PMPROC_EFIELD
EKEYS: Final[int] = lib.PMPROC_EKEYS
ECAP: Final[int] = lib.PMPROC_ECAP
EORPHAN: Final[int] = lib.PMPROC_EORPHAN
