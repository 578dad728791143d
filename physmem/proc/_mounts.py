"""/proc/PID/mounts and /proc/PID/mountinfo: the mount table of a process's mount namespace."""
from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import ParseError
from .._syntax import unescape_octal
from ._read import pid_path, read_bytes, read_optional, u64

__all__ = ["Mount", "mounts", "parse_mounts", "MountInfo", "mountinfo", "parse_mountinfo"]


class Mount(NamedTuple):
    """One mount: device (or pseudo source), mount point, filesystem type and options
    (for cgroup v1 the controllers, ``memory``, ``cpuset``..., are among them)."""

    source: str
    path: str
    fstype: str
    options: tuple[str, ...]


def parse_mounts(data: bytes, path: str = "/proc/self/mounts") -> list[Mount]:
    """Every mount in file order, the kernel's octal escapes (``\\040`` for a space) undone.

    Lines with fewer than four fields (a damaged capture) are passed over."""
    out = []
    for line in data.splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append(Mount(unescape_octal(f[0]), unescape_octal(f[1]), os.fsdecode(f[2]),
                             tuple(os.fsdecode(o) for o in f[3].split(b","))))
    return out


def mounts(proc_root: str = "/proc", pid: int | None = None) -> list[Mount]:
    """The mounts ``pid`` (default: this process) sees. For this process, a tree without
    ``self/mounts`` (older captures) is read at ``<proc_root>/mounts``."""
    path = pid_path(proc_root, pid, "mounts")
    if pid is None:
        for candidate in (path, f"{proc_root}/mounts"):
            data = read_optional(candidate)
            if data is not None:
                return parse_mounts(data, candidate)
    return parse_mounts(read_bytes(path, pid), path)


class MountInfo(NamedTuple):
    """One line of mountinfo: what mounts gives, plus the identities it lacks. ``device``
    is the filesystem's ``st_dev`` (``os.makedev(major, minor)``), ``mount_id`` the mount's
    own number (``mnt_id`` in /proc/PID/fdinfo), ``root`` the directory of the filesystem
    mounted here (``/``, or a subdirectory for a bind mount). Mounts stacked on one path
    are listed bottom first."""

    mount_id: int
    parent_id: int
    device: int
    root: str
    path: str
    fstype: str
    source: str
    options: tuple[str, ...]         # this mount's (ro, nosuid, relatime...)
    super_options: tuple[str, ...]   # the filesystem's (pagesize=2M, size=...)


def parse_mountinfo(data: bytes, path: str = "/proc/self/mountinfo") -> list[MountInfo]:
    """Every mount in file order, the kernel's octal escapes undone; a line that is not
    ``ID PARENT MAJOR:MINOR ROOT PATH OPTIONS [TAGS...] - FSTYPE SOURCE SUPER_OPTIONS`` is a
    ParseError naming the line."""
    out = []
    for lineno, line in enumerate(data.splitlines(), 1):
        f = line.split()
        try:
            sep = f.index(b"-", 6)
            if len(f) != sep + 4:
                raise ValueError(line)
            major, minor = f[2].split(b":")
            out.append(MountInfo(u64(f[0]), u64(f[1]), os.makedev(u64(major), u64(minor)),
                                 unescape_octal(f[3]), unescape_octal(f[4]),
                                 os.fsdecode(f[sep + 1]), unescape_octal(f[sep + 2]),
                                 tuple(os.fsdecode(o) for o in f[5].split(b",")),
                                 tuple(os.fsdecode(o) for o in f[sep + 3].split(b","))))
        except (ValueError, OverflowError):
            raise ParseError("not an 'ID PARENT MAJOR:MINOR ROOT PATH OPTIONS ... - FSTYPE "
                             "SOURCE OPTIONS' line", path=path, lineno=lineno,
                             line=line) from None
    return out


def mountinfo(proc_root: str = "/proc", pid: int | None = None) -> list[MountInfo]:
    """The mounts ``pid`` (default: this process) sees, with their ids and devices."""
    path = pid_path(proc_root, pid, "mountinfo")
    return parse_mountinfo(read_bytes(path, pid), path)
