"""/proc/PID/mounts: the mount table of a process's mount namespace."""
from __future__ import annotations

import os
from typing import NamedTuple

from .._syntax import unescape_octal
from ._read import pid_path, read_bytes, read_optional

__all__ = ["Mount", "mounts", "parse_mounts"]


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
