"""Glue to the C maps/smaps parser (csrc/procmaps.c): buffers in, numpy columns out."""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from .._lib import ffi, lib
from ..errors import ParseError

__all__ = ["Parsed", "parse"]

_alloc = ffi.new_allocator(should_clear_after_alloc=False)

VMA_DTYPE = np.dtype({
    "names": ["start", "end", "offset", "inode", "dev", "present", "perms", "name_id", "line",
              "flags_off", "flags_len", "flags_id"],
    "formats": ["<u8"] * 6 + ["<u4"] * 6,
    "offsets": [ffi.offsetof("struct pmproc_vma", f) for f in
                ("start", "end", "offset", "inode", "dev", "present", "perms", "name_id", "line",
                 "flags_off", "flags_len", "flags_id")],
    "itemsize": ffi.sizeof("struct pmproc_vma"),
})
MAXKEYS = lib.PMPROC_MAXKEYS

_ERRORS = {
    lib.PMPROC_EHEADER: "malformed mapping line",
    lib.PMPROC_EFIELD: "malformed 'Key: value [kB]' line",
    lib.PMPROC_EKEYS: f"more than {lib.PMPROC_MAXKEYS} distinct keys, or a key too long",
    lib.PMPROC_ECAP: "more mappings than expected",
    lib.PMPROC_EORPHAN: "field line before any mapping line",
}

# Keys learnt so far: a template copied into each call, so threads never share a table.
_keys_template = ffi.new("struct pmproc_keys *")
_keys_lock = threading.Lock()
_key_names: tuple[str, ...] = ()


class Parsed(NamedTuple):
    vmas: np.ndarray          # VMA_DTYPE records
    names: list[bytes]        # unique raw names, indexed by vmas["name_id"]
    values: np.ndarray | None  # (n, MAXKEYS) uint64 for smaps, else None
    keys: tuple[str, ...]     # smaps key name of each values column
    flagsets: list[bytes]     # distinct VmFlags texts, indexed by vmas["flags_id"]


def parse(data: bytes, with_fields: bool, path: str) -> Parsed:
    """Run the C parser over ``data``; ParseError names ``path``, line number and text."""
    global _key_names
    if len(data) >= 1 << 32:
        raise ParseError("file larger than 4 GiB", path=path)
    # Kernel mapping lines are >= 40 bytes and smaps records >= 500, so a guess from the size
    # almost always fits; odd input (fixtures, fuzzing) falls back to an exact count.
    cap = len(data) // (256 if with_fields else 32) + 1
    for attempt in (0, 1):
        vmas = _alloc("struct pmproc_vma[]", cap)
        spans = _alloc("struct pmproc_span[]", cap)
        values = _alloc("uint64_t[]", cap * MAXKEYS) if with_fields else ffi.NULL
        flagsets = _alloc("struct pmproc_span[]", lib.PMPROC_MAXFLAGSETS)
        nflagsets = ffi.new("uint32_t *")
        keys = ffi.new("struct pmproc_keys *")
        err = ffi.new("struct pmproc_error *")
        ffi.memmove(keys, _keys_template, ffi.sizeof("struct pmproc_keys"))
        n = lib.pmproc_parse(data, len(data), int(with_fields), vmas, cap, spans, values, keys,
                             flagsets, nflagsets, err)
        if n >= 0 or err.code != lib.PMPROC_ECAP or attempt:
            break
        cap = lib.pmproc_count_headers(data, len(data)) if with_fields else data.count(b"\n") + 1
    if n < 0:
        line = data[err.off:err.off + err.len]
        raise ParseError(_ERRORS.get(err.code, "unreadable line"), path=path, lineno=err.line,
                         line=line)
    key_names = _key_names
    if keys.n != len(key_names):
        key_names = tuple(ffi.string(keys.name[i]).decode("ascii", "replace")
                          for i in range(keys.n))
        with _keys_lock:
            if keys.n > _keys_template.n:
                ffi.memmove(_keys_template, keys, ffi.sizeof("struct pmproc_keys"))
                _key_names = key_names
    arr = np.frombuffer(ffi.buffer(vmas, n * VMA_DTYPE.itemsize), dtype=VMA_DTYPE) if n else \
        np.zeros(0, VMA_DTYPE)
    nnames = int(arr["name_id"][-1]) + 1 if n else 0
    sp = np.frombuffer(ffi.buffer(spans, nnames * 8), dtype="<u4").reshape(-1, 2).tolist()
    names = [data[o:o + ln] for o, ln in sp]
    vals = None
    if with_fields:
        vals = np.frombuffer(ffi.buffer(values, n * MAXKEYS * 8), dtype="<u8").reshape(n, MAXKEYS)
    fs = np.frombuffer(ffi.buffer(flagsets, nflagsets[0] * 8), dtype="<u4").reshape(-1, 2)
    return Parsed(arr, names, vals, key_names, [data[o:o + ln] for o, ln in fs.tolist()])
