"""The raw cffi ``ffi``/``lib`` pair and the few helpers every wrapper needs.

Kept apart from the Pythonic API: nothing outside physmem's own modules should touch ``lib``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import error_from_errno

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "physmem's C core (physmem._native) is not built; install physmem with "
        "`pip install .` (or `python setup.py build_ext --inplace` in a checkout)"
    ) from exc

if TYPE_CHECKING:  # at run time numpy stays unloaded until a caller brings an array
    import numpy as np

__all__ = ["ffi", "lib", "u64_buffer", "check"]


def u64_buffer(array: np.ndarray) -> Any:
    """A ``uint64_t *`` onto a C-contiguous uint64 numpy array (no copy)."""
    dt = array.dtype
    if dt.kind != "u" or dt.itemsize != 8 or not dt.isnative or not array.flags.c_contiguous:
        raise TypeError("internal: expected a C-contiguous uint64 array")
    return ffi.from_buffer("uint64_t[]", array, require_writable=False)


def check(ret: int, what: str, *, path: str | os.PathLike[str] | None = None,
          pid: int | None = None, address: int | None = None) -> int:
    """Return ``ret`` if it is not a negated errno, else raise the matching domain error."""
    if ret < 0:
        raise error_from_errno(-ret, what, path=path, pid=pid, address=address)
    return ret
