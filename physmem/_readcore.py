"""What the /proc reader and the /sys reader do alike: read a whole file, read one that may
be missing, look at a path (stat, readlink, is it a directory), errno mapped by
:mod:`physmem.errors` with the path (and the pid, for per-process files).

Only the two readers import this module (``tests/test_structure.py``): everyone else asks
:mod:`physmem.proc._read` for /proc and :mod:`physmem._sysfs` for /sys.
"""
from __future__ import annotations

import os

from .errors import error_from_errno, translate_os_errors

__all__ = ["read_bytes", "read_optional", "stat", "readlink", "is_dir", "exists"]


def _what(path: str) -> str:
    return f"cannot read {os.path.basename(path)}"


_FIRST_READ = 1 << 16  # most kernel files fit in one read


def _readall(path: str) -> bytes:
    # A small file (most: smaps_rollup, statm, status) in plain descriptor reads: a file
    # object's open and readall add three system calls (fstat, lseek, fstat) to each, an
    # eighth of reading smaps_rollup or statm.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _FIRST_READ)
        if len(data) < _FIRST_READ:
            more = os.read(fd, _FIRST_READ)
            if not more:
                return data
            data += more
        # A big one (smaps: megabytes) from its start into one growing buffer, as
        # FileIO.readall reads: chunks joined after cost 40% more on 3 MB (the copy and the
        # page faults of a second buffer). Rereading the first chunk costs 2% of that.
        try:
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError:  # a file that cannot seek: carry on from where the reads are
            with open(fd, "rb", buffering=0, closefd=False) as f:
                return data + f.readall()
        with open(fd, "rb", buffering=0, closefd=False) as f:
            return f.readall()
    finally:
        os.close(fd)


def read_bytes(path: str, pid: int | None = None, what: str | None = None) -> bytes:
    """The whole file at ``path``; ``pid`` lets a vanished /proc/<pid> become ProcessGone,
    ``what`` says what was being read (default: the file's name)."""
    try:
        return _readall(path)
    except OSError as exc:
        # translate_os_errors' mapping, without a context manager's cost (a microsecond,
        # a thirtieth of reading a small file) on the path that succeeds.
        if exc.errno is None:
            raise
        raise error_from_errno(exc.errno, what or _what(path), path=path, pid=pid) from exc


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
