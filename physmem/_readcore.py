"""What the /proc reader and the /sys reader do alike: read a whole file, read one that may
be missing, look at a path (stat, readlink, is it a directory), errno mapped by
:mod:`physmem.errors` with the path (and the pid, for per-process files).

Only the two readers import this module (``tests/test_structure.py``): everyone else asks
:mod:`physmem.proc._read` for /proc and :mod:`physmem._sysfs` for /sys.
"""
from __future__ import annotations

import os

from .errors import translate_os_errors

__all__ = ["read_bytes", "read_optional", "stat", "readlink", "is_dir", "exists"]


def _what(path: str) -> str:
    return f"cannot read {os.path.basename(path)}"


def _readall(path: str) -> bytes:
    # Unbuffered: kernel files report size 0, so a buffered reader only adds a copy.
    with open(path, "rb", buffering=0) as f:
        return f.readall()


def read_bytes(path: str, pid: int | None = None, what: str | None = None) -> bytes:
    """The whole file at ``path``; ``pid`` lets a vanished /proc/<pid> become ProcessGone,
    ``what`` says what was being read (default: the file's name)."""
    with translate_os_errors(what or _what(path), path=path, pid=pid):
        return _readall(path)


def read_optional(path: str, pid: int | None = None) -> bytes | None:
    """Like :func:`read_bytes`, but ``None`` where the file does not exist (a kernel
    without the feature, a captured tree) and without trailing NULs/newline; every other
    failure raises."""
    with translate_os_errors(_what(path), path=path, pid=pid):
        try:
            data = _readall(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
    # Captured trees (hwloc's test data) pad some files with NULs; the kernel never does.
    return data.rstrip(b"\x00\n")


def stat(path: str, what: str, pid: int | None = None) -> os.stat_result:
    """``os.stat`` of ``path`` (following links), failures as physmem errors."""
    with translate_os_errors(what, path=path, pid=pid):
        return os.stat(path)


def readlink(path: str, what: str, pid: int | None = None) -> str:
    """The target of the link at ``path`` (an fd, a namespace), failures as physmem errors."""
    with translate_os_errors(what, path=path, pid=pid):
        return os.readlink(path)


def is_dir(path: str) -> bool:
    """Whether ``path`` is a directory (a pool, a node, a process that still exists)."""
    return os.path.isdir(path)


def exists(path: str) -> bool:
    """Whether ``path`` exists (a knob that older kernels lack)."""
    return os.path.exists(path)
