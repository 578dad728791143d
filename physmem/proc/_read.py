"""The one reader (and writer) of files under /proc: bytes in and out, errno mapped by
:mod:`physmem.errors` (which carries the path, and the pid for per-process files).

No other module of physmem opens, lists or writes a /proc file; ``tests/test_structure.py``
checks that. Parsing stays with the parser of each file in this package.
"""
from __future__ import annotations

import errno
import os

from .._args import as_pid
from .._readcore import exists, is_dir, read_bytes, read_optional, readlink, stat
from ..errors import InvalidArgument, error_from_errno, translate_os_errors

__all__ = ["pid_path", "read_bytes", "read_optional", "write_bytes", "open_fd", "listdir",
           "stat", "readlink", "is_dir", "exists", "kb_value", "u64"]

_HEX = frozenset(b"0123456789abcdefABCDEF")


def pid_path(proc_root: str, pid: int | None, name: str) -> str:
    """``<proc_root>/<pid or self>/<name>``; a pid is checked as everywhere (numpy integers
    are taken, bools and numbers past PID_MAX are not)."""
    if pid is None:
        return f"{proc_root}/self/{name}"
    return f"{proc_root}/{as_pid(pid)}/{name}"


def listdir(path: str, pid: int | None = None, *, missing_ok: bool = False) -> list[str]:
    """The entries of a /proc directory (``/proc`` itself, ``/proc/<pid>/fd``...); with
    ``missing_ok``, ``[]`` where the directory does not exist."""
    with translate_os_errors("cannot list directory", path=path, pid=pid):
        try:
            return os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            if missing_ok:
                return []
            raise


def open_fd(path: str, what: str, pid: int | None = None) -> int:
    """A read-only descriptor of a file read with ``pread`` (pagemap, kpageflags...)."""
    with translate_os_errors(what, path=path, pid=pid):
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def write_bytes(path: str, data: bytes, what: str, *, pid: int | None = None,
                rejected: str | None = None) -> None:
    """Write ``data`` in one ``write(2)``, as /proc files require; ``what`` names the action.

    A value the kernel refuses with EINVAL raises InvalidArgument(``rejected``) when given.
    """
    with translate_os_errors(what, path=path, pid=pid):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        written = os.write(fd, data)
    except OSError as exc:
        if exc.errno == errno.EINVAL and rejected is not None:
            raise InvalidArgument(rejected, path=path) from exc
        raise error_from_errno(exc.errno or errno.EIO, what, path=path, pid=pid) from exc
    finally:
        os.close(fd)
    if written != len(data):
        raise error_from_errno(errno.EIO, f"{what}: short write ({written} of {len(data)} "
                               "bytes)", path=path, pid=pid)


def kb_value(value: bytes) -> int:
    """``b"123 kB"`` -> bytes; a bare number is returned unscaled (counts such as HugePages_*)."""
    parts = value.split()
    if len(parts) == 2 and parts[1] == b"kB":
        return int(parts[0]) * 1024
    if len(parts) == 1:
        return int(parts[0])
    raise ValueError(value)


def u64(text: bytes, base: int = 10) -> int:
    """A number as the kernel prints an unsigned 64-bit value (``%lu``, ``%lx``): digits only,
    no sign, underscore or space, and below 2**64; ValueError otherwise, which the parsers
    turn into ParseError (``int()`` would take ``-5``, ``1_0`` and thousands of digits)."""
    if base == 16:
        ok = 0 < len(text) <= 16 and all(c in _HEX for c in text)
    else:
        ok = 0 < len(text) <= 20 and text.isdigit()
    value = int(text, base) if ok else -1
    if not 0 <= value < 1 << 64:
        raise ValueError(f"not an unsigned 64-bit number: {text[:40]!r}")
    return value
