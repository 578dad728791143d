"""The raw C layer: the only importers of cffi's ``ffi``/``lib`` pair (physmem._native).

One thin private module per C concern (mapping, mempolicy, pageio, procmaps, dmapool,
poolguard, uffd, pin) gives each C function a typed Python signature, so ``lib`` (``Any`` to mypy)
never reaches the public modules. Return values keep C's convention, ``-errno`` on failure;
:func:`check` turns them into physmem.errors, naming the kernel that added a missing feature
from the one table :data:`SINCE`. tests/test_raw_layer.py enforces that nothing else imports
``lib``.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING, Any

from .._features import kernel_at_least, unavailable
from ..errors import FeatureUnavailable, error_from_errno

try:
    from .._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "physmem's C core (physmem._native) is not built; install physmem with "
        "`pip install .` (or `python setup.py build_ext --inplace` in a checkout)"
    ) from exc

if TYPE_CHECKING:  # at run time numpy stays unloaded until a caller brings an array
    import numpy as np

__all__ = ["ffi", "lib", "u64_buffer", "check", "SINCE", "missing", "older_than", "NULL"]

NULL: Any = ffi.NULL

# What each kernel interface needs: the Linux version that added it. check(..., since=KEY)
# and the feature probes name the missing piece and this version.
SINCE: dict[str, str] = {
    "syscall memfd_create": "3.17",
    "syscall userfaultfd": "4.3",
    "syscall mlock2": "4.4",
    "syscall mbind": "2.6.7",
    "syscall set_mempolicy": "2.6.7",
    "syscall get_mempolicy": "2.6.7",
    "syscall move_pages": "2.6.18",
    "mmap flag MAP_FIXED_NOREPLACE": "4.17",
    "mremap flag MREMAP_DONTUNMAP": "5.7",
    "memfd_create flag MFD_NOEXEC_SEAL": "6.3",
    "memfd_create with MFD_HUGETLB | MFD_ALLOW_SEALING": "4.16",
    "mode flag MPOL_F_NUMA_BALANCING": "5.12",
    "userfaultfd flag UFFD_USER_MODE_ONLY": "5.11",
    "ioctl PAGEMAP_SCAN": "6.7",
    "madvise MADV_FREE": "4.5", "madvise MADV_WIPEONFORK": "4.14",
    "madvise MADV_KEEPONFORK": "4.14", "madvise MADV_COLD": "5.4", "madvise MADV_PAGEOUT": "5.4",
    "madvise MADV_POPULATE_READ": "5.14", "madvise MADV_POPULATE_WRITE": "5.14",
    "madvise MADV_DONTNEED_LOCKED": "5.18", "madvise MADV_COLLAPSE": "6.1",
    "madvise MADV_GUARD_INSTALL": "6.13", "madvise MADV_GUARD_REMOVE": "6.13",
    "file seal F_SEAL_FUTURE_WRITE": "5.1", "file seal F_SEAL_EXEC": "6.3",
    "memory policy MPOL_LOCAL": "3.8", "memory policy MPOL_PREFERRED_MANY": "5.15",
    "memory policy MPOL_WEIGHTED_INTERLEAVE": "6.9",
    "UFFDIO_REGISTER_MODE_MISSING": "4.3", "UFFDIO_REGISTER_MODE_WP": "5.7",
    "UFFDIO_REGISTER_MODE_MINOR": "5.13",
    "userfaultfd feature UFFD_FEATURE_PAGEFAULT_FLAG_WP": "5.7",
    "userfaultfd feature UFFD_FEATURE_EVENT_FORK": "4.11",
    "userfaultfd feature UFFD_FEATURE_EVENT_REMAP": "4.11",
    "userfaultfd feature UFFD_FEATURE_EVENT_REMOVE": "4.11",
    "userfaultfd feature UFFD_FEATURE_MISSING_HUGETLBFS": "4.11",
    "userfaultfd feature UFFD_FEATURE_MISSING_SHMEM": "4.11",
    "userfaultfd feature UFFD_FEATURE_EVENT_UNMAP": "4.11",
    "userfaultfd feature UFFD_FEATURE_SIGBUS": "4.14",
    "userfaultfd feature UFFD_FEATURE_THREAD_ID": "4.14",
    "userfaultfd feature UFFD_FEATURE_MINOR_HUGETLBFS": "5.13",
    "userfaultfd feature UFFD_FEATURE_MINOR_SHMEM": "5.14",
    "userfaultfd feature UFFD_FEATURE_EXACT_ADDRESS": "5.18",
    "userfaultfd feature UFFD_FEATURE_WP_HUGETLBFS_SHMEM": "6.0",
    "userfaultfd feature UFFD_FEATURE_WP_UNPOPULATED": "6.4",
    "userfaultfd feature UFFD_FEATURE_POISON": "6.6",
    "userfaultfd feature UFFD_FEATURE_WP_ASYNC": "6.7",
    "userfaultfd feature UFFD_FEATURE_MOVE": "6.8",
}


def missing(what: str, *, err: int = _errno.ENOSYS, hint: str | None = None
            ) -> FeatureUnavailable:
    """The error for ``what`` (a key of :data:`SINCE`) missing from the running kernel."""
    return unavailable(what, SINCE[what], err=err, hint=hint)


def older_than(what: str) -> bool:
    """Whether the running kernel predates ``what`` (a key of :data:`SINCE`)."""
    return not kernel_at_least(SINCE[what])

# Errnos by which a kernel says it lacks an interface: no syscall (ENOSYS), no ioctl (ENOTTY),
# and, for a flag or mode it does not know, EINVAL (only believed on a kernel older than SINCE).
_MISSING = (_errno.ENOSYS, _errno.ENOTTY)


def u64_buffer(array: np.ndarray) -> Any:
    """A ``uint64_t *`` onto a C-contiguous uint64 numpy array (no copy)."""
    dt = array.dtype
    if dt.kind != "u" or dt.itemsize != 8 or not dt.isnative or not array.flags.c_contiguous:
        raise TypeError("internal: expected a C-contiguous uint64 array")
    return ffi.from_buffer("uint64_t[]", array, require_writable=False)


def check(ret: int, what: str, *, since: str | None = None,
          path: str | os.PathLike[str] | None = None, pid: int | None = None,
          address: int | None = None) -> int:
    """Return ``ret`` if it is not a negated errno, else raise the matching domain error.

    ``since`` names the interface (a key of :data:`SINCE`): ENOSYS or ENOTTY, or EINVAL on a
    kernel older than the one that added it, then raise FeatureUnavailable saying so."""
    if ret >= 0:
        return ret
    err = -ret
    if since is not None:
        if err in _MISSING or (err == _errno.EINVAL and older_than(since)):
            raise missing(since, err=err)
    raise error_from_errno(err, what, path=path, pid=pid, address=address)
